"""Build the bundled demo workspace ``resources/demo/`` that ``audiosae-studio --demo`` opens.

Everything goes through the library (the same jobs as ``audiosae build`` / ``audiosae train``):

1. real recorded music, about 2.5 minutes: excerpts of game scores and recorded samples from
   Debian packages whose licences allow redistribution (``MUSIC``: CC-BY-SA-3.0, the
   Drascula licence (BSD-like), CC0), read offline out of the .debs the way
   ``benchmarks/realmusic.py`` does (its functions; the .debs are fetched with
   ``apt-get download`` into ``--cache`` or read from an installed package), cut, mixed down
   to the backend's rate and channels and kept in ``music/`` as Ogg Vorbis, plus about two
   minutes of the built-in ``tones`` corpus, all encoded with the ``mel`` backend;
   Every registered attribute is labelled, as ``audiosae build`` does by default;
2. one SAE (x8, lambda 0.02) trained with the default schedule of ``audiosae train``
   (``audiosae.defaults``: frame budget, warm-ups, plateau stop), its probes (the paper's three
   and every attribute measured from the sound: the lanes and the audition offer them), its
   feature index (the inspector's corpus statistics) and its feature labels (``describe``),
   prebuilt so the app only reads;
3. clips in ``clips/``: ``00-music-*`` first, a real-music excerpt of a track that is not in
   the corpus (what the studio opens on), ``01-tones-heldout`` (a validation tones source),
   ``02-flute-melody`` (when FluidSynth and a General MIDI soundfont are present) and
   ``03-music-*``, another held-out real-music excerpt;
4. ``sources.json`` (every excerpt's package, version, file, licence, copyright holder and
   offsets), ``LICENSES/`` (the packages' copyright files) and ``README.md`` (attribution);
5. pruning of what the app never reads (training checkpoints, empty ``steer/``).

Deterministic: fixed seeds and one torch thread (multi-threaded reductions may reorder sums).

    python packaging/make_demo.py            # writes resources/demo/
    python packaging/make_demo.py --out /tmp/demo --minutes 0.5 --epochs 5 --excerpt 4
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import NamedTuple

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from audiosae.audio import convert_channels, resample  # noqa: E402
from audiosae.corpus import Source, builtin_sources, midi_unavailable_reason  # noqa: E402
from audiosae.describe import describe_features  # noqa: E402
from audiosae.feature_index import build_feature_index  # noqa: E402
from audiosae.jobs import Progress  # noqa: E402
from audiosae.report import format_report  # noqa: E402
from audiosae.storage import atomic_write_json  # noqa: E402
from audiosae.training import TrainSettings, train_workspace  # noqa: E402
from audiosae.workflows.train import attribute_choice, probe_choices  # noqa: E402
from audiosae.workspace import Workspace, build_corpus  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "resources" / "demo"
BACKEND = "mel"
SEED = 0
# One SAE.  Its feature index (corpus density, histograms, top frames: what the inspector
# shows) ships with it, so opening the demo never writes into the checkout; a second SAE
# would need its own ~2 MB index.  Trained with the default schedule (no epochs, no batch).
EXPANSIONS = (8,)
L1S = (0.02,)
PROBED = ("pitch", "loudness", "timbre", *probe_choices())
# The feature index is built as the inspector would build it (studio.models.inspector.INDEX_TOP_K and
# HIST_BINS; a test checks they agree), so the app loads it instead of rebuilding it.
INDEX_TOP_K = 100
INDEX_HIST_BINS = 40
CLIP_SECONDS = 8.0            # the tones and MIDI clips
EXCERPT_SECONDS = 15.0        # every real-music excerpt (corpus and clips)
REEL_PIECE_SECONDS = 3.0      # one recorded sample's share of a reel
MUSIC_DIR = "music"           # the corpus' real music, inside the workspace (paths kept relative)
SOURCES_FILE = "sources.json"
SOURCES_SCHEMA = 1
# Workspace files the explorer never reads.
PRUNE = ("checkpoints",)

# Licences the demo may ship: the excerpts are redistributed (and their latents derived), so
# only these; never GPL music.  Tones and the MIDI melody are made here.
ALLOWED_LICENCES = ("CC0", "CC-BY-SA-3.0", "Drascula-License")   # DEP-5 short names; Drascula: BSD-like
GENERATED_LICENCES = ("MIT (synthesised by audiosae)", "MIT (FluidR3_GM soundfont)")


class MusicChoice(NamedTuple):
    """What the demo takes from one package of ``benchmarks/realmusic.PACKAGES``.

    ``tracks``: file stems excerpted into the corpus; ``clips``: stems excerpted into
    ``clips/`` only (never trained on); ``reels``: ``{name: [glob, ...]}`` of short samples
    joined into one corpus item each (CC0 samples only)."""

    package: str
    tracks: tuple[str, ...] = ()
    clips: tuple[str, ...] = ()
    reels: tuple[tuple[str, tuple[str, ...]], ...] = ()


MUSIC = (
    MusicChoice("hyperrogue-music", tracks=("hr3-caves", "hr3-jungle", "hr-savino-ocean", "hr-domina-mountain"),
                clips=("hr3-icyland",)),
    MusicChoice("drascula-music", tracks=("track1", "track3", "track5", "track8"), clips=("track13",)),
    MusicChoice("sonic-pi-samples", reels=(("tabla", ("tabla_*",)), ("bass", ("bass_*",)), ("drums", ("drum_*",)),
                                           ("guitar-ambient", ("guit_*", "ambi_piano*", "ambi_choir*")))),
)


def realmusic():
    """``benchmarks/realmusic.py`` (not a package: loaded from its file)."""
    module = sys.modules.get("audiosae_realmusic")
    if module is None:
        spec = importlib.util.spec_from_file_location("audiosae_realmusic", REPO_ROOT / "benchmarks" / "realmusic.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


class MusicUnavailable(RuntimeError):
    """The Debian packages the demo's music comes from cannot be read here."""


