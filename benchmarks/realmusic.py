"""A real-music corpus that builds offline from Debian packages, plus MIDI renders.

    python benchmarks/realmusic.py OUT_DIR [--cache DIR] [--quick] [--no-midi]

1. ``apt-get download`` the packages in ``PACKAGES`` (pinned versions; the candidate version
   when the pinned one is gone, noted in the manifest) into ``--cache`` (default
   ``~/.cache/audiosae/realmusic``); nothing is installed.
2. Read only the chosen audio members out of each .deb (``dpkg-deb --fsys-tarfile``), cut
   fixed excerpts (``segments`` evenly spaced clips of ``clip`` seconds per track; short
   one-shot samples are joined into ~30 s reels per instrument group) and write them as
   16-bit FLAC at the source's rate and channels.
3. Render the MIDI part with FluidSynth + a GM soundfont: the built-in ``midi`` corpus
   (single instruments with note ground truth) and multi-instrument ensembles (melody,
   chords, bass, drums on different GM programs).
4. Write ``OUT_DIR/manifest.json`` (per file: package, version, member, licence and where it
   was read, excerpt, split) and the packages' copyright files under ``OUT_DIR/LICENSES``.

Splits: a deterministic ~12 % of the items of every group (by a hash of the item name) go to
``OUT_DIR/heldout/`` and are never trained on (for steering evaluation); the rest go to
``OUT_DIR/train/``.  Same versions -> same files in the same order.  The audio is downloaded
at run time and never committed (see benchmarks/README.md for the licences).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile as sf

if importlib.util.find_spec("audiosae") is None:  # not installed: use this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiosae.audio import convert_channels, resample  # noqa: E402
from audiosae.corpus import builtin_sources, midi_dependencies  # noqa: E402

DEFAULT_CACHE = Path("~/.cache/audiosae/realmusic").expanduser()
HELDOUT_FRACTION = 0.12
REEL_SECONDS, REEL_GAP, REEL_RATE = 30.0, 0.25, 44_100


@dataclass(frozen=True)
class Package:
    name: str
    version: str        # pinned; the candidate is used (and recorded) if this one is gone
    style: str
    members: str        # glob over the paths inside the .deb
    licence: str        # checked by hand in the package's debian/copyright (README table)
    clip: float = 25.0  # seconds per excerpt
    segments: int = 1   # excerpts per track, evenly spaced
    reels: str = ""     # "prefix" | "folder": join short samples into reels grouped by this
    exclude: str = ""   # glob of members to leave out (e.g. a silent track)


PACKAGES = (
    Package("wesnoth-1.16-music", "1:1.16.9-1", "orchestral game score",
            "./usr/share/games/wesnoth/*/data/core/music/*.ogg", "GPL-2+", exclude="*/silence.ogg"),
    Package("warzone2100-music", "4.3.3-3", "electronic / rock game score",
            "./usr/share/games/warzone2100/music/albums/*/*.opus",
            "GPL-2+ (legacy/aftermath albums also CC-BY-SA-3.0+)"),
    Package("hyperrogue-music", "12.0q-1", "ambient / chamber game score",
            "./usr/share/hyperrogue/music/*.ogg", "CC-BY-SA-3.0", clip=30.0),
    Package("drascula-music", "1.0+ds4-2", "adventure game score (synth/keyboard)",
            "./usr/share/scummvm/drascula/audio/*.ogg", "Drascula-License (BSD-like)", clip=15.0),
    Package("asc-music", "1.3-6", "rock / metal game music",
            "./usr/share/games/asc/music/*.mp3", "GPL-2+", clip=30.0, segments=4),
    Package("xmoto-data", "0.6.1+repack-9", "electronic / chiptune game music",
            "./usr/share/games/xmoto/Textures/Musics/*.ogg", "GPL-2+", segments=2),
    Package("lincity-ng-data", "2.9~git20150314-5", "blues / ambient game music",
            "./usr/share/games/lincity-ng/music/*/*.ogg", "GPL-2+", segments=3),
    Package("sonic-pi-samples", "3.2.2~repack-8", "recorded samples (drums, tabla, bass, guitar, ambient)",
            "./usr/share/sonic-pi/samples/*.flac", "MIT", reels="prefix"),
    Package("lmms-common", "1.2.2+dfsg1-6", "recorded instrument samples (drums, basses, strings, keys)",
            "./usr/share/lmms/samples/*/*.ogg", "GPL-2+", reels="folder"),
)
QUICK = {"drascula-music": 3, "xmoto-data": 2, "sonic-pi-samples": 2}  # package -> items kept

# Multi-instrument MIDI ensembles: (melody, chords, bass) GM programs; drums on channel 10.
ENSEMBLES = ((73, 48, 32), (40, 0, 42), (56, 24, 33), (71, 19, 32), (65, 0, 33), (68, 48, 42),
             (11, 4, 34), (80, 81, 38))
ENSEMBLE_PIECES, ENSEMBLE_SECONDS = 24, 12.0


def log(message: str) -> None:
    print(f"[realmusic] {message}", file=sys.stderr, flush=True)


def unit_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0 ** 64


def heldout_names(names: list[str], group: str) -> set[str]:
    """The deterministic held-out share of one group: the lowest hashes, at least one item."""
    if len(names) < 3:
        return set()
    n = max(1, round(HELDOUT_FRACTION * len(names)))
    return set(sorted(names, key=lambda s: unit_hash(f"{group}/{s}"))[:n])


# ---------------------------------------------------------------------------------------------
# Debian packages


def download(pkg: Package, cache: Path) -> tuple[Path, str]:
    """The package's .deb in ``cache/debs`` (downloaded once) and the version it holds."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for spec in (f"{pkg.name}={pkg.version}", pkg.name):
        found = sorted(debs.glob(f"{pkg.name}_*.deb"))
        wanted = [d for d in found if spec == pkg.name or deb_version(d) == pkg.version]
        if wanted:
            return wanted[-1], deb_version(wanted[-1])
        log(f"apt-get download {spec}")
        done = subprocess.run(["apt-get", "download", spec], cwd=debs, capture_output=True, text=True)
        if done.returncode != 0:
            log(f"  failed: {done.stderr.strip().splitlines()[-1:]}")
    raise SystemExit(f"cannot download {pkg.name} (run 'apt-get update' first?)")


