"""A corpus of malformed and hostile audio inputs, generated on the fly (no committed binaries).

``make_hostile_audio(folder)`` writes every case into ``folder`` and returns one ``HostileCase``
per case: what the app must do with it ("rejected" with a one-line message containing
``fragment``, "accepted-with-warning" with a warning containing ``fragment``, or "accepted")
and at which stage a problem shows:

- ``"probe"``: the header check (``probe_audio``, and so every folder scan) rejects it;
- ``"load"``: only decoding (``load_audio``) finds it (NaN samples, silence, clipping...);
- ``"scan"``: only a folder walk sees it (a folder symlink loop).

Everything is tiny: the 3-hour file is a valid WAV header extended *sparsely* with
``os.truncate`` (no disk blocks, no write time); the rest is a few kB.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import soundfile as sf

REJECTED, WARNED, ACCEPTED = "rejected", "accepted-with-warning", "accepted"
RATE = 8000


@dataclass(frozen=True)
class HostileCase:
    name: str                      # short ASCII id (test ids); the file name may be anything
    path: Path
    outcome: str                   # REJECTED / WARNED / ACCEPTED
    fragment: str = ""             # expected in the error or warning message
    stage: str = "load"            # "probe", "load" or "scan" (see the module docstring)
    skip_reason: str | None = None  # set when this machine cannot produce the case (root, no FIFOs)

    @property
    def rejected(self) -> bool:
        return self.outcome == REJECTED


# ---- hand-written WAV bytes (soundfile refuses to write some of these headers) ------------------
def wav_bytes(data: bytes, *, channels: int = 1, rate: int = RATE, bits: int = 16, float_format: bool = False,
              data_size: int | None = None, riff_size: int | None = None, fmt_size: int = 16,
              form: bytes = b"WAVE", with_data: bool = True, extra: bytes = b"") -> bytes:
    """A canonical RIFF/WAVE file; every size field can be overridden to lie."""
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 3 if float_format else 1, channels, rate, rate * block_align, block_align, bits)
    fmt = fmt + b"\x00" * max(0, min(fmt_size, 64) - 16)
    chunks = b"fmt " + struct.pack("<I", fmt_size) + fmt + extra
    if with_data:
        chunks += b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    size = 4 + len(chunks) if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", size & 0xFFFFFFFF) + form + chunks


def pcm16(wave: np.ndarray) -> bytes:
    return (np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes()


def encoded(wave: np.ndarray, fmt: str, subtype: str | None = None, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def tone(seconds: float = 0.5, hz: float = 440.0, amplitude: float = 0.5, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def good_files(folder: str | Path) -> list[Path]:
    """Two small usable files (a WAV and a FLAC tone) to mix with the hostile ones."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    a, b = folder / "good-a440.wav", folder / "good-e330.flac"
    sf.write(str(a), tone(1.0, 440.0), RATE)
    sf.write(str(b), tone(1.0, 330.0, 0.3), RATE)
    return [a, b]


