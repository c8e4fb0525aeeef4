"""The bundled demo (``resources/demo``, made by ``packaging/make_demo.py``) holds real recorded
music under redistributable licences only, credits it, and opens on a real-music clip that
was never in its corpus.  No Qt."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path, PurePosixPath

import soundfile as sf

from audiosae import defaults as D
from audiosae.explore.sources import default_clip, find_source
from audiosae.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "resources" / "demo"
# What may ship: DEP-5 short names of CC0, CC-BY-SA-3.0 and the (BSD-like) Drascula licence,
# plus the audio made by this project (tones, the FluidSynth melody).
ALLOWED = {"CC0", "CC-BY-SA-3.0", "Drascula-License", "MIT (synthesised by audiosae)", "MIT (FluidR3_GM soundfont)"}


def sources_json() -> dict:
    return json.loads((DEMO / "sources.json").read_text())


def load_make_demo():
    spec = importlib.util.spec_from_file_location("make_demo", REPO / "packaging" / "make_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_ships_only_allowed_licences_with_their_terms():
    data = sources_json()
    records = data["corpus"] + data["clips"]
    licences = {r["licence"] for r in records}
    assert licences <= ALLOWED, licences - ALLOWED
    assert not any("GPL" in r["licence"] for r in records)
    packages = {r["package"] for r in records if r.get("kind") == "music"}
    assert packages == {"hyperrogue-music", "drascula-music", "sonic-pi-samples"}
    readme = (DEMO / "README.md").read_text()
    for name in packages:   # the full copyright file (licence texts) of every package that ships
        assert (DEMO / "LICENSES" / f"{name}.copyright").is_file()
    for r in records:       # every excerpt is credited: file, holders, licence
        if r.get("kind") == "music":
            assert r["file"] in readme and r["licence"] in readme
            assert r["copyright"] and r["copyright"] in readme
            assert r["members"] and len(r["excerpts"]) == len(r["members"])
    assert "Shawn Parrotte" in readme and "Alcachofa Soft" in readme
    # Every audio file in the demo is accounted for in sources.json.
    listed = {r["file"] for r in records if "file" in r}
    shipped = {p.relative_to(DEMO).as_posix() for p in DEMO.rglob("*")
               if p.suffix in (".ogg", ".flac", ".wav", ".mp3", ".opus")}
    assert shipped == listed


def test_licence_gate_refuses_gpl():
    make_demo = load_make_demo()
    assert make_demo.allowed_licence("CC-BY-SA-3.0") and make_demo.allowed_licence("CC0")
    assert not make_demo.allowed_licence("GPL-2+")
    assert not make_demo.allowed_licence("GPL-2+ (legacy/aftermath albums also CC-BY-SA-3.0+)")
    assert not make_demo.allowed_licence("MIT")   # sonic-pi's MIT samples stay out of the reels


def test_demo_corpus_is_mostly_real_music_trained_with_the_default_schedule():
    data = sources_json()
    music_minutes = sum(v for k, v in data["corpus_minutes"].items() if k != "tones")
    assert 2.0 <= music_minutes <= 3.5, data["corpus_minutes"]
    assert data["training"]["schedule"] == "default" and data["training"]["epochs"] is None
    metrics = json.loads((DEMO / "saes" / "x8-l1_0.02" / "metrics.json").read_text())
    train = metrics["train"]   # what `audiosae train` does without options
    assert train["stop_on_plateau"] is True and train["stopped"] != "epochs"
    assert (train["batch_size"], train["lr"], train["lr_warmup_fraction"], train["l1_warmup_fraction"]) == (
        D.SAE_BATCH_SIZE, D.SAE_LR, D.SAE_LR_WARMUP_FRACTION, D.SAE_L1_WARMUP_FRACTION)
    assert train["budget_frames"] >= D.SAE_MIN_STEPS * D.SAE_BATCH_SIZE
    ws = Workspace.open(DEMO)
    music = [r for r in ws.manifest().sources.values() if r.source_id.startswith("music/")]
    assert len(music) == sum(1 for r in data["corpus"] if r.get("kind") == "music")
    for record in music:   # stored relative, found inside the demo wherever it is copied
        found = find_source(ws, record)
        assert found == str(DEMO / record.source_id) and Path(found).is_file()
    raw = json.loads((DEMO / "corpus" / "manifest.json").read_text())
    assert all(not Path(r["path"]).is_absolute() for r in raw["sources"].values() if r["path"])


def test_first_clip_is_real_music_not_in_the_corpus():
    data = sources_json()
    ws = Workspace.open(DEMO)
    first = default_clip(ws)
    assert first == str(DEMO / "clips" / sorted(p.name for p in (DEMO / "clips").iterdir())[0])
    rel = Path(first).relative_to(DEMO).as_posix()
    record = next(c for c in data["clips"] if c["file"] == rel)
    assert record["kind"] == "music" and record["in_corpus"] is False
    info = sf.info(first)
    assert 10.0 <= info.duration <= 20.0 and info.samplerate == 24000
    # Held out by track: no corpus excerpt comes from the same file of the same package.
    corpus_members = {(r["package"], m) for r in data["corpus"] if r.get("kind") == "music" for m in r["members"]}
    assert not {(record["package"], m) for m in record["members"]} & corpus_members
    stems = {PurePosixPath(m).stem for m in record["members"]}
    assert not any(PurePosixPath(sid).stem in stems for sid in ws.manifest().sources)


def test_missing_packages_name_the_apt_packages(tmp_path, monkeypatch):
    make_demo = load_make_demo()
    rm = make_demo.realmusic()

    def no_download(pkg, cache):
        raise SystemExit(f"cannot download {pkg.name} (run 'apt-get update' first?)")

    monkeypatch.setattr(rm, "download", no_download)
    monkeypatch.setattr(make_demo, "installed_version", lambda name: None)
    try:
        make_demo.music_items(tmp_path / "cache", tmp_path / "tmp", 3.0, 24000, 1)
    except make_demo.MusicUnavailable as exc:
        message = str(exc)
    else:
        raise AssertionError("no error without the packages")
    assert "apt-get install hyperrogue-music drascula-music sonic-pi-samples" in message
    assert "cannot download hyperrogue-music" in message