def deb_version(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True,
                          check=True).stdout.strip()


def extract(deb: Path, pattern: str, exclude: str, into: Path) -> tuple[list[Path], Path | None]:
    """Only the members matching ``pattern`` (sorted) plus the copyright file, into ``into``."""
    files, copyright_file = [], None
    tar_stream = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=tar_stream.stdout, mode="r|") as tar:
        for member in tar:
            is_copyright = member.name.startswith("./usr/share/doc/") and member.name.endswith("/copyright")
            wanted = fnmatch.fnmatch(member.name, pattern) and not (exclude and fnmatch.fnmatch(member.name, exclude))
            if not member.isfile() or not (wanted or is_copyright):
                continue
            target = into / member.name.lstrip("./")
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            if is_copyright:
                copyright_file = target
            else:
                files.append(target)
    if tar_stream.wait() != 0:
        raise SystemExit(f"{deb}: dpkg-deb failed")
    return sorted(files, key=lambda p: p.as_posix()), copyright_file


def dep5_licences(copyright_file: Path | None) -> dict[str, str]:
    """``{file name: licence}`` for the DEP-5 paragraphs that name single files (the per-file
    exceptions such as sonic-pi's CC0 samples); wildcard paragraphs are left to ``licence``."""
    if copyright_file is None:
        return {}
    named: dict[str, str] = {}
    for paragraph in copyright_file.read_text(errors="replace").split("\n\n"):
        files, licence, field = [], None, None
        for line in paragraph.splitlines():
            if line[:1].isspace() and field == "Files":
                files += line.split()
            elif ":" in line and not line[:1].isspace():
                field, value = line.split(":", 1)
                if field == "Files":
                    files += value.split()
                elif field == "License" and licence is None:
                    licence = value.strip()
        for f in files:
            name = PurePosixPath(f).name
            if licence and not any(c in name for c in "*?["):
                named[name] = licence
    return named


# ---------------------------------------------------------------------------------------------
# Excerpts and reels


