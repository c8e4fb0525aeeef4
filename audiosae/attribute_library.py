"""The attributes beyond the paper's three, registered in ``audiosae.attribute_registry``
(through ``audiosae.attribute_plugins``, so this module never imports the registry back).

Rhythm, harmony, richer timbre and instrument identity, measured with librosa (filters, peak
picking, beat tracking) on one shared short-time analysis per source:

* the analysis: power STFT with a Hann window of ``n_fft`` = the next power of two >= 85 ms and a
  10 ms hop (``fine_hop``), computed in 30 s blocks so an hour-long file never holds its whole
  spectrogram; from it, per 10 ms frame, the log-mel onset flux (librosa's ``onset_strength``:
  mean over 64 mel bands of the positive dB difference, shifted by ``n_fft / 2``), the chroma
  (``librosa.filters.chroma``), the spectral flatness (``librosa.feature.spectral_flatness``),
  13 MFCCs (``librosa.feature.mfcc`` on the dB mel spectrum) and the level in dBFS.
* a latent frame ``t`` (centre ``c``, hop ``H`` seconds) pools the 10 ms frames whose centre lies
  in ``[c - H/2, c + H/2]`` (at least the nearest one): the maximum for onset strength, the mean
  for the rest.  A frame whose pooled level is below -60 dBFS is silent.

Attributes (classes; ``-1`` = no label, left out of probes; a frame whose raw columns are all NaN
was not measured and gets -1 whatever the attribute):

* ``onset``: ``no onset`` / ``onset``: an onset (``librosa.onset.onset_detect`` on the flux)
  falls within the frame's ``[c - H/2, c + H/2)``.
* ``onset_strength``: the pooled flux in 8 ordinal bins: equal-frequency bins fit on the training
  split after a build or ``label`` (``fit_quantile_edges``; before a fit, and for a spec saved
  without edges: fixed edges 0, .25, .5, 1, 2, 4, 8, 16, 32 dB).
* ``beat_phase``: ``none`` or where the frame falls between the two beats around it
  (``librosa.beat.beat_track``), in 4 quarters; ``none`` outside the first..last beat (raw -1).
* ``chroma``: ``none`` (silent or flat: mean chroma above 0.7 of its peak) or the dominant pitch
  class C..B.
* ``chord``: ``none`` or the major/minor triad (24) whose template best matches the chroma
  (cosine >= 0.75, each of its three tones >= 0.25 of the peak).
* ``flatness``: log10 spectral flatness in 10 ordinal bins (silent frames: -1): equal-frequency bins
  fit on the training split's non-silent frames like ``onset_strength`` (unfit: 10 bins over -5..0).
  Why fit: with fixed edges one bin held 74 % of the tones corpus' frames (onset strength: most
  frames in the lowest bin), so accuracy mostly measured that bin.
* ``mfcc_timbre``: k-means classes (``k`` = 8) of MFCCs 1..12 (standardised), fit on the
  training split's non-silent frames after a build; centroids kept in ``workspace.json``;
  silent frames and a spec without centroids: -1.
* ``instrument``: ``none`` (nothing sounds) or the General MIDI family of the built-in MIDI
  corpus' program, or a label of the user's side-car (``file,start,end,label`` CSV or JSON;
  ``load_label_sidecar``) for their own files; frames with no ground truth: -1.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path, PurePath
from typing import Any, Mapping

import numpy as np

from .attribute_plugins import Attribute, ExtractContext, register
from .errors import AudioSAEError

SILENCE_DB = -60.0
FINE_HOP_S = 0.010
MIN_FFT_S = 0.085   # librosa's defaults for onsets and chroma: 2048 at 22.05 kHz (93 ms)
BLOCK_S = 30.0
N_MELS = 64
N_MFCC = 13
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
ONSET_EDGES = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
FLATNESS_EDGES = tuple(np.linspace(-5.0, 0.0, 11).round(6))
CHROMA_FLAT = 0.7
CHORD_MIN_COSINE = 0.75
CHORD_MIN_TONE = 0.25
MFCC_K = 8
ONSET_BINS = 8
FLATNESS_BINS = 10
MIN_FIT_FRAMES = 100
MFCC_FIT_FRAMES = 20000
GM_FAMILIES = ("piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
               "reed", "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects")


def gm_family(program: int) -> str:
    """General MIDI program (0-based) -> its family (8 programs each)."""
    if not 0 <= int(program) <= 127:
        raise AudioSAEError(f"GM program must be 0..127, got {program}")
    return GM_FAMILIES[int(program) // 8]


# ---- the shared analysis ---------------------------------------------------------------------
def _analysis(ctx: ExtractContext) -> dict[str, np.ndarray]:
    """Per 10 ms frame features of the source (cached in ``ctx.cache``)."""
    if "fine" in ctx.cache:
        return ctx.cache["fine"]
    import librosa

    sr = int(ctx.sample_rate)
    hop = max(1, int(round(FINE_HOP_S * sr)))
    n_fft = 1 << max(6, int(math.ceil(math.log2(MIN_FFT_S * sr))))
    y = np.asarray(ctx.mono, dtype=np.float32)
    n_frames = len(y) // hop + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty mel filters at low rates
        mel_fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=N_MELS)
        chroma_fb = librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=0.0, norm=None)
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    pad = n_fft // 2
    padded = np.concatenate([np.zeros(pad, np.float32), y, np.zeros(pad + n_fft, np.float32)])
    feats = {k: np.zeros((w, n_frames), np.float32) for k, w in
             (("mel_db", N_MELS), ("chroma", 12), ("mfcc", N_MFCC), ("flatness", 1), ("level", 1))}
    block = max(1, int(BLOCK_S * sr) // hop)
    for a in range(0, n_frames, block):
        ctx.check_cancel()
        b = min(n_frames, a + block)
        frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[a * hop:(b - 1) * hop + 1:hop]
        spec = np.abs(np.fft.rfft(frames * window, axis=1)).T.astype(np.float32)  # [bins, F]
        power = spec ** 2
        mel = mel_fb @ power
        mel_db = 10.0 * np.log10(np.maximum(mel, 1e-10))
        feats["mel_db"][:, a:b] = np.maximum(mel_db, -100.0)
        feats["chroma"][:, a:b] = chroma_fb @ power
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            feats["mfcc"][:, a:b] = librosa.feature.mfcc(S=mel_db, n_mfcc=N_MFCC)
            feats["flatness"][0, a:b] = librosa.feature.spectral_flatness(S=spec, power=2.0)[0]
        ms = (np.square(frames.astype(np.float64)) @ window ** 2) / float(np.sum(window ** 2))
        feats["level"][0, a:b] = 10.0 * np.log10(np.maximum(ms, 1e-12))
    # onset flux as librosa.onset.onset_strength: mean positive dB difference, lag 1, delayed
    # by n_fft / 2 so its peaks line up with the onsets
    diff = np.maximum(0.0, np.diff(feats["mel_db"], axis=1)).mean(axis=0)
    flux = np.concatenate([[0.0], diff])
    shift = n_fft // (2 * hop)
    flux = np.concatenate([np.zeros(shift), flux[:len(flux) - shift]]) if shift else flux
    out = {"flux": flux.astype(np.float64), "chroma": feats["chroma"].astype(np.float64),
           "mfcc": feats["mfcc"].astype(np.float64), "flatness": feats["flatness"][0].astype(np.float64),
           "level": feats["level"][0].astype(np.float64), "hop": hop, "n_fft": n_fft,
           "times": np.arange(n_frames) * hop / sr}
    ctx.cache["fine"] = out
    return out


def _windows(ctx: ExtractContext, fine: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``[lo, hi)`` fine-frame index ranges pooled by each latent frame (never empty)."""
    times, n = fine["times"], len(fine["times"])
    half = 0.5 * ctx.hop_length / ctx.sample_rate
    c = np.asarray(ctx.frame_times, dtype=np.float64)
    lo = np.searchsorted(times, c - half - 1e-9, side="left")
    hi = np.searchsorted(times, c + half + 1e-9, side="right")
    nearest = np.clip(np.rint(c / times[1] if n > 1 else 0 * c).astype(np.int64), 0, n - 1)
    empty = hi <= lo
    lo = np.where(empty, nearest, np.clip(lo, 0, n - 1))
    hi = np.where(empty, nearest + 1, np.clip(hi, 1, n))
    return lo, np.maximum(hi, lo + 1)