def allowed_licence(licence: str) -> bool:
    return licence in ALLOWED_LICENCES or licence in GENERATED_LICENCES


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


def write_ogg(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    """Ogg Vorbis of ``wave`` [C, N] (real music: a tenth of FLAC's size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wave.T, -1.0, 1.0), sample_rate, format="OGG", subtype="VORBIS")


# ---- the Debian packages -----------------------------------------------------------------------
def dep5_files(copyright_file: Path | None) -> dict[str, tuple[str, str]]:
    """``{file name or "*": (licence, copyright holders)}`` from a DEP-5 copyright file."""
    if copyright_file is None:
        return {}
    found: dict[str, tuple[str, str]] = {}
    for paragraph in copyright_file.read_text(errors="replace").split("\n\n"):
        fields: dict[str, list[str]] = {}
        field = None
        for line in paragraph.splitlines():
            if line[:1].isspace() and field is not None:
                fields[field].append(line.strip())
            elif ":" in line:
                field, value = line.split(":", 1)
                fields[field] = [value.strip()]
        if "Files" not in fields or "License" not in fields:
            continue
        licence = fields["License"][0]
        holders = "; ".join(v for v in fields.get("Copyright", []) if v)
        for f in " ".join(fields["Files"]).split():
            name = "*" if f == "*" else PurePosixPath(f).name
            found.setdefault(name, (licence, holders))
    return found


def installed_version(package: str) -> str | None:
    try:
        done = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", package],
                              capture_output=True, text=True)
    except OSError:
        return None
    parts = done.stdout.split()
    return parts[-1] if done.returncode == 0 and "installed" in parts[:3] else None


def package_files(pkg, cache: Path, into: Path) -> tuple[list[Path], Path | None, str, str]:
    """The package's audio members and copyright file: from the installed package when it is
    installed, else out of its .deb (``realmusic.download``: cached or ``apt-get download``)."""
    rm = realmusic()
    version = installed_version(pkg.name)
    if version is not None:
        root = Path("/")
        files = sorted(p for p in root.glob(pkg.members.lstrip("./"))
                       if not (pkg.exclude and fnmatch.fnmatch("./" + p.relative_to(root).as_posix(), pkg.exclude)))
        copyright_file = root / "usr" / "share" / "doc" / pkg.name / "copyright"
        if files:
            return files, copyright_file if copyright_file.is_file() else None, version, "installed"
    try:
        deb, version = rm.download(pkg, cache)
    except (SystemExit, OSError) as exc:
        raise MusicUnavailable(str(exc)) from None
    files, copyright_file = rm.extract(deb, pkg.members, pkg.exclude, into)
    return files, copyright_file, version, deb.name


def member_name(path: Path, into: Path) -> str:
    """The file's path as the package installs it."""
    try:
        return "/" + path.relative_to(into).as_posix()
    except ValueError:
        return path.as_posix()


def music_items(cache: Path, tmp: Path, excerpt: float, sample_rate: int, channels: int) -> tuple[list[dict], dict]:
    """Every real-music excerpt (corpus and clips) as ``{"record", "wave"}``, plus the packages'
    copyright files ``{package: Path}``.  Raises ``MusicUnavailable`` naming the apt packages."""
    rm = realmusic()
    by_name = {p.name: p for p in rm.PACKAGES}
    items, copyrights = [], {}
    for choice in MUSIC:
        pkg = by_name[choice.package]
        into = tmp / pkg.name
        into.mkdir(parents=True, exist_ok=True)
        try:
            files, copyright_file, version, origin = package_files(pkg, cache, into)
        except MusicUnavailable as exc:
            names = " ".join(c.package for c in MUSIC)
            raise MusicUnavailable(
                f"the demo's music comes from the Debian packages {names}; {pkg.name} could not be read "
                f"({exc}). On Debian/Ubuntu: `sudo apt-get update` (then make_demo fetches them with "
                f"`apt-get download` into {cache}), or `sudo apt-get install {names}`") from None
        if copyright_file is not None:
            copyrights[pkg.name] = copyright_file
        terms = dep5_files(copyright_file)
        stems = {f.stem: f for f in files}
        for role, stem in [("corpus", t) for t in choice.tracks] + [("clip", c) for c in choice.clips]:
            if stem not in stems:
                raise MusicUnavailable(f"{pkg.name} {version} has no {stem} (members {pkg.members})")
            f = stems[stem]
            start, length = rm.excerpts(sf.info(str(f)).duration, excerpt, 1)[0]
            wave, rate = rm.read_excerpt(f, start, length)
            licence, holders = terms.get(f.name, terms.get("*", (pkg.licence, "")))
            items.append({"role": role, "name": f"{pkg.name}/{stem}", "wave": _to_backend(wave, rate, sample_rate, channels),
                          "record": {"package": pkg.name, "version": version, "read_from": origin,
                                     "style": pkg.style, "members": [member_name(f, into)],
                                     "excerpts": [[round(float(start), 3), round(float(length), 3)]],
                                     "licence": licence, "copyright": holders}})
        for reel_name, globs in choice.reels:
            parts, total = [], 0.0
            for f in sorted(files, key=lambda p: p.name):
                if total >= excerpt or not any(fnmatch.fnmatch(f.name, g) for g in globs):
                    continue
                if terms.get(f.name, ("",))[0] not in ALLOWED_LICENCES:
                    continue  # e.g. sonic-pi's MIT samples: only the CC0 ones ship
                seconds = min(sf.info(str(f)).duration, REEL_PIECE_SECONDS, excerpt - total)
                parts.append((f, 0.0, seconds))
                total += seconds + rm.REEL_GAP
            if not parts:
                raise MusicUnavailable(f"{pkg.name} {version}: no CC0 samples match {globs}")
            wave, rate = rm.render_item({"name": reel_name, "parts": parts}, True)
            licences = sorted({terms[f.name][0] for f, _, _ in parts})
            holders = sorted({terms[f.name][1] for f, _, _ in parts if terms[f.name][1]})
            items.append({"role": "corpus", "name": f"{pkg.name}/{reel_name}",
                          "wave": _to_backend(wave, rate, sample_rate, channels),
                          "record": {"package": pkg.name, "version": version, "read_from": origin, "style": pkg.style,
                                     "members": [member_name(f, into) for f, _, _ in parts],
                                     "excerpts": [[0.0, round(float(n), 3)] for _, _, n in parts],
                                     "licence": " + ".join(licences), "copyright": "; ".join(holders)}})
    for it in items:
        if not allowed_licence(it["record"]["licence"]):
            raise SystemExit(f"{it['name']}: licence {it['record']['licence']!r} may not ship in the demo")
    return items, copyrights


def _to_backend(wave: np.ndarray, rate: int, sample_rate: int, channels: int) -> np.ndarray:
    """Mixed down and resampled to the backend's format, peak at most -1 dBFS."""
    out = resample(convert_channels(wave, channels), rate, sample_rate)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    return out * min(1.0, 10 ** (-1 / 20) / peak) if peak > 0 else out


# ---- the corpus and the clips ------------------------------------------------------------------
def music_sources(root: Path, items: list[dict], sample_rate: int) -> list[Source]:
    """The corpus' excerpts written under ``root/music`` and their sources (id = relative path)."""
    sources = []
    for it in items:
        if it["role"] != "corpus":
            continue
        rel = f"{MUSIC_DIR}/{it['name']}.ogg"
        write_ogg(root / rel, it["wave"], sample_rate)
        it["record"]["file"] = rel
        it["record"]["seconds"] = round(float(sf.info(str(root / rel)).duration), 3)
        sources.append(Source(source_id=rel, label=f"{it['name']} ({it['record']['licence']})",
                              path=str(root / rel), seconds=float(sf.info(str(root / rel)).duration),
                              notes=None, corpus="user"))
    return sources


def make_clips(ws: Workspace, items: list[dict], sources: list, sample_rate: int, channels: int) -> list[dict]:
    """The demo clips, first the held-out real music, then a held-out tones source and, if
    FluidSynth is here, a MIDI melody; one ``sources.json`` record each."""
    clips_dir = ws.root / "clips"
    records = []
    # Names: the first real-music clip sorts first ("00-"), the tones and the melody keep the
    # names other tests and the README use, more music follows them.
    music_names = ["00"] + [f"{k:02d}" for k in range(3, 99)]
    for k, it in enumerate(i for i in items if i["role"] == "clip"):
        package, track = it["name"].split("/", 1)
        stem = f"{package.split('-')[0]}-{track}"
        path = clips_dir / f"{music_names[k]}-music-{stem}-heldout.ogg"
        write_ogg(path, it["wave"], sample_rate)
        records.append({"file": f"clips/{path.name}", "kind": "music", "in_corpus": False,
                        "seconds": round(float(sf.info(str(path)).duration), 3), **it["record"]})
        print(f"  clip {path.name}: {it['name']} ({it['record']['licence']}; not in the corpus)")
    n_keep = int(CLIP_SECONDS * sample_rate)
    val_ids = sorted(r.source_id for r in ws.manifest().sources.values()
                     if r.split == "val" and r.source_id.startswith("tones/"))
    by_id = {s.source_id: s for s in sources}
    tones = by_id[val_ids[0]] if val_ids else next(s for s in sources if s.source_id.startswith("tones/"))
    path = clips_dir / "01-tones-heldout.flac"
    write_clip(path, tones.load(sample_rate, channels)[:, :n_keep], sample_rate)
    records.append({"file": f"clips/{path.name}", "kind": "tones", "in_corpus": True, "trained_on": not val_ids,
                    "source_id": tones.source_id, "label": tones.label, "licence": GENERATED_LICENCES[0]})
    print(f"  clip {path.name}: {tones.label} (validation split, not trained on)")

    reason = midi_unavailable_reason()
    if reason:
        print(f"  no MIDI clip: {reason}")
        return records
    # A monophonic melody on a wind instrument: its pitch lane is easy to read, and its
    # timbre is new to the SAE.
    melody = [s for s in builtin_sources("midi", seed=SEED) if "flute melody" in s.label][0]
    path = clips_dir / "02-flute-melody.flac"
    write_clip(path, melody.load(sample_rate, channels)[:, :n_keep], sample_rate)
    records.append({"file": f"clips/{path.name}", "kind": "midi", "in_corpus": False,
                    "source_id": melody.source_id, "label": melody.label, "licence": GENERATED_LICENCES[1]})
    print(f"  clip {path.name}: {melody.label}")
    return records


def relative_music_paths(ws: Workspace) -> None:
    """The corpus manifest names the music by paths relative to the workspace (which
    ``Manifest`` resolves when read), so the folder works wherever it is copied."""
    manifest = ws.manifest()
    root = ws.root.resolve()
    for record in manifest.sources.values():
        if record.path is not None:
            try:
                record.path = Path(record.path).resolve().relative_to(root).as_posix()
            except ValueError:
                raise SystemExit(f"corpus source {record.source_id} lies outside the demo: {record.path}") from None
    ws.write_manifest(manifest)


def write_licences(root: Path, copyrights: dict[str, Path], corpus: list[dict],
                   clips: list[dict], settings: dict) -> None:
    """``LICENSES/<package>.copyright``, ``sources.json`` and ``README.md`` (attribution)."""
    (root / "LICENSES").mkdir(exist_ok=True)
    for name, path in sorted(copyrights.items()):
        shutil.copyfile(path, root / "LICENSES" / f"{name}.copyright")
    minutes: dict[str, float] = {}
    for r in corpus:
        key = r.get("package", r.get("kind", "?"))
        minutes[key] = round(minutes.get(key, 0.0) + r["seconds"] / 60, 2)
    atomic_write_json(root / SOURCES_FILE, {
        "schema_version": SOURCES_SCHEMA, "allowed_licences": list(ALLOWED_LICENCES) + list(GENERATED_LICENCES),
        "training": settings, "corpus_minutes": minutes, "corpus": corpus, "clips": clips})
    lines = ["# The demo workspace's audio", "",
             "Built by `packaging/make_demo.py`. The real music is excerpted from Debian packages (cut to "
             f"{EXCERPT_SECONDS:.0f} s, mixed down to mono, resampled to 24 kHz, peak-normalised to -1 dBFS and "
             "re-encoded as Ogg Vorbis; the sample reels join several samples). These are modified versions "
             "of the originals. The corpus latents, the SAE and its probes are derived from them. "
             "`sources.json` lists every excerpt: package, version, file, offsets, licence, copyright holders; "
             "`LICENSES/` holds each package's full copyright file (with the licence texts).", "",
             "| file | from | copyright | licence |", "|---|---|---|---|"]
    for r in [c for c in clips if c["kind"] == "music"] + [c for c in corpus if "package" in c]:
        lines.append(f"| {r['file']} | {r['package']} {r['version']}: {', '.join(Path(m).name for m in r['members'])} "
                     f"| {r['copyright'] or '—'} | {r['licence']} |")
    lines += ["", "CC-BY-SA-3.0 (hyperrogue-music): the excerpts, and what is derived from them here, are offered "
              "under the same licence, https://creativecommons.org/licenses/by-sa/3.0/ (full text in "
              "`LICENSES/hyperrogue-music.copyright`).",
              "Drascula licence (drascula-music): music Copyright (C) 1996-2008 Alcachofa Soft S.L., freely "
              "distributable, not for sale on its own; modified versions must say so (above); the notice and "
              "disclaimer are in `LICENSES/drascula-music.copyright`.",
              "CC0 (sonic-pi-samples): public-domain dedication; the authors are credited above anyway.",
              "The tones are synthesised by audiosae; the MIDI melody is rendered with FluidSynth and the "
              "FluidR3_GM soundfont (MIT).", ""]
    (root / "README.md").write_text("\n".join(lines))


def build_demo(out: Path, *, minutes: float, epochs: int | None = None, excerpt: float = EXCERPT_SECONDS,
               cache: Path | None = None) -> Path:
    """Build the demo in a temporary folder next to ``out`` and swap it in when complete."""
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    cache = Path(cache or realmusic().DEFAULT_CACHE).expanduser()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".demo-build-", dir=out.parent) as tmp:
        root = Path(tmp) / "demo"
        ws = Workspace.create(root, BACKEND)
        backend = ws.backend("cpu")
        rate, channels = backend.sample_rate, backend.channels
        items, copyrights = music_items(cache, Path(tmp) / "debs", excerpt, rate, channels)
        music = music_sources(root, items, rate)
        tones = builtin_sources("tones", minutes=minutes, seed=SEED)
        sources = music + tones
        print(f"corpus: {len(music)} real-music excerpts ({sum(s.seconds for s in music):.0f} s) and "
              f"{len(tones)} tones sources ({sum(s.seconds for s in tones):.0f} s)")
        # every registered attribute, as ``audiosae build`` labels by default; probes for the paper's
        # three and every one measured from the sound (instrument needs ground truth this corpus lacks)
        names, params = attribute_choice(None)
        build_corpus(ws, sources, device="cpu", seed=SEED, progress=_PrintProgress(), attributes=names,
                     attribute_params=params)
        settings = TrainSettings(expansions=EXPANSIONS, l1s=L1S, seed=SEED, probe_attributes=PROBED,
                                 **({"epochs": epochs} if epochs is not None else {}))
        print(f"training SAEs x{list(EXPANSIONS)} lambda {list(L1S)}, "
              f"{f'{epochs} epochs' if epochs is not None else 'the default budget (plateau stop)'}")
        report = train_workspace(ws, settings, device="cpu", progress=_PrintProgress())
        for name in ws.sae_names():
            print(f"feature index for {name}")
            build_feature_index(ws, name, top_k=INDEX_TOP_K, hist_bins=INDEX_HIST_BINS, device="cpu",
                                progress=_PrintProgress())
            print(f"feature labels for {name}")   # the inspector opens on them without a labelling job
            describe_features(ws, name, device="cpu", progress=_PrintProgress())
        clips = make_clips(ws, items, tones, rate, channels)
        relative_music_paths(ws)
        splits = {r.source_id: r.split for r in ws.manifest().sources.values()}
        corpus = [{"kind": "music", **it["record"], "split": splits[it["record"]["file"]]} for it in items if it["role"] == "corpus"]
        corpus += [{"kind": "tones", "source_id": s.source_id, "seconds": round(s.seconds, 3), "split": splits[s.source_id],
                    "licence": GENERATED_LICENCES[0]} for s in tones]
        write_licences(root, copyrights, corpus, clips,
                       {"expansions": list(EXPANSIONS), "l1s": list(L1S), "epochs": epochs,
                        "schedule": "default" if epochs is None else "epochs", "seed": SEED})
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
    parser.add_argument("--epochs", type=int, default=None,
                        help="fixed SAE epochs instead of the default schedule (for quick test builds)")
    parser.add_argument("--excerpt", type=float, default=EXCERPT_SECONDS,
                        help=f"seconds per real-music excerpt (default {EXCERPT_SECONDS:.0f})")
    parser.add_argument("--cache", type=Path, default=None,
                        help="where the .debs are kept (default benchmarks/realmusic.py's cache)")
    args = parser.parse_args(argv)
    try:
        build_demo(args.out, minutes=args.minutes, epochs=args.epochs, excerpt=args.excerpt, cache=args.cache)
    except MusicUnavailable as exc:
        print(f"make_demo: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