def excerpts(seconds: float, clip: float, segments: int) -> list[tuple[float, float]]:
    """``(start, length)`` of ``segments`` clips evenly spaced over the track, 5 % margins."""
    if seconds <= clip:
        return [(0.0, seconds)]
    margin = min(0.05 * seconds, (seconds - clip) / 2)
    span = seconds - 2 * margin - clip
    n = max(1, min(segments, int(span // clip) + 1))
    return [(round(margin + span * (k + 0.5) / n, 2), clip) for k in range(n)]


def write_flac(path: Path, wave: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), np.clip(wave.T, -1.0, 1.0), rate, format="FLAC", subtype="PCM_16")
    os.replace(tmp, path)


def read_excerpt(path: Path, start: float, length: float) -> tuple[np.ndarray, int]:
    with sf.SoundFile(str(path)) as f:
        rate = f.samplerate
        f.seek(int(round(start * rate)))
        return f.read(int(round(length * rate)), dtype="float32", always_2d=True).T, rate


def reel_groups(files: list[Path], how: str) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    for f in files:
        key = f.parent.name if how == "folder" else f.stem.split("_")[0]
        groups.setdefault(key, []).append(f)
    return groups


def package_items(pkg: Package, files: list[Path], root: Path) -> list[dict]:
    """The corpus items of one package, each ``{"name", "parts": [(file, start, length)]}``."""
    items = []
    if pkg.reels:
        for group, members in sorted(reel_groups(files, pkg.reels).items()):
            reel, total, k = [], 0.0, 0
            for f in members:
                try:
                    seconds = sf.info(str(f)).duration
                except RuntimeError:  # a few lmms samples are mislabelled WAVs libsndfile refuses
                    continue
                reel.append((f, 0.0, min(seconds, pkg.clip)))
                total += min(seconds, pkg.clip) + REEL_GAP
                if total >= REEL_SECONDS:
                    items.append({"name": f"{group}-{k:02d}", "parts": reel})
                    reel, total, k = [], 0.0, k + 1
            if reel:
                items.append({"name": f"{group}-{k:02d}", "parts": reel})
        return items
    for f in files:
        for i, (start, length) in enumerate(excerpts(sf.info(str(f)).duration, pkg.clip, pkg.segments)):
            items.append({"name": f"{f.stem}-{i}", "track": f.stem, "parts": [(f, start, length)]})
    return items


def render_item(item: dict, reel: bool) -> tuple[np.ndarray, int]:
    if not reel:
        f, start, length = item["parts"][0]
        return read_excerpt(f, start, length)
    pieces = []
    for f, start, length in item["parts"]:
        wave, rate = read_excerpt(f, start, length)
        wave = resample(convert_channels(wave, 1), rate, REEL_RATE)
        peak = float(np.max(np.abs(wave))) or 1.0
        pieces += [wave * (0.5 / peak), np.zeros((1, int(REEL_GAP * REEL_RATE)), np.float32)]
    return np.concatenate(pieces, axis=1), REEL_RATE


def build_package(pkg: Package, out: Path, cache: Path, limit: int | None) -> list[dict]:
    deb, version = download(pkg, cache)
    with tempfile.TemporaryDirectory(prefix="realmusic-") as tmp:
        files, copyright_file = extract(deb, pkg.members, pkg.exclude, Path(tmp))
        if copyright_file is not None:
            (out / "LICENSES").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(copyright_file, out / "LICENSES" / f"{pkg.name}.copyright")
        named = dep5_licences(copyright_file)
        items = package_items(pkg, files, Path(tmp))[:limit]
        # Held out by track, so no excerpt of a held-out track is trained on.
        tracks = sorted({it.get("track", it["name"]) for it in items})
        held = heldout_names(tracks, pkg.name)
        records = []
        for it in items:
            split = "heldout" if it.get("track", it["name"]) in held else "train"
            rel = Path(split) / pkg.name / f"{it['name']}.flac"
            if not (out / rel).is_file():
                wave, rate = render_item(it, bool(pkg.reels))
                write_flac(out / rel, wave, rate)
            info = sf.info(str(out / rel))
            members = [f"/{f.relative_to(tmp).as_posix()}" for f, _, _ in it["parts"]]
            licences = sorted({named.get(Path(m).name, pkg.licence) for m in members})
            records.append({"file": rel.as_posix(), "split": split, "package": pkg.name, "version": version,
                            "style": pkg.style, "licence": " + ".join(licences),
                            "licence_from": f"LICENSES/{pkg.name}.copyright", "members": members,
                            "excerpts": [[s, round(n, 3)] for _, s, n in it["parts"]],
                            "seconds": round(info.duration, 3), "sample_rate": info.samplerate,
                            "channels": info.channels})
    return records


# ---------------------------------------------------------------------------------------------
# MIDI


def ensemble_midi(path: Path, index: int, programs: tuple[int, int, int]) -> dict:
    """A multi-track piece: melody, block chords, bass line and (every other piece) drums."""
    import mido

    rng = np.random.default_rng([0xE45E, index])
    tonic = 36 + int(rng.integers(0, 12))
    scale = (0, 2, 4, 5, 7, 9, 11) if rng.random() < 0.6 else (0, 2, 3, 5, 7, 8, 10)
    beat = 60.0 / float(rng.uniform(80, 130))
    tpb, tempo = 480, int(beat * 1e6)
    n_bars = int(ENSEMBLE_SECONDS // (4 * beat))
    events: list[tuple[int, int, mido.Message]] = []

    def note(ch: int, pitch: int, on_beat: float, beats: float, vel: int) -> None:
        on, off = int(on_beat * tpb), int((on_beat + beats * 0.92) * tpb)
        events.append((on, 1, mido.Message("note_on", channel=ch, note=pitch, velocity=vel)))
        events.append((off, 0, mido.Message("note_off", channel=ch, note=pitch, velocity=0)))

    degree_of = lambda d: tonic + 12 * (d // 7) + scale[d % 7]  # noqa: E731
    mel = 14 + int(rng.integers(0, 5))
    for bar in range(n_bars):
        root = int(rng.choice([0, 3, 4, 5, 1]))
        for i in range(3):  # chord tones two octaves up, a bass note an octave up
            note(1, degree_of(root + 2 * i) + 12, 4 * bar, 4, int(rng.integers(50, 75)))
        for b in range(4):
            note(2, degree_of(root) + (12 if b % 2 else 0), 4 * bar + b, 1, int(rng.integers(70, 95)))
        t = 0.0
        while t < 4:
            length = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
            mel = int(np.clip(mel + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 10, 24))
            note(0, degree_of(mel), 4 * bar + t, min(length, 4 - t), int(rng.integers(70, 110)))
            t += length
        if index % 2:
            for b in range(8):
                note(9, 42, 4 * bar + b / 2, 0.4, 60)
                if b % 4 == 0:
                    note(9, 36, 4 * bar + b / 2, 0.5, 100)
                if b % 4 == 2:
                    note(9, 38, 4 * bar + b / 2, 0.5, 90)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    for ch, program in enumerate(programs):
        track.append(mido.Message("program_change", channel=ch, program=program, time=0))
    events.sort(key=lambda e: (e[0], e[1], e[2].channel, e[2].note))
    now = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    midi = mido.MidiFile(ticks_per_beat=tpb)
    midi.tracks.append(track)
    midi.save(str(path))
    return {"programs": list(programs), "drums": bool(index % 2), "tonic_midi": tonic,
            "bpm": round(60.0 / beat, 2), "seconds": round(n_bars * 4 * beat + 0.5, 3)}


def render_ensemble(fluidsynth: str, soundfont: Path, midi: Path, seconds: float) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory(prefix="realmusic-midi-") as tmp:
        wav = Path(tmp) / "out.wav"
        subprocess.run([fluidsynth, "-n", "-i", "-q", "-g", "0.5", "-r", "44100", "-T", "wav", "-O", "float",
                        "-F", str(wav), str(soundfont), str(midi)], check=True, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=300)
        data, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    wave = data.T[:, : int(seconds * rate)]
    return wave * (0.5 / max(float(np.max(np.abs(wave))), 1e-6)), rate


def build_midi(out: Path, quick: bool) -> list[dict]:
    fluidsynth, soundfont = midi_dependencies()
    records = []
    builtin = builtin_sources("midi")[: 4 if quick else None]
    held = heldout_names([s.slug for s in builtin], "midi")
    for s in builtin:
        split = "heldout" if s.slug in held else "train"
        rel = Path(split) / "midi" / f"{s.slug}.flac"
        if not (out / rel).is_file():
            write_flac(out / rel, s.load(44_100, 1), 44_100)
        records.append({"file": rel.as_posix(), "split": split, "package": "midi: built-in corpus",
                        "style": "MIDI render, one GM instrument (FluidSynth)", "licence": "MIT (FluidR3_GM soundfont)",
                        "source_id": s.source_id, "label": s.label, "seconds": round(s.seconds, 3)})
    n = 2 if quick else ENSEMBLE_PIECES
    names = [f"ensemble-{i:02d}" for i in range(n)]
    held = heldout_names(names, "ensemble")
    with tempfile.TemporaryDirectory(prefix="realmusic-midi-") as tmp:
        for i, name in enumerate(names):
            split = "heldout" if name in held else "train"
            rel = Path(split) / "ensemble" / f"{name}.flac"
            midi = Path(tmp) / f"{name}.mid"
            facts = ensemble_midi(midi, i, ENSEMBLES[i % len(ENSEMBLES)])
            if not (out / rel).is_file():
                wave, rate = render_ensemble(fluidsynth, soundfont, midi, facts["seconds"])
                write_flac(out / rel, wave * 10 ** (-0.6 * unit_hash(name)), rate)  # 0 to -12 dB
            records.append({"file": rel.as_posix(), "split": split, "package": "midi: ensembles",
                            "style": "MIDI render, 3-4 GM instruments (FluidSynth)",
                            "licence": "MIT (FluidR3_GM soundfont)", **facts})
    return records


# ---------------------------------------------------------------------------------------------


def build(out: Path, cache: Path = DEFAULT_CACHE, *, quick: bool = False, midi: bool = True) -> dict:
    """Build (or complete) the corpus in ``out``; returns the manifest (also written)."""
    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for pkg in PACKAGES:
        if quick and pkg.name not in QUICK:
            continue
        log(f"{pkg.name}: {pkg.style}")
        records += build_package(pkg, out, cache, QUICK.get(pkg.name) if quick else None)
    if midi:
        log("MIDI renders (FluidSynth)")
        records += build_midi(out, quick)
    keep = {r["file"] for r in records}
    for stale in sorted(out.glob("*/*/*.flac")):  # left by another version or a --quick run
        if stale.relative_to(out).as_posix() not in keep:
            stale.unlink()
    summary: dict[str, dict] = {}
    for r in records:
        s = summary.setdefault(r["package"], {"style": r["style"], "licences": set(), "train_minutes": 0.0,
                                              "heldout_minutes": 0.0, "files": 0, "version": r.get("version")})
        s["licences"].add(r["licence"])
        s[f"{r['split']}_minutes"] += r["seconds"] / 60
        s["files"] += 1
    for s in summary.values():
        s["licences"] = sorted(s["licences"])
        s["train_minutes"], s["heldout_minutes"] = round(s["train_minutes"], 2), round(s["heldout_minutes"], 2)
    manifest = {"schema_version": 1, "quick": quick, "heldout_fraction": HELDOUT_FRACTION,
                "train_dir": "train", "heldout_dir": "heldout", "packages": summary, "files": records,
                "train_minutes": round(sum(r["seconds"] for r in records if r["split"] == "train") / 60, 2),
                "heldout_minutes": round(sum(r["seconds"] for r in records if r["split"] == "heldout") / 60, 2),
                "build_seconds": round(time.monotonic() - t0, 1)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the .debs are kept")
    p.add_argument("--quick", action="store_true", help="a few minutes from three small packages")
    p.add_argument("--no-midi", action="store_true", help="skip the FluidSynth renders")
    args = p.parse_args(argv)
    manifest = build(args.out, args.cache.expanduser(), quick=args.quick, midi=not args.no_midi)
    print(f"{'package':<30} {'style':<58} {'licence':<44} {'train':>6} {'held':>6}")
    for name, s in manifest["packages"].items():
        print(f"{name:<30} {s['style']:<58} {'; '.join(s['licences'])[:44]:<44} "
              f"{s['train_minutes']:6.1f} {s['heldout_minutes']:6.1f}")
    print(f"total: {manifest['train_minutes']:.1f} min train, {manifest['heldout_minutes']:.1f} min held out, "
          f"built in {manifest['build_seconds']:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