def _pool(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, how: str) -> np.ndarray:
    """Mean or max of ``values[..., lo:hi]`` per window; ``values`` ``[F]`` or ``[C, F]``."""
    v = np.atleast_2d(values)
    if how == "mean":
        cum = np.concatenate([np.zeros((v.shape[0], 1)), np.cumsum(v, axis=1)], axis=1)
        out = (cum[:, hi] - cum[:, lo]) / (hi - lo)
    else:
        out = np.empty((v.shape[0], len(lo)))
        for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist())):
            out[:, i] = v[:, a:b].max(axis=1)
    return out[0] if values.ndim == 1 else out


def _silent(ctx: ExtractContext) -> np.ndarray:
    if "silent" not in ctx.cache:
        fine = _analysis(ctx)
        lo, hi = _windows(ctx, fine)
        ms = _pool(10.0 ** (fine["level"] / 10.0), lo, hi, "mean")
        ctx.cache["silent"] = 10.0 * np.log10(np.maximum(ms, 1e-12)) < SILENCE_DB
    return ctx.cache["silent"]


def _bins(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    idx = np.clip(np.searchsorted(np.asarray(edges), np.nan_to_num(v, nan=-np.inf), side="right") - 1,
                  0, len(edges) - 2)
    return np.where(np.isfinite(v), idx, -1).astype(np.int64)


def _bin_names(edges: tuple[float, ...], unit: str) -> list[str]:
    return [f"{edges[k]:g}..{edges[k + 1]:g}{unit}" for k in range(len(edges) - 1)]


def _edges(params: Mapping[str, Any], default: tuple[float, ...]) -> tuple[float, ...]:
    """The fit edges of a binned attribute's params, else the fixed ``default``."""
    fit = params.get("edges") if isinstance(params, Mapping) else None
    return tuple(float(v) for v in fit) if fit else default


def quantile_edges(values: np.ndarray, n_bins: int, digits: int = 4) -> tuple[float, ...] | None:
    """Equal-frequency bin edges of ``values`` (finite ones): the 0, 1/n, ..., 1 quantiles rounded
    to ``digits`` decimals, duplicates merged (a value held by many frames makes fewer bins);
    None when fewer than ``MIN_FIT_FRAMES`` values or fewer than 2 bins remain.  Values outside
    the edges fall in the end bins (``_bins`` clips)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < MIN_FIT_FRAMES or int(n_bins) < 2:
        return None
    q = np.round(np.quantile(v, np.linspace(0.0, 1.0, int(n_bins) + 1)), digits)
    edges = tuple(float(x) for x in np.unique(q))
    return edges if len(edges) >= 3 else None


def fit_quantile_edges(column: str, default_bins: int):
    """``Attribute.fit`` of a binned attribute: equal-frequency edges on the training split."""
    def fit(params: dict, raw: Mapping[str, np.ndarray], spec: Any) -> dict:
        n_bins = int(params.get("bins", default_bins))
        edges = quantile_edges(raw[column], n_bins)
        if edges is None:
            raise AudioSAEError(f"{column}: too few or too uniform training frames to fit {n_bins} bins")
        n = int(np.isfinite(np.asarray(raw[column], dtype=np.float64)).sum())
        return dict(params, bins=n_bins, edges=list(edges),
                    fit_source=f"equal-frequency bins of {n} training frames ({len(edges) - 1} distinct)")
    return fit


# ---- rhythm -----------------------------------------------------------------------------------
def _onsets(ctx: ExtractContext) -> np.ndarray:
    """Onset times (s) of the source, ``librosa.onset.onset_detect`` on the flux."""
    if "onsets" not in ctx.cache:
        import librosa

        fine = _analysis(ctx)
        env = fine["flux"]
        if env.max() <= 1e-6:
            ctx.cache["onsets"] = np.zeros(0)
        else:
            ctx.cache["onsets"] = librosa.onset.onset_detect(onset_envelope=env, sr=ctx.sample_rate,
                                                             hop_length=fine["hop"], units="time")
    return ctx.cache["onsets"]


def extract_onset(ctx: ExtractContext, params: dict) -> dict[str, np.ndarray]:
    fine = _analysis(ctx)
    lo, hi = _windows(ctx, fine)
    half = 0.5 * ctx.hop_length / ctx.sample_rate
    onsets = np.sort(_onsets(ctx))
    c = np.asarray(ctx.frame_times, dtype=np.float64)
    hit = np.searchsorted(onsets, c + half, side="left") > np.searchsorted(onsets, c - half, side="left")
    return {"onset": hit.astype(np.float64), "onset_strength": _pool(fine["flux"], lo, hi, "max")}


def extract_beats(ctx: ExtractContext, params: dict) -> dict[str, np.ndarray]:
    import librosa

    fine = _analysis(ctx)
    phase = np.full(ctx.n_frames, -1.0)   # -1: no beat around the frame (NaN: not measured)
    if fine["flux"].max() > 1e-6:
        _, beats = librosa.beat.beat_track(onset_envelope=fine["flux"], sr=ctx.sample_rate,
                                           hop_length=fine["hop"], units="time")
        beats = np.sort(np.asarray(beats, dtype=np.float64))
        if len(beats) >= 3:
            c = np.asarray(ctx.frame_times, dtype=np.float64)
            k = np.searchsorted(beats, c, side="right") - 1
            inside = (k >= 0) & (k < len(beats) - 1)
            kk = np.clip(k, 0, len(beats) - 2)
            span = beats[kk + 1] - beats[kk]
            phase = np.where(inside & (span > 0), (c - beats[kk]) / np.maximum(span, 1e-9), -1.0)
    return {"beat_phase": phase}


# ---- harmony ----------------------------------------------------------------------------------
def extract_chroma(ctx: ExtractContext, params: dict) -> dict[str, np.ndarray]:
    fine = _analysis(ctx)
    lo, hi = _windows(ctx, fine)
    chroma = _pool(fine["chroma"], lo, hi, "mean").T          # [T, 12]
    peak = chroma.max(axis=1, keepdims=True)
    chroma = np.where(peak > 0, chroma / np.maximum(peak, 1e-30), 0.0)
    chroma[_silent(ctx)] = 0.0
    return {"chroma": chroma}


def classify_chroma(params: dict, raw: Mapping[str, np.ndarray], spec: Any) -> np.ndarray:
    c = np.nan_to_num(np.asarray(raw["chroma"], dtype=np.float64))
    best = c.argmax(axis=1)
    none = (c.max(axis=1) <= 0) | (c.mean(axis=1) > CHROMA_FLAT)
    return np.where(none, 0, best + 1).astype(np.int64)


def chord_templates() -> np.ndarray:
    """[24, 12]: major triads C..B, then minor triads Cm..Bm (unit length)."""
    out = np.zeros((24, 12))
    for root in range(12):
        for i, third in enumerate((4, 3)):
            out[12 * i + root, [root, (root + third) % 12, (root + 7) % 12]] = 1.0
    return out / np.sqrt(3.0)


def classify_chord(params: dict, raw: Mapping[str, np.ndarray], spec: Any) -> np.ndarray:
    c = np.nan_to_num(np.asarray(raw["chroma"], dtype=np.float64))
    norm = np.linalg.norm(c, axis=1)
    templates = chord_templates()
    cos = (c @ templates.T) / np.maximum(norm[:, None], 1e-30)
    best = cos.argmax(axis=1)
    tones = templates[best] > 0
    weakest = np.where(tones, c, np.inf).min(axis=1)
    ok = (norm > 0) & (cos.max(axis=1) >= CHORD_MIN_COSINE) & (weakest >= CHORD_MIN_TONE * c.max(axis=1))
    return np.where(ok, best + 1, 0).astype(np.int64)


def chord_names() -> list[str]:
    return ["none", *PITCH_CLASSES, *(f"{p}m" for p in PITCH_CLASSES)]


# ---- timbre -----------------------------------------------------------------------------------
def extract_flatness(ctx: ExtractContext, params: dict) -> dict[str, np.ndarray]:
    fine = _analysis(ctx)
    lo, hi = _windows(ctx, fine)
    flat = _pool(np.log10(np.maximum(fine["flatness"], 1e-12)), lo, hi, "mean")
    flat[_silent(ctx)] = np.nan
    return {"flatness": flat}


def extract_mfcc(ctx: ExtractContext, params: dict) -> dict[str, np.ndarray]:
    fine = _analysis(ctx)
    lo, hi = _windows(ctx, fine)
    mfcc = _pool(fine["mfcc"], lo, hi, "mean").T               # [T, 13]
    mfcc[_silent(ctx)] = np.nan
    return {"mfcc": mfcc}


def _mfcc_features(mfcc: np.ndarray) -> np.ndarray:
    return np.asarray(mfcc, dtype=np.float64)[:, 1:]            # c0 is the level, not the timbre


def classify_mfcc(params: dict, raw: Mapping[str, np.ndarray], spec: Any) -> np.ndarray:
    x = _mfcc_features(raw["mfcc"])
    out = np.full(x.shape[0], -1, dtype=np.int64)
    if not params.get("centroids"):
        return out
    cent = np.asarray(params["centroids"], dtype=np.float64)
    mean, std = np.asarray(params["mean"]), np.asarray(params["std"])
    ok = np.all(np.isfinite(x), axis=1)
    z = (x[ok] - mean) / std
    d = ((z[:, None, :] - cent[None, :, :]) ** 2).sum(axis=2)
    out[ok] = d.argmin(axis=1)
    return out


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, iters: int = 50) -> np.ndarray:
    """Centroids ``[k, D]`` of ``x`` (k-means++ start, Lloyd iterations; deterministic)."""
    rng = np.random.default_rng(seed)
    cent = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.min(((x[:, None, :] - np.asarray(cent)[None]) ** 2).sum(axis=2), axis=1)
        p = d / d.sum() if d.sum() > 0 else np.full(len(x), 1.0 / len(x))
        cent.append(x[rng.choice(len(x), p=p)])
    c = np.asarray(cent)
    for _ in range(iters):
        lab = ((x[:, None, :] - c[None]) ** 2).sum(axis=2).argmin(axis=1)
        new = np.array([x[lab == j].mean(axis=0) if np.any(lab == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return c


def fit_mfcc(params: dict, raw: Mapping[str, np.ndarray], spec: Any) -> dict:
    x = _mfcc_features(raw["mfcc"])
    x = x[np.all(np.isfinite(x), axis=1)]
    k = int(params.get("k", MFCC_K))
    if len(x) < 4 * k:
        raise AudioSAEError(f"mfcc_timbre: {len(x)} non-silent training frames, need at least {4 * k}")
    rng = np.random.default_rng(0)
    if len(x) > MFCC_FIT_FRAMES:
        x = x[rng.choice(len(x), MFCC_FIT_FRAMES, replace=False)]
    mean, std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    cent = kmeans((x - mean) / std, k)
    return dict(params, k=k, mean=[round(float(v), 6) for v in mean], std=[round(float(v), 6) for v in std],
                centroids=[[round(float(v), 6) for v in row] for row in cent],
                fit_source=f"k-means on {len(x)} training frames")


# ---- instrument ------------------------------------------------------------------------------
def load_label_sidecar(path: str | Path) -> list[list[Any]]:
    """A user's labels: CSV with a header ``file,start,end,label`` or JSON (a list of objects with
    those keys, or ``{"labels": [...]}``) -> ``[[file, start, end, label], ...]``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AudioSAEError(f"cannot read the label file {path}: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AudioSAEError(f"{path}: not valid JSON ({exc})") from None
        rows = data.get("labels") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise AudioSAEError(f"{path}: expected a list of {{file, start, end, label}} objects")
    else:
        rows = list(csv.DictReader(text.splitlines()))
    out = []
    for i, r in enumerate(rows):
        try:
            file, start, end, label = str(r["file"]), float(r["start"]), float(r["end"]), str(r["label"]).strip()
        except (KeyError, TypeError, ValueError):
            raise AudioSAEError(f"{path}: entry {i + 1} needs file, start, end (seconds) and label") from None
        if not (math.isfinite(start) and math.isfinite(end) and end > start and label):
            raise AudioSAEError(f"{path}: entry {i + 1} has start {start}, end {end}, label {label!r}")
        out.append([file, start, end, label])
    return out


def instrument_params(labels: list[list[Any]] | None = None) -> dict:
    """``instrument``'s params: the GM families then the side-car's own labels as classes."""
    user = sorted({str(r[3]) for r in labels or []} - set(GM_FAMILIES) - {"none"})
    return {"user_classes": user, "user_labels": [list(r) for r in labels or []]}


def _instrument_names(params: dict) -> list[str]:
    return ["none", *GM_FAMILIES, *params.get("user_classes", [])]


def extract_instrument(ctx: ExtractContext, params: dict) -> dict[str, np.ndarray]:
    from .corpus import GM_INSTRUMENTS

    names = _instrument_names(params)
    out = np.full(ctx.n_frames, -1.0)
    times = np.asarray(ctx.frame_times, dtype=np.float64)
    source = ctx.source
    notes = getattr(source, "notes", None)
    programs = {g.name: g.program for g in GM_INSTRUMENTS}
    if notes and all(n.instrument in programs for n in notes):
        out[:] = 0.0
        for n in notes:
            k = names.index(gm_family(programs[n.instrument]))
            out[(times >= n.onset) & (times < n.offset)] = k
    path = getattr(source, "path", None) or getattr(source, "source_id", None)
    if path:
        mine = PurePath(str(path).replace("\\", "/"))
        for file, start, end, label in params.get("user_labels", []):
            theirs = PurePath(str(file).replace("\\", "/"))
            if theirs == mine or (len(theirs.parts) == 1 and theirs.name == mine.name):
                out[(times >= float(start)) & (times < float(end))] = names.index(str(label)) \
                    if str(label) in names else -1
    return {"instrument": out}


def classify_index(column: str):
    def classify(params: dict, raw: Mapping[str, np.ndarray], spec: Any) -> np.ndarray:
        v = np.asarray(raw[column], dtype=np.float64)
        return np.where(np.isfinite(v), v, -1).astype(np.int64)
    return classify


# ---- registration ---------------------------------------------------------------------------
def _register_all() -> None:
    def binned(column: str, edges: tuple[float, ...]):
        def classify(params: dict, raw: Mapping[str, np.ndarray], spec: Any) -> np.ndarray:
            return _bins(raw[column], _edges(params, edges))
        return classify

    onset_cols = {"onset": 1, "onset_strength": 1}
    register(Attribute(
        name="onset", description="an onset (librosa onset detection) within the frame",
        steering="toward 'onset': make the frame an attack (a new note or hit starts); toward 'no onset': "
                 "smooth it into a sustained or silent stretch",
        ordinal=False, columns=onset_cols, extract=extract_onset, classify=classify_index("onset"),
        class_names=lambda p: ["no onset", "onset"]), replace=True)
    register(Attribute(
        name="onset_strength", description="peak onset flux in the frame (dB, binned)",
        steering="toward a higher bin: a sharper, louder attack; toward the lowest: a steady sound",
        ordinal=True, columns=onset_cols, extract=extract_onset,
        classify=binned("onset_strength", ONSET_EDGES),
        class_names=lambda p: _bin_names(_edges(p, ONSET_EDGES), " dB"),
        class_value=lambda p, k: 0.5 * (_edges(p, ONSET_EDGES)[k] + _edges(p, ONSET_EDGES)[k + 1]),
        default_params=lambda: {"bins": ONSET_BINS, "edges": None, "fit_source": "not fit"},
        fit=fit_quantile_edges("onset_strength", ONSET_BINS)), replace=True)
    register(Attribute(
        name="beat_phase", description="where the frame falls between the beats around it (librosa beat tracking)",
        steering="toward a quarter: move the frame's rhythmic position (an onset on the beat for 0-25%)",
        ordinal=False, columns={"beat_phase": 1}, extract=extract_beats,
        classify=lambda p, raw, s: np.where(np.nan_to_num(raw["beat_phase"], nan=-1.0) >= 0,
                                            1 + np.clip(np.floor(np.nan_to_num(raw["beat_phase"]) * 4), 0, 3),
                                            0).astype(np.int64),
        class_names=lambda p: ["none", "beat 0-25%", "beat 25-50%", "beat 50-75%", "beat 75-100%"]), replace=True)
    register(Attribute(
        name="chroma", description="dominant pitch class of the chroma (octave-folded)",
        steering="toward a pitch class: move the harmonic weight of the frame onto that note name in any octave",
        ordinal=False, columns={"chroma": 12}, extract=extract_chroma, classify=classify_chroma,
        class_names=lambda p: ["none", *PITCH_CLASSES]), replace=True)
    register(Attribute(
        name="chord", description="major/minor triad by template matching on the chroma",
        steering="toward a chord: make the frame's harmony that triad (root and quality)",
        ordinal=False, columns={"chroma": 12}, extract=extract_chroma, classify=classify_chord,
        class_names=lambda p: chord_names()), replace=True)
    register(Attribute(
        name="flatness", description="log10 spectral flatness (0: white noise, very negative: pure tones)",
        steering="toward a higher bin: noisier, breathier; toward a lower bin: purer, more tonal",
        ordinal=True, columns={"flatness": 1}, extract=extract_flatness,
        classify=binned("flatness", FLATNESS_EDGES), class_names=lambda p: _bin_names(_edges(p, FLATNESS_EDGES), ""),
        class_value=lambda p, k: 0.5 * (_edges(p, FLATNESS_EDGES)[k] + _edges(p, FLATNESS_EDGES)[k + 1]),
        default_params=lambda: {"bins": FLATNESS_BINS, "edges": None, "fit_source": "not fit"},
        fit=fit_quantile_edges("flatness", FLATNESS_BINS)), replace=True)
    register(Attribute(
        name="mfcc_timbre", description="k-means timbre classes of MFCCs 1-12, fit on the training split",
        steering="toward a class: give the frame the spectral envelope of that MFCC cluster",
        ordinal=False, columns={"mfcc": N_MFCC}, extract=extract_mfcc, classify=classify_mfcc,
        class_names=lambda p: [f"mfcc {j}" for j in range(int(p.get("k", MFCC_K)))],
        default_params=lambda: {"k": MFCC_K, "centroids": None, "mean": None, "std": None,
                                "fit_source": "not fit"},
        fit=fit_mfcc), replace=True)
    register(Attribute(
        name="instrument", description="General MIDI family (built-in MIDI corpus) or the user's side-car label",
        steering="toward a family: make the frame sound played by that kind of instrument",
        ordinal=False, columns={"instrument": 1}, extract=extract_instrument, classify=classify_index("instrument"),
        class_names=_instrument_names, default_params=instrument_params, from_audio=False), replace=True)


_register_all()