def make_hostile_audio(folder: str | Path) -> list[HostileCase]:
    """Write the hostile corpus into ``folder`` (created); returns its cases."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[HostileCase] = []

    def add(name: str, file: str | Path, content: bytes | None, outcome: str, fragment: str = "",
            stage: str = "load", skip_reason: str | None = None) -> Path:
        path = folder / file
        if content is not None:
            path.write_bytes(content)
        cases.append(HostileCase(name, path, outcome, fragment, stage, skip_reason))
        return path

    sine = tone()
    sine_pcm = pcm16(sine)
    wav = wav_bytes(sine_pcm)
    flac = encoded(sine, "FLAC")
    ogg = encoded(np.tile(sine, 4), "OGG", "VORBIS")
    mp3 = encoded(np.tile(sine, 4), "MP3", "MPEG_LAYER_III")

    # -- not audio at all -------------------------------------------------------------------------
    add("empty", "empty.wav", b"", REJECTED, "empty", "probe")
    add("text-as-wav", "readme.wav", b"This is a text file, not audio.\n" * 20, REJECTED,
        "not a readable audio file", "probe")
    add("text-as-mp3", "notes.mp3", b"Shopping list: eggs, milk, bread.\n" * 20, REJECTED,
        "not a readable audio file", "probe")
    add("random-bytes-ogg", "noise.ogg", np.random.default_rng(0).bytes(4096), REJECTED,
        "not a readable audio file", "probe")
    add("riff-not-wave", "movie.wav", wav_bytes(sine_pcm, form=b"AVI "), REJECTED, "not a readable audio file",
        "probe")
    add("id3-tag-only", "tag-only.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10, REJECTED,
        "not a readable audio file", "probe")

    # -- truncated files, per format --------------------------------------------------------------
    add("wav-cut-in-riff-header", "cut-riff.wav", wav[:12], REJECTED, "not a readable audio file", "probe")
    add("wav-cut-in-fmt-chunk", "cut-fmt.wav", wav[:30], REJECTED, "not a readable audio file", "probe")
    add("wav-header-only", "header-only.wav", wav[:44], REJECTED, "contains no samples", "probe")
    # A WAV cut short is used as far as it goes, with a warning (libsndfile reads what is there).
    add("wav-cut-mid-data", "cut-mid-data.wav", wav[:44 + len(sine_pcm) // 2], WARNED, "truncated")
    add("wav-claims-more-data", "claims-more.wav", wav_bytes(sine_pcm, data_size=10 * len(sine_pcm)), WARNED,
        "header promises 5.00 s")
    add("wav-zero-length-data", "zero-data.wav", wav_bytes(b""), REJECTED, "contains no samples", "probe")
    add("wav-no-data-chunk", "no-data-chunk.wav", wav_bytes(b"", with_data=False), REJECTED,
        "not a readable audio file", "probe")
    add("wav-huge-fmt-chunk", "huge-fmt.wav", wav_bytes(sine_pcm, fmt_size=0xFFFFFFF0), REJECTED,
        "not a readable audio file", "probe")
    add("wav-garbage-chunk-size", "garbage-chunk.wav",
        wav_bytes(sine_pcm, extra=b"JUNK" + struct.pack("<I", 0xFFFFFF00) + b"\x00" * 8), REJECTED,
        "not a readable audio file", "probe")
    add("wav-garbage-riff-size", "garbage-riff-size.wav", wav_bytes(sine_pcm, riff_size=7), ACCEPTED)
    add("flac-header-only", "header-only.flac", flac[:42], REJECTED, "truncated or damaged")
    add("flac-cut-mid-data", "cut-mid-data.flac", flac[:len(flac) // 2], REJECTED, "truncated or damaged")
    add("ogg-header-only", "header-only.ogg", ogg[:100], REJECTED, "not a readable audio file", "probe")
    add("ogg-cut-mid-data", "cut-mid-data.ogg", ogg[:len(ogg) // 2], REJECTED, "malformed", "probe")
    add("mp3-cut-in-first-frame", "cut-first-frame.mp3", mp3[:6], REJECTED, "damaged MP3", "probe")
    add("mp3-cut-mid-data", "cut-mid-data.mp3", mp3[:len(mp3) // 2], ACCEPTED)

    # -- wrong extension: the content decides -----------------------------------------------------
    add("flac-named-mp3", "really-flac.mp3", flac, ACCEPTED)
    add("wav-named-flac", "really-wav.flac", wav, ACCEPTED)

    # -- impossible or absurd header fields -------------------------------------------------------
    add("zero-channels", "zero-channels.wav", wav_bytes(sine_pcm, channels=0), REJECTED, "zero channels", "probe")
    add("65-channels", "65-channels.wav", wav_bytes(b"\x00\x00" * 65 * 100, channels=65), REJECTED,
        "65 channels", "probe")
    eight = np.stack([tone(0.5, 220.0 * (1 + c / 4), 0.1) for c in range(8)], 1)
    add("8-channels", "8-channels.wav", encoded(eight, "WAV", "PCM_16"), ACCEPTED)
    add("rate-0-hz", "rate-0hz.wav", wav_bytes(sine_pcm, rate=0), REJECTED, "sample rate of 0 Hz", "probe")
    add("rate-1-hz", "rate-1hz.wav", wav_bytes(sine_pcm, rate=1), REJECTED, "sample rate 1 Hz", "probe")
    add("rate-999-hz", "rate-999hz.wav", wav_bytes(sine_pcm, rate=999), REJECTED, "sample rate 999 Hz", "probe")
    add("rate-768-khz", "rate-768khz.wav", wav_bytes(sine_pcm, rate=768_000), REJECTED,
        "sample rate 768000 Hz", "probe")
    add("one-sample", "one-sample.wav", wav_bytes(pcm16(np.array([0.5]))), REJECTED, "too short", "probe")
    five_hours = add("five-hours", "five-hours.wav", wav_bytes(b"", rate=1000, bits=8, data_size=5 * 3600 * 1000),
                     REJECTED, "limit per file", "probe")
    os.truncate(five_hours, 44 + 5 * 3600 * 1000)  # sparse: costs no disk

    # -- valid files with hostile samples ---------------------------------------------------------
    def float_wav(samples: np.ndarray) -> bytes:
        return wav_bytes(np.asarray(samples, dtype="<f4").tobytes(), bits=32, float_format=True)

    with_nan = sine.copy()
    with_nan[1000] = np.nan
    add("one-nan", "one-nan.wav", float_wav(with_nan), REJECTED, "NaN/inf")
    add("all-nan", "all-nan.wav", float_wav(np.full(4000, np.nan)), REJECTED, "NaN/inf")
    add("plus-inf-only", "plus-inf.wav", float_wav(np.full(4000, np.inf)), REJECTED, "NaN/inf")
    add("minus-inf-only", "minus-inf.wav", float_wav(np.full(4000, -np.inf)), REJECTED, "NaN/inf")
    add("denormals-only", "denormals.wav", float_wav(np.full(4000, 1e-40) * np.sign(sine + 1e-9)), REJECTED,
        "only silence")
    add("digital-silence", "silence.flac", encoded(np.zeros(4000), "FLAC"), REJECTED, "only silence")
    add("dither-only", "dither.wav", wav_bytes(np.random.default_rng(1).integers(-1, 2, 4000).astype("<i2").tobytes()),
        REJECTED, "only silence")
    hours = 3 * 3600 * RATE
    three_hours = add("three-hours-of-silence", "three-hours-silence.wav", wav_bytes(b"", data_size=2 * hours),
                      REJECTED, "only silence")
    os.truncate(three_hours, 44 + 2 * hours)  # sparse zeros: 170 MB that cost no disk or write time
    add("pure-dc", "dc.wav", wav_bytes(pcm16(np.full(4000, 0.5))), REJECTED, "constant (DC)")
    add("dc-negative-float", "dc-negative.wav", float_wav(np.full(4000, -0.25)), REJECTED, "constant (DC)")
    late = np.concatenate([np.zeros(10 * RATE, np.float32), tone(0.5)])  # silence longer than one scan block
    add("silence-then-tone", "late-start.flac", encoded(late, "FLAC"), ACCEPTED)
    square = np.sign(np.sin(2 * np.pi * 110 * np.arange(4000) / RATE))
    add("clipped-square", "square.wav", wav_bytes(pcm16(square)), WARNED, "full scale (clipped)")
    add("clipped-sine", "hot-sine.flac", encoded(np.clip(4 * sine, -1, 1), "FLAC"), WARNED, "full scale (clipped)")
    add("float-far-over-full-scale", "loud-float.wav", float_wav(1e4 * sine), WARNED, "full scale (clipped)")
    extremes = np.where(square > 0, np.iinfo(np.int32).max, np.iinfo(np.int32).min).astype("<i4")
    add("int32-extremes", "int32-extremes.wav", wav_bytes(extremes.tobytes(), bits=32), WARNED, "full scale")

    # -- file system oddities ---------------------------------------------------------------------
    (folder / "folder.wav").mkdir()
    add("folder-named-wav", "folder.wav", None, REJECTED, "is a folder", "probe")
    os.symlink(folder / "gone.wav", folder / "dangling.wav")
    add("dangling-symlink", "dangling.wav", None, REJECTED, "broken symbolic link", "probe")
    os.symlink(folder / "loop-b.wav", folder / "loop-a.wav")
    os.symlink(folder / "loop-a.wav", folder / "loop-b.wav")
    add("file-symlink-loop-a", "loop-a.wav", None, REJECTED, "symbolic link loop", "probe")
    add("file-symlink-loop-b", "loop-b.wav", None, REJECTED, "symbolic link loop", "probe")
    (folder / "sub").mkdir()
    os.symlink(folder, folder / "sub" / "back-to-top", target_is_directory=True)
    add("folder-symlink-loop", Path("sub") / "back-to-top", None, REJECTED, "symlink loop", "scan")
    fifo_skip = None
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "pipe.wav")
    else:
        fifo_skip = "this platform has no FIFOs"
    add("fifo-named-wav", "pipe.wav", None, REJECTED, "not a regular file", "probe", fifo_skip)
    if os.path.exists("/dev/null"):
        os.symlink("/dev/null", folder / "device.wav")
        add("device-file", "device.wav", None, REJECTED, "not a regular file", "probe")
    locked = add("unreadable", "locked.wav", wav, REJECTED, "permission denied", "probe",
                 "running as root: file permissions do not stop root from reading"
                 if hasattr(os, "geteuid") and os.geteuid() == 0 else None)
    locked.chmod(0)

    # -- hostile names ----------------------------------------------------------------------------
    if sys.platform != "win32":
        add("non-utf8-name", os.fsdecode(b"latin1-caf\xe9-\xff.wav"), wav, ACCEPTED)
        add("non-utf8-name-garbage", os.fsdecode(b"broken-\xfe\xff.wav"), b"not audio at all" * 10, REJECTED,
            "not a readable audio file", "probe")
        add("newline-and-quotes-in-name", 'line\none "double" \'single\'.wav', b"not audio" * 10, REJECTED,
            "not a readable audio file", "probe")
    add("250-byte-name", "n" * 246 + ".wav", wav, ACCEPTED)
    add("250-byte-name-garbage", "g" * 245 + ".flac", b"\x00garbage" * 8, REJECTED, "not a readable audio file",
        "probe")
    add("unicode-name", "Übung — 音楽 🎵.wav", wav, ACCEPTED)
    add("unicode-name-garbage", "Übung — 音楽 🎵 (kaputt).wav", b"\x00\x01 kaputt " * 10, REJECTED,
        "not a readable audio file", "probe")
    return cases


# ================================================================================================
# Hostile workspace and trace files
# ================================================================================================
# Each ``WorkspaceDamage`` damages one file of a copy of the demo workspace (or of a tiny trace
# folder); ``part`` says which loader reads that file, ``fragment`` what its message must say.

DEMO_SAE = "x8-l1_0.02"


@dataclass(frozen=True)
class WorkspaceDamage:
    name: str
    file: str                       # relative to the workspace (or trace folder, for part "trace")
    damage: Callable[[Path], None]
    part: str                       # workspace, manifest, shard, sae, sae-metrics, probes, probe-metrics,
                                    # feature-index, trace
    fragment: str = ""              # expected in the error message (besides the file name)
    names: str = ""                 # the file the message names, when not the damaged one
    report_sees: bool = True        # ``audiosae report`` checks shards by header only: data damage
                                    # (NaN latents, bad indices) shows when the shard is read


def truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def safetensors_header_only(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:8 + int.from_bytes(data[:8], "little")])


def make_empty(path: Path) -> None:
    path.write_bytes(b"")


def write_pickle(path: Path) -> None:
    import pickle

    path.write_bytes(pickle.dumps({"W_enc": np.zeros((2, 2)), "note": "a pickle, not safetensors"}))


def write_zip(path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:   # what torch.save writes: a zip archive
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")


def write_text(text: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        path.write_text(text, encoding="utf-8")
    return damage


def edit_json(change: Callable[[Any], Any]) -> Callable[[Path], None]:
    """Load the JSON, let ``change`` edit it in place (its return value is ignored), write it back."""
    def damage(path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        change(data)
        path.write_text(json.dumps(data), encoding="utf-8")
    return damage


def json_set(*keys_and_value: Any) -> Callable[[Path], None]:
    """``json_set("a", "b", 3)``: ``data["a"]["b"] = 3``."""
    *keys, value = keys_and_value

    def change(data: Any) -> None:
        for key in keys[:-1]:
            data = data[key]
        data[keys[-1]] = value
    return edit_json(change)


def json_delete(*keys: Any) -> Callable[[Path], None]:
    def change(data: Any) -> None:
        for key in keys[:-1]:
            data = data[key]
        del data[keys[-1]]
    return edit_json(change)


def json_nan(key: str) -> Callable[[Path], None]:
    """``"key": NaN`` as a bare token (Python's json reads it; strict JSON has no NaN)."""
    def damage(path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        data[key] = "__NAN__"
        path.write_text(json.dumps(data).replace('"__NAN__"', "NaN"), encoding="utf-8")
    return damage


def edit_tensors(change: Callable[[dict, dict], None]) -> Callable[[Path], None]:
    """Rewrite a safetensors file after ``change(tensors, header)`` (numpy arrays; the header's
    ``schema_version`` string and its ``json`` metadata as a dict), keeping it well-formed."""
    def damage(path: Path) -> None:
        from safetensors.numpy import load_file, save_file

        tensors = load_file(str(path))
        n = int.from_bytes(path.read_bytes()[:8], "little")
        raw = json.loads(path.read_bytes()[8:8 + n]).get("__metadata__", {}) or {}
        header = {"schema_version": raw.get("schema_version", "1"),
                  "json": json.loads(raw["json"]) if "json" in raw else {}}
        change(tensors, header)
        meta = {"schema_version": str(header["schema_version"]), "json": json.dumps(header["json"])}
        save_file(tensors, str(path), metadata=meta)
    return damage


def tensor_reshaped(name: str, shape_of: Callable[[tuple], tuple]) -> Callable[[Path], None]:
    def change(tensors: dict, header: dict) -> None:
        old = tensors[name]
        shape = shape_of(old.shape)
        tensors[name] = np.resize(old, shape).astype(old.dtype)
    return edit_tensors(change)


def tensor_retyped(name: str, dtype: Any) -> Callable[[Path], None]:
    def change(tensors: dict, header: dict) -> None:
        tensors[name] = tensors[name].astype(dtype)
    return edit_tensors(change)


def tensor_dropped(name: str) -> Callable[[Path], None]:
    def change(tensors: dict, header: dict) -> None:
        del tensors[name]
    return edit_tensors(change)


def tensor_header_schema(version: int) -> Callable[[Path], None]:
    def change(tensors: dict, header: dict) -> None:
        header["schema_version"] = str(version)
        header["json"]["schema_version"] = version
    return edit_tensors(change)


def tensor_poisoned(name: str, value: float = float("nan")) -> Callable[[Path], None]:
    def change(tensors: dict, header: dict) -> None:
        t = tensors[name].copy()
        t.flat[0] = value
        tensors[name] = t
    return edit_tensors(change)


def tensor_set(name: str, make: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    def change(tensors: dict, header: dict) -> None:
        tensors[name] = make(tensors[name])
    return edit_tensors(change)


def _corrupt_file_cases(prefix: str, file: str, part: str) -> list[WorkspaceDamage]:
    """The damage every safetensors file gets: cut, header only, empty, a pickle, a zip."""
    return [
        WorkspaceDamage(f"{prefix}-truncated", file, truncate_half, part, "corrupt or truncated"),
        WorkspaceDamage(f"{prefix}-header-only", file, safetensors_header_only, part, "corrupt or truncated"),
        WorkspaceDamage(f"{prefix}-empty", file, make_empty, part, ""),
        WorkspaceDamage(f"{prefix}-is-a-pickle", file, write_pickle, part, ""),
        WorkspaceDamage(f"{prefix}-is-a-zip", file, write_zip, part, ""),
        WorkspaceDamage(f"{prefix}-schema-999", file, tensor_header_schema(999), part, "newer"),
    ]


def _json_file_cases(prefix: str, file: str, part: str) -> list[WorkspaceDamage]:
    """The damage every JSON file gets: cut, empty, not JSON, a list, newer, NaN version."""
    return [
        WorkspaceDamage(f"{prefix}-truncated-json", file, truncate_half, part, "not valid JSON"),
        WorkspaceDamage(f"{prefix}-empty-json", file, make_empty, part, "not valid JSON"),
        WorkspaceDamage(f"{prefix}-binary", file, write_pickle, part, ""),
        WorkspaceDamage(f"{prefix}-json-list", file, write_text("[1, 2, 3]"), part, "JSON object"),
        WorkspaceDamage(f"{prefix}-schema-999", file, json_set("schema_version", 999), part, "newer"),
        WorkspaceDamage(f"{prefix}-schema-nan", file, json_nan("schema_version"), part, "schema_version"),
        WorkspaceDamage(f"{prefix}-schema-string", file, json_set("schema_version", "one"), part, "schema_version"),
    ]


def hostile_workspace_damages() -> list[WorkspaceDamage]:
    """Damage for every kind of file in a workspace (the demo's layout) and in a trace folder."""
    sae_dir, probe_dir = f"saes/{DEMO_SAE}", f"probes/{DEMO_SAE}"
    shard = "corpus/shard-00000.safetensors"
    out: list[WorkspaceDamage] = []
    # -- workspace.json
    out += _json_file_cases("workspace", "workspace.json", "workspace")
    out += [
        WorkspaceDamage("workspace-no-backend", "workspace.json", json_delete("backend"), "workspace", "backend"),
        WorkspaceDamage("workspace-backend-number", "workspace.json", json_set("backend", "name", 7), "workspace",
                        "backend"),
        WorkspaceDamage("workspace-backend-options-list", "workspace.json", json_set("backend", "options", [1]),
                        "workspace", "options"),
        WorkspaceDamage("workspace-no-attribute-spec", "workspace.json", json_delete("attribute_spec"), "workspace",
                        "attribute_spec"),
        WorkspaceDamage("workspace-spec-bins-text", "workspace.json",
                        json_set("attribute_spec", "loudness", "n_bins", "twenty"), "workspace", "n_bins"),
        WorkspaceDamage("workspace-spec-nan", "workspace.json",
                        json_set("attribute_spec", "timbre", "min_hz", float("nan")), "workspace", "timbre"),
        WorkspaceDamage("workspace-corpus-list", "workspace.json", json_set("corpus", [1, 2]), "workspace", "corpus"),
    ]
    # -- corpus/manifest.json
    out += _json_file_cases("manifest", "corpus/manifest.json", "manifest")
    out += [
        WorkspaceDamage("manifest-shards-text", "corpus/manifest.json", json_set("shards", "all of them"), "manifest",
                        "malformed"),
        WorkspaceDamage("manifest-shard-without-file", "corpus/manifest.json",
                        edit_json(lambda d: d["shards"][0].pop("file")), "manifest", "malformed"),
        WorkspaceDamage("manifest-shard-outside", "corpus/manifest.json",
                        json_set("shards", 0, "file", "../workspace.json"), "manifest", "not a file name"),
        WorkspaceDamage("manifest-frames-text", "corpus/manifest.json", json_set("shards", 0, "n_frames", "many"),
                        "manifest", "n_frames"),
        WorkspaceDamage("manifest-sources-list", "corpus/manifest.json", json_set("sources", [1, 2]), "manifest",
                        "malformed"),
        WorkspaceDamage("manifest-source-extra-key", "corpus/manifest.json",
                        edit_json(lambda d: next(iter(d["sources"].values())).update(colour="red")), "manifest",
                        "malformed"),
        WorkspaceDamage("manifest-missing-shard-file", "corpus/manifest.json",
                        json_set("shards", 0, "file", "shard-00099.safetensors"), "shard", "not found",
                        names="shard-00099.safetensors"),
    ]
    # -- the corpus shard
    out += _corrupt_file_cases("shard", shard, "shard")
    out += [
        WorkspaceDamage("shard-latents-wrong-width", shard, tensor_reshaped("latents", lambda s: (s[0], s[1] + 1)),
                        "shard", "latents"),
        WorkspaceDamage("shard-latents-1d", shard, tensor_reshaped("latents", lambda s: (s[0],)), "shard", "latents"),
        WorkspaceDamage("shard-rows-mismatch", shard, tensor_reshaped("midi", lambda s: (s[0] - 5,)), "shard", "rows"),
        WorkspaceDamage("shard-source-float", shard, tensor_retyped("source", np.float32), "shard", "source"),
        WorkspaceDamage("shard-latents-int", shard, tensor_retyped("latents", np.int32), "shard", "latents"),
        WorkspaceDamage("shard-source-out-of-range", shard, tensor_set("source", lambda t: t * 0 + 999), "shard",
                        "source", report_sees=False),
        WorkspaceDamage("shard-latents-nan", shard, tensor_poisoned("latents"), "shard", "NaN", report_sees=False),
        WorkspaceDamage("shard-no-time", shard, tensor_dropped("time"), "shard", "time"),
        WorkspaceDamage("shard-metadata-no-sources", shard,
                        edit_tensors(lambda t, h: h["json"].pop("sources")), "shard", "source list"),
    ]
    # -- the SAE
    out += _json_file_cases("sae-cfg", f"{sae_dir}/cfg.json", "sae")
    out += [
        WorkspaceDamage("sae-cfg-no-d-sae", f"{sae_dir}/cfg.json", json_delete("d_sae"), "sae", "d_sae"),
        WorkspaceDamage("sae-cfg-d-in-text", f"{sae_dir}/cfg.json", json_set("d_in", "wide"), "sae", "d_in"),
        WorkspaceDamage("sae-cfg-d-in-changed", f"{sae_dir}/cfg.json", json_set("d_in", 64), "sae", "d_in"),
        WorkspaceDamage("sae-cfg-eps-nan", f"{sae_dir}/cfg.json", json_set("rms_eps", float("nan")), "sae", "rms_eps"),
        WorkspaceDamage("sae-cfg-other-kind", f"{sae_dir}/cfg.json", json_set("kind", "torch.model"), "sae", "kind"),
    ]
    out += _corrupt_file_cases("sae-weights", f"{sae_dir}/sae.safetensors", "sae")
    out += [
        WorkspaceDamage("sae-weights-transposed", f"{sae_dir}/sae.safetensors",
                        tensor_set("W_enc", lambda t: np.ascontiguousarray(t.T)), "sae", "W_enc"),
        WorkspaceDamage("sae-weights-float16", f"{sae_dir}/sae.safetensors", tensor_retyped("W_dec", np.float16),
                        "sae", "W_dec"),
        WorkspaceDamage("sae-weights-nan", f"{sae_dir}/sae.safetensors", tensor_poisoned("b_enc"), "sae", "NaN"),
        WorkspaceDamage("sae-weights-missing", f"{sae_dir}/sae.safetensors", tensor_dropped("b_dec"), "sae", "b_dec"),
        WorkspaceDamage("sae-weights-edited", f"{sae_dir}/sae.safetensors",
                        tensor_set("b_dec", lambda t: t + 1), "sae", "fingerprint"),
    ]
    out += [
        WorkspaceDamage("sae-metrics-truncated", f"{sae_dir}/metrics.json", truncate_half, "sae-metrics",
                        "not valid JSON"),
        WorkspaceDamage("sae-metrics-list", f"{sae_dir}/metrics.json", write_text("[]"), "sae-metrics", "JSON object"),
        WorkspaceDamage("sae-metrics-schema-999", f"{sae_dir}/metrics.json", json_set("schema_version", 999),
                        "sae-metrics", "newer"),
        WorkspaceDamage("sae-metrics-fvu-text", f"{sae_dir}/metrics.json", json_set("fvu", "low"), "sae-metrics",
                        "fvu"),
    ]
    # -- the probes
    out += _json_file_cases("probes", f"{probe_dir}/probes.json", "probes")
    out += [
        WorkspaceDamage("probes-no-attributes", f"{probe_dir}/probes.json", json_delete("attributes"), "probes",
                        "attributes"),
        WorkspaceDamage("probes-classes-text", f"{probe_dir}/probes.json",
                        json_set("attributes", 0, "n_classes", "several"), "probes", "n_classes"),
        WorkspaceDamage("probes-class-names-short", f"{probe_dir}/probes.json",
                        edit_json(lambda d: d["attributes"][0]["class_names"].pop()), "probes", "class"),
        WorkspaceDamage("probes-other-sae", f"{probe_dir}/probes.json", json_set("sae", "fingerprint", "0" * 64),
                        "probes", "does not match"),
    ]
    out += _corrupt_file_cases("probe-weights", f"{probe_dir}/probes.safetensors", "probes")
    out += [
        WorkspaceDamage("probe-weights-wrong-shape", f"{probe_dir}/probes.safetensors",
                        tensor_reshaped("weight.pitch", lambda s: (s[0], s[1] // 2)), "probes", "weight.pitch"),
        WorkspaceDamage("probe-weights-inf", f"{probe_dir}/probes.safetensors",
                        tensor_poisoned("bias.timbre", float("inf")), "probes", "NaN or inf"),
        WorkspaceDamage("probe-weights-int", f"{probe_dir}/probes.safetensors",
                        tensor_retyped("weight.loudness", np.int64), "probes", "weight.loudness"),
    ]
    out += [
        WorkspaceDamage("probe-metrics-truncated", f"{probe_dir}/metrics.json", truncate_half, "probe-metrics",
                        "not valid JSON"),
        WorkspaceDamage("probe-metrics-evaluation-list", f"{probe_dir}/metrics.json", json_set("evaluation", [0.5]),
                        "probe-metrics", "evaluation"),
        WorkspaceDamage("probe-metrics-accuracy-text", f"{probe_dir}/metrics.json",
                        json_set("evaluation", "pitch", "accuracy", "great"), "probe-metrics", "accuracy"),
    ]
    # -- the feature index (a cache: ``load_feature_index`` rebuilds a damaged one, ``read`` says why)
    index = f"{sae_dir}/feature_index.safetensors"
    out += _corrupt_file_cases("feature-index", index, "feature-index")
    out += [
        WorkspaceDamage("feature-index-wrong-shape", index, tensor_reshaped("density", lambda s: (s[0] - 1,)),
                        "feature-index", "density"),
        WorkspaceDamage("feature-index-unknown-source", index, tensor_set("top_source", lambda t: t * 0 + 10 ** 6),
                        "feature-index", "sources"),
        WorkspaceDamage("feature-index-header-text", index,
                        edit_tensors(lambda t, h: h["json"].update(top_k="many")), "feature-index", "malformed"),
    ]
    # -- a trace folder (``make_tiny_trace``)
    out += _json_file_cases("trace-json", "trace.json", "trace")
    out += [
        WorkspaceDamage("trace-json-steps-text", "trace.json", json_set("steps", "thirty-two"), "trace", "steps"),
        WorkspaceDamage("trace-json-no-attributes", "trace.json", json_delete("attributes"), "trace", "attributes"),
        WorkspaceDamage("trace-json-attributes-text", "trace.json", json_set("attributes", "pitch"), "trace",
                        "attributes"),
        WorkspaceDamage("trace-json-progress-short", "trace.json",
                        edit_json(lambda d: d["progress"]["x_t"]["endpoint"]["pitch"].pop()), "trace", "curve"),
        WorkspaceDamage("trace-json-other-trace", "trace.json", json_set("trace_id", "someone-else"), "trace",
                        "another trace"),
    ]
    out += _corrupt_file_cases("trace-tensors", "trace.safetensors", "trace")
    out += [
        WorkspaceDamage("trace-tensors-wrong-shape", "trace.safetensors",
                        tensor_reshaped("final_latent", lambda s: (s[0], 32)), "trace", "final_latent"),
    ]
    return out


def make_tiny_trace(folder: str | Path) -> Path:
    """A small, valid trace folder (4 states, 6 frames, random distributions), saved by ``save_trace``."""
    import uuid

    from audiosae.generation import trace as tr

    steps, frames, d_sae, top_k = 4, 6, 16, 3
    classes = {"pitch": 5, "loudness": 3}
    rng = np.random.default_rng(0)
    distributions = {}
    for source in tr.SOURCES:
        distributions[source] = {}
        for attr, k in classes.items():
            p = rng.random((steps, frames, k)).astype(np.float32)
            distributions[source][attr] = (p / p.sum(-1, keepdims=True)).astype(np.float16)
    features = {s: tr.FeatureSummary(l0=rng.integers(0, 5, (steps, frames)).astype(np.int16),
                                     mean=rng.random((steps, d_sae)).astype(np.float32),
                                     top_index=np.arange(top_k, dtype=np.int64),
                                     top=rng.random((steps, frames, top_k)).astype(np.float16)) for s in tr.SOURCES}
    meta = {"schema_version": 1, "kind": tr.TRACE_KIND, "trace_id": uuid.uuid4().hex, "prompt": "hostile",
            "seed": 0, "steps": steps, "frames": frames, "d_sae": d_sae, "attributes": list(classes),
            "class_names": {a: [str(i) for i in range(k)] for a, k in classes.items()},
            "threshold": 0.9, "eps": 1e-3}
    trace = tr.Trace(meta=meta, t_grid=np.linspace(0, 1, steps).astype(np.float32), distributions=distributions,
                     features=features, progress={}, convergence={}, excluded_frames={},
                     final_latent=rng.standard_normal((frames, 64)).astype(np.float32),
                     lyrics_tokens=np.zeros(frames, np.int32), style=np.zeros((1, 512), np.float32),
                     negative_style=np.zeros((1, 512), np.float32))
    trace.recompute_metrics()
    return tr.save_trace(trace, folder)
