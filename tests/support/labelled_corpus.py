"""A frames-only workspace whose registered attributes (onset, chord, instrument) have known
classes, and an SAE whose features fire on known classes: for describe, search and the studio's
label views (issue 14).  No audio: latents and raw columns are written directly."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from audiosae.attribute_library import GM_FAMILIES, PITCH_CLASSES, chord_templates
from audiosae.storage import save_tensors
from audiosae.workspace import Workspace, read_shard

from .common import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from bench_describe import save_sae, write_frames_workspace  # noqa: E402

N_FRAMES = 3000
D_IN = 8
# feature -> what it fires on
ONSET_FEATURE, MINOR_FEATURE, BRASS_FEATURE, NOTE_FEATURE, RANDOM_FEATURE, DEAD_FEATURE = range(6)
N_FEATURES = 6
NOTE_CLASS = 31           # pitch class index 31 = C#4 (MIDI 31 + 30 = 61)
A_MINOR = 12 + PITCH_CLASSES.index("A")       # chord_templates row of "Am"
A_MAJOR = PITCH_CLASSES.index("A")
BRASS = GM_FAMILIES.index("brass")


def make_labelled_workspace(root: Path) -> tuple[Workspace, dict[str, np.ndarray]]:
    """Frames with random onsets (15 %), chords (A minor / A major / none), instrument families
    (brass / piano / reed) and pitches (C#4 on 20 % of the frames); latent dims 0..3 carry one of
    them each, 4 is noise, 7 is 1.  Features: 0 onset, 1 A minor, 2 brass, 3 C#4, 4 random, 5 dead."""
    rng = np.random.default_rng(3)
    n = N_FRAMES
    onset = (rng.random(n) < 0.15).astype(np.float64)
    chord = rng.choice([A_MINOR, A_MAJOR, -1], n, p=[0.25, 0.25, 0.5])
    family = rng.choice([BRASS, GM_FAMILIES.index("piano"), GM_FAMILIES.index("reed")], n)
    pitch = np.where(rng.random(n) < 0.2, NOTE_CLASS, rng.integers(1, 20, n))
    x = np.zeros((n, D_IN), np.float32)
    x[:, 0] = onset
    x[:, 1] = chord == A_MINOR
    x[:, 2] = family == BRASS
    x[:, 3] = pitch == NOTE_CLASS
    x[:, 4] = rng.standard_normal(n)
    x[:, 7] = 1.0
    ws = write_frames_workspace(root, x, pitch, rng.integers(0, 20, n), rng.integers(0, 20, n), n_sources=4,
                                shard_frames=1000)
    templates = chord_templates()
    chroma = np.where((chord >= 0)[:, None], templates[np.maximum(chord, 0)] * np.sqrt(3.0), 0.0)
    chroma[chord < 0] = 1.0          # flat chroma: no chord
    raw = {"onset": onset, "onset_strength": onset * 8.0, "chroma": chroma,
           "instrument": 1.0 + family.astype(np.float64)}   # class 0 = none, family k = class k + 1
    spec = ws.attribute_spec.with_attributes(["onset", "chord", "instrument"])
    ws.set_attribute_spec(spec)
    manifest = ws.manifest()
    start = 0
    for shard in manifest.shards:
        path = ws.corpus_dir / shard["file"]
        tensors, meta = read_shard(path)
        m = int(shard["n_frames"])
        out = {k: v.numpy() for k, v in tensors.items()}
        for col, values in raw.items():
            out[f"x.{col}"] = values[start:start + m].astype(np.float32)
        save_tensors(path, out, meta)
        start += m
    w = np.zeros((D_IN, N_FEATURES), np.float32)
    b = np.zeros(N_FEATURES, np.float32)
    for j in range(4):
        w[j, j], b[j] = 1.0, -0.5
    w[4, RANDOM_FEATURE] = 1.0
    b[DEAD_FEATURE] = -100.0
    save_sae(ws, "labelled", w, b)
    classes = {"onset": onset.astype(int), "chord": np.where(chord >= 0, chord + 1, 0), "instrument": family + 1,
               "pitch": pitch}
    return Workspace.open(root), classes
