"""Build the bundled demo workspace ``resources/demo/`` that ``audiosae-studio --demo`` opens.

Everything goes through the library (the same jobs as ``audiosae build`` / ``audiosae train``):

1. about two minutes of the built-in ``tones`` corpus encoded with the ``mel`` backend;
2. one SAE (x8, lambda 0.02) trained well (small batches, many epochs), its probes and its
   feature index (the inspector's corpus statistics, prebuilt so the app only reads);
3. one or two short clips in ``clips/``: the first validation tones source (never trained
   on) and, when FluidSynth and a General MIDI soundfont are present, a short MIDI melody;
4. pruning of what the app never reads (training checkpoints, empty ``steer/``), so the
   folder stays a few MB.

Deterministic: fixed seeds and one torch thread (multi-threaded reductions may reorder sums).

    python packaging/make_demo.py            # writes resources/demo/
    python packaging/make_demo.py --out /tmp/demo --minutes 0.5 --epochs 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from audiosae.corpus import builtin_sources, midi_unavailable_reason  # noqa: E402
from audiosae.feature_index import build_feature_index  # noqa: E402
from audiosae.jobs import Progress  # noqa: E402
from audiosae.report import format_report  # noqa: E402
from audiosae.training import TrainSettings, train_workspace  # noqa: E402
from audiosae.workspace import Workspace, build_corpus  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "resources" / "demo"
BACKEND = "mel"
SEED = 0
# One SAE.  Its feature index (corpus density, histograms, top frames: what the inspector
# shows) ships with it, so opening the demo never writes into the checkout; a second SAE
# would need its own ~2 MB index.
EXPANSIONS = (8,)
L1S = (0.02,)
BATCH_SIZE = 128
# The feature index is built as the inspector would build it (studio.inspector.INDEX_TOP_K and
# HIST_BINS; a test checks they agree), so the app loads it instead of rebuilding it.
INDEX_TOP_K = 100
INDEX_HIST_BINS = 40
CLIP_SECONDS = 8.0
# Workspace files the explorer never reads.
PRUNE = ("checkpoints",)


class _PrintProgress:
    """One line per stage plus a percentage every few seconds: enough for a build log."""

    def __init__(self) -> None:
        self._stage: str | None = None
        self._last = 0.0

    def __call__(self, event: Progress) -> None:
        now = time.monotonic()
        if event.stage != self._stage or now - self._last > 5.0:
            fraction = event.fraction
            pct = f"{100 * fraction:5.1f}%" if fraction is not None else "   ..."
            print(f"  [{event.stage}] {pct} {event.message}", flush=True)
            self._stage, self._last = event.stage, now


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_clip(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    """A 16-bit FLAC (lossless, about half a WAV's size) of ``wave`` [C, N]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wave.T, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")


def make_clips(ws: Workspace, sources: list, sample_rate: int, channels: int) -> list[Path]:
    """The demo clips: a held-out tones source and, if FluidSynth is here, a MIDI melody."""
    clips_dir = ws.root / "clips"
    n_keep = int(CLIP_SECONDS * sample_rate)
    val_ids = sorted(r.source_id for r in ws.manifest().sources.values() if r.split == "val")
    by_id = {s.source_id: s for s in sources}
    written = []
    tones = by_id[val_ids[0]]
    path = clips_dir / "01-tones-heldout.flac"
    write_clip(path, tones.load(sample_rate, channels)[:, :n_keep], sample_rate)
    written.append(path)
    print(f"  clip {path.name}: {tones.label} (validation split, not trained on)")

    reason = midi_unavailable_reason()
    if reason:
        print(f"  no MIDI clip: {reason}")
        return written
    # A monophonic melody on a wind instrument: its pitch lane is easy to read against the
    # tones the SAE was trained on, and its timbre is new to it.
    melodies = [s for s in builtin_sources("midi", seed=SEED) if "flute melody" in s.label]
    melody = melodies[0]
    path = clips_dir / "02-flute-melody.flac"
    write_clip(path, melody.load(sample_rate, channels)[:, :n_keep], sample_rate)
    written.append(path)
    print(f"  clip {path.name}: {melody.label}")
    return written


def build_demo(out: Path, *, minutes: float, epochs: int) -> Path:
    """Build the demo in a temporary folder next to ``out`` and swap it in when complete."""
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".demo-build-", dir=out.parent) as tmp:
        root = Path(tmp) / "demo"
        ws = Workspace.create(root, BACKEND)
        sources = builtin_sources("tones", minutes=minutes, seed=SEED)
        print(f"corpus: {len(sources)} tones sources, {sum(s.seconds for s in sources):.0f} s of audio")
        build_corpus(ws, sources, device="cpu", seed=SEED, progress=_PrintProgress())
        print(f"training SAEs x{list(EXPANSIONS)} lambda {list(L1S)}, {epochs} epochs, batch {BATCH_SIZE}")
        report = train_workspace(ws, TrainSettings(expansions=EXPANSIONS, l1s=L1S, epochs=epochs,
                                                   batch_size=BATCH_SIZE, seed=SEED),
                                 device="cpu", progress=_PrintProgress())
        for name in ws.sae_names():
            print(f"feature index for {name}")
            build_feature_index(ws, name, top_k=INDEX_TOP_K, hist_bins=INDEX_HIST_BINS, device="cpu",
                                progress=_PrintProgress())
        backend = ws.backend("cpu")
        make_clips(ws, sources, backend.sample_rate, backend.channels)
        for name in PRUNE:
            shutil.rmtree(root / name, ignore_errors=True)
        steer = root / "steer"
        if steer.is_dir() and not any(steer.iterdir()):
            steer.rmdir()
        print(format_report(report))
        if out.exists():
            if not (out / "workspace.json").is_file():
                raise SystemExit(f"{out} exists and is not a workspace; refusing to replace it")
            shutil.rmtree(out)
        shutil.move(str(root), str(out))
    size = folder_size(out)
    print(f"demo workspace: {out} ({size / 1e6:.2f} MB, built in {time.monotonic() - t0:.0f} s)")
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        print(f"  {path.stat().st_size / 1e3:9.1f} kB  {path.relative_to(out)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--minutes", type=float, default=2.0, help="minutes of tones audio (default 2)")
    parser.add_argument("--epochs", type=int, default=60, help="SAE training epochs (default 60)")
    args = parser.parse_args(argv)
    build_demo(args.out, minutes=args.minutes, epochs=args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
