"""DiffRhythm conditioning: the 512-d style vector, the negative style and the lyric tokens.

Style (``StyleEmbedding``, ``[1, 512]`` float32, unit norm) comes from one of

* a text prompt through MuQ-MuLan (``OpenMuQ/MuQ-MuLan-large``, package ``muq``, the optional
  ``[diffrhythm]`` extra, imported only when needed): ``style_from_text``;
* a reference recording: 10 s, mono, 24 kHz, cut from the middle of a file of at least 10 s
  (``style_from_audio``; the clip starts at ``floor(length / 2) - 5`` s, as upstream does);
* a saved embedding (``.npy``, ``.safetensors`` or a tensor-only ``.pt``), ``[512]``,
  ``[1, 512]`` or ``[N, 512]`` (one row per prompt of a batch): ``load_style_embeddings``.

Every MuLan call goes through an object passed in (``mulan``), so tests and the studio can use
their own encoder; ``load_mulan`` builds the real one.

Negative style.  The official sampler's unconditional branch uses ``infer/example/vocal.npy``
(a unit-norm ``[1, 512]`` vector) from the DiffRhythm GitHub repository.  It is not on the
hub and its licence is not ours to ship, so it is an input: ``load_negative_style(path)``.
Without a file the negative style is the zero vector (the DiT's own "dropped prompt" input),
and the returned ``note`` says that guidance then differs from the official pipeline.

Lyrics.  LRC lines ``[mm:ss.xx]text`` become frame-aligned token ids: each line's phoneme
tokens, with every period turned into a comma and a period appended, start at frame
``int(seconds * 44100 / 2048)`` (or right after the previous line, if that is later) and
are cut at the end of the song.  Lines at or after the model's maximum length are dropped,
and for the 2048-frame (95 s) model the last line is dropped as well (both as upstream does).
No lyrics = an instrumental: all token ids 0, no phonemizer needed.  English text is turned
into phonemes with ``phonemizer`` + espeak-ng (en-us, no stress marks) and mapped through the
official ``g2p/g2p/vocab.json``, which is not ours to ship either: pass its path.  Token ids
are vocabulary id + 1 (0 is the filler).  Chinese lyrics need the official g2p (jieba,
pypinyin, a polyphone model) and are refused with a message.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from ..errors import AudioInputError, AudioSAEError, BackendError, DependencyError

__all__ = [
    "STYLE_DIM", "MULAN_MODEL", "MULAN_SAMPLE_RATE", "STYLE_CLIP_SECONDS", "LATENT_SAMPLE_RATE", "LATENT_HOP",
    "INSTALL_HINT", "DIFFRHYTHM_GITHUB", "COMMA_TOKEN", "PERIOD_TOKEN", "StyleEmbedding", "MuLanEncoder",
    "load_mulan", "style_from_text", "style_from_audio", "read_style_clip", "normalise_styles",
    "load_style_embeddings", "style_from_file", "load_negative_style", "LrcLine", "parse_lrc", "read_lrc",
    "load_g2p_vocab", "PhonemeTokenizer", "frames_for_seconds", "instrumental_tokens", "lyrics_to_tokens",
]

STYLE_DIM = 512
MULAN_MODEL = "OpenMuQ/MuQ-MuLan-large"
MULAN_SAMPLE_RATE = 24000
STYLE_CLIP_SECONDS = 10.0
LATENT_SAMPLE_RATE = 44100
LATENT_HOP = 2048
# Ids after the +1 shift (0 is the filler): "," and "." of the official vocabulary.
COMMA_TOKEN = 1
PERIOD_TOKEN = 2
BASE_MODEL_FRAMES = 2048
INSTALL_HINT = "pip install 'audiosae-studio[diffrhythm]'"
DIFFRHYTHM_GITHUB = "https://github.com/ASLP-lab/DiffRhythm"
_NORM_EPS = 1e-6


# ---- style ------------------------------------------------------------------------------------------


@dataclass
class StyleEmbedding:
    """A style vector ``[1, 512]`` float32 and where it came from.

    ``source``: ``"text"``, ``"audio"``, ``"file"`` or ``"zeros"``; ``detail``: the prompt or
    the path; ``note``: a warning the user should see (empty when there is none).
    """

    vector: torch.Tensor
    source: str
    detail: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        vector = torch.as_tensor(self.vector).detach().float().cpu()
        if vector.ndim == 1:
            vector = vector.unsqueeze(0)
        if tuple(vector.shape) != (1, STYLE_DIM):
            raise AudioSAEError(f"a style embedding must be [1, {STYLE_DIM}], got {list(vector.shape)}")
        self.vector = vector

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "detail": self.detail, "note": self.note,
                "norm": float(self.vector.norm())}


class MuLanEncoder(Protocol):
    """What ``muq.MuQMuLan`` offers: ``mulan(texts=[...])`` or ``mulan(wavs=[B, N] at 24 kHz)`` -> ``[B, 512]``."""

    def __call__(self, *, wavs: torch.Tensor | None = None, texts: Sequence[str] | None = None) -> torch.Tensor: ...


def load_mulan(device: str | torch.device = "cpu", model_id: str = MULAN_MODEL) -> MuLanEncoder:
    """The MuQ-MuLan text/audio encoder, from the hub cache (downloads ~2.5 GB the first time).

    Raises ``DependencyError`` when ``muq`` is not installed and ``BackendError`` when the
    model cannot be fetched (offline with an empty cache, say).
    """
    try:
        from muq import MuQMuLan  # optional extra: imported only for text or audio styles
    except ImportError as exc:
        raise DependencyError(f"text and audio style prompts need MuQ-MuLan (package 'muq', missing: {exc}); "
                              f"run: {INSTALL_HINT}, or pass a saved 512-d embedding with --style-embedding") from None
    try:
        model = MuQMuLan.from_pretrained(model_id)
    except Exception as exc:  # offline, gated, disk full: one line, with the way out
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise BackendError(f"cannot load MuQ-MuLan {model_id!r} ({detail}); connect to the internet once "
                           f"to fill the hub cache, or pass a saved embedding with --style-embedding") from None
    return model.to(device).eval()


def normalise_styles(values: Any, where: str = "style embedding") -> torch.Tensor:
    """``[512]``, ``[1, 512]`` or ``[N, 512]`` -> float32 ``[N, 512]`` with unit-norm rows."""
    t = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    t = t.detach().float().cpu()
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[1] != STYLE_DIM or t.shape[0] < 1:
        raise AudioSAEError(f"{where}: expected [{STYLE_DIM}], [1, {STYLE_DIM}] or [N, {STYLE_DIM}], "
                            f"got {list(t.shape)}")
    if not torch.isfinite(t).all():
        raise AudioSAEError(f"{where}: contains NaN or inf")
    norms = t.norm(dim=1, keepdim=True)
    if bool((norms < _NORM_EPS).any()):
        raise AudioSAEError(f"{where}: a row has zero norm; it cannot be normalised")
    return t / norms


def _as_rows(output: Any, where: str) -> torch.Tensor:
    if isinstance(output, (tuple, list)):
        output = output[0]
    return normalise_styles(torch.as_tensor(output), where)


@torch.no_grad()
def style_from_text(prompt: str, mulan: MuLanEncoder) -> StyleEmbedding:
    """MuQ-MuLan embedding of a text prompt (upstream passes the prompt as ``texts=``)."""
    text = prompt.strip()
    if not text:
        raise AudioSAEError("the style prompt is empty")
    vector = _as_rows(mulan(texts=[text]), "MuQ-MuLan text embedding")
    return StyleEmbedding(vector[:1], "text", text)


def read_style_clip(path: str | Path) -> np.ndarray:
    """The 10 s reference clip: mono float32 ``[240000]`` at 24 kHz from the middle of ``path``."""
    from ..audio import load_audio, probe_audio

    info = probe_audio(path)
    if info.seconds < STYLE_CLIP_SECONDS:
        raise AudioInputError(path, f"is {info.seconds:.2f} s long; a style reference needs at least "
                                    f"{STYLE_CLIP_SECONDS:.0f} s (a 10 s clip is taken from its middle)")
    start = max(0.0, math.floor(info.seconds / 2) - STYLE_CLIP_SECONDS / 2)
    wave = load_audio(path, MULAN_SAMPLE_RATE, 1, start=start, duration=STYLE_CLIP_SECONDS)[0]
    want = int(STYLE_CLIP_SECONDS * MULAN_SAMPLE_RATE)
    if wave.shape[0] < want:  # rounding at the very end of a file: pad the last few samples
        wave = np.pad(wave, (0, want - wave.shape[0]))
    return np.ascontiguousarray(wave[:want], dtype=np.float32)


@torch.no_grad()
def style_from_audio(path: str | Path, mulan: MuLanEncoder, device: str | torch.device | None = None) -> StyleEmbedding:
    """MuQ-MuLan embedding of the middle 10 s of a recording (at least 10 s long)."""
    clip = torch.from_numpy(read_style_clip(path)).unsqueeze(0)
    if device is None:
        device = getattr(mulan, "device", "cpu")
    vector = _as_rows(mulan(wavs=clip.to(device)), "MuQ-MuLan audio embedding")
    return StyleEmbedding(vector[:1], "audio", str(path))


def load_style_embeddings(path: str | Path) -> torch.Tensor:
    """Read saved style vectors: float32 ``[N, 512]``, unit-norm rows.

    ``.npy``; ``.safetensors`` (one tensor, or the one named ``style``); ``.pt``/``.pth``
    (a tensor, read with ``weights_only=True``).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioSAEError(f"{path}: style embedding file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            values: Any = np.load(str(path), allow_pickle=False)
        elif suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(path))
            if "style" in tensors:
                values = tensors["style"]
            elif len(tensors) == 1:
                values = next(iter(tensors.values()))
            else:
                raise AudioSAEError(f"{path}: holds {len(tensors)} tensors ({', '.join(sorted(tensors))}); "
                                    "name the style one 'style'")
        elif suffix in (".pt", ".pth"):
            values = torch.load(str(path), map_location="cpu", weights_only=True)
            if not isinstance(values, torch.Tensor):
                raise AudioSAEError(f"{path}: expected a tensor, found {type(values).__name__}")
        else:
            raise AudioSAEError(f"{path}: unsupported embedding format {suffix!r} (use .npy, .safetensors or .pt)")
    except AudioSAEError:
        raise
    except Exception as exc:  # truncated or foreign files
        raise AudioSAEError(f"{path}: cannot read the style embedding ({type(exc).__name__}: {exc})") from None
    if isinstance(values, np.ndarray) and not np.issubdtype(values.dtype, np.number):
        raise AudioSAEError(f"{path}: style embedding has non-numeric dtype {values.dtype}")
    return normalise_styles(values, str(path))


def style_from_file(path: str | Path, row: int = 0) -> StyleEmbedding:
    """One row of a saved embedding file as a ``StyleEmbedding`` (a one-row file serves every ``row``)."""
    table = load_style_embeddings(path)
    if table.shape[0] == 1:
        row = 0
    if not 0 <= row < table.shape[0]:
        raise AudioSAEError(f"{path}: has {table.shape[0]} style rows, row {row} asked for")
    detail = str(path) if table.shape[0] == 1 else f"{path}[{row}]"
    return StyleEmbedding(table[row:row + 1], "file", detail)


def load_negative_style(path: str | Path | None) -> StyleEmbedding:
    """The negative style prompt of the unconditional branch.

    ``path``: the official ``infer/example/vocal.npy`` (from the DiffRhythm GitHub repository)
    or any saved 512-d vector.  None: the zero vector, with a ``note`` saying that guidance
    then differs from the official pipeline.
    """
    if path is not None:
        table = load_style_embeddings(path)
        if table.shape[0] != 1:
            raise AudioSAEError(f"{path}: a negative style is one vector, found {table.shape[0]} rows")
        return StyleEmbedding(table, "file", str(path))
    note = ("no --negative-style given: the unconditional branch uses a zero style vector, so guidance "
            "differs from the official pipeline (which uses infer/example/vocal.npy from "
            f"{DIFFRHYTHM_GITHUB}; download it and pass --negative-style vocal.npy to match)")
    return StyleEmbedding(torch.zeros(1, STYLE_DIM), "zeros", "", note)


# ---- lyrics ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LrcLine:
    seconds: float
    text: str


_LRC_LINE = re.compile(r"^\s*\[(\d+):(\d+(?:\.\d*)?)\](.*)$")


def parse_lrc(text: str) -> list[LrcLine]:
    """Timed lines of an LRC text, in file order.

    ``[mm:ss.xx]text`` (also ``[m:ss]``); tag lines such as ``[ar:...]`` and lines without a
    time are skipped, like upstream.  Text is stripped; a timed line may be empty.
    """
    lines = []
    for raw in text.splitlines():
        match = _LRC_LINE.match(raw)
        if not match:
            continue
        minutes, seconds, lyric = match.groups()
        lines.append(LrcLine(int(minutes) * 60 + float(seconds), lyric.strip()))
    return lines


def read_lrc(path: str | Path) -> list[LrcLine]:
    """Parse an LRC file (UTF-8, a BOM is allowed)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AudioSAEError(f"{path}: lyrics file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AudioSAEError(f"{path}: cannot read the lyrics ({type(exc).__name__}: {exc})") from None
    return parse_lrc(text)


def load_g2p_vocab(path: str | Path | None) -> dict[str, int]:
    """The phoneme vocabulary: ``{"vocab": {phone: id}}`` (the official layout) or a flat map."""
    if path is None:
        raise AudioSAEError("lyrics need DiffRhythm's phoneme vocabulary, which audiosae does not ship: "
                            f"download g2p/g2p/vocab.json from {DIFFRHYTHM_GITHUB} and pass --g2p-vocab FILE "
                            "(or leave out --lyrics for an instrumental)")
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AudioSAEError(f"{path}: g2p vocabulary not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AudioSAEError(f"{path}: not a readable JSON vocabulary ({type(exc).__name__}: {exc})") from None
    vocab = data.get("vocab", data) if isinstance(data, dict) else None
    if not isinstance(vocab, dict) or not vocab or not all(isinstance(v, int) for v in vocab.values()):
        raise AudioSAEError(f"{path}: expected {{\"vocab\": {{phone: id}}}} with integer ids")
    return {str(k): int(v) for k, v in vocab.items()}


Phonemize = Callable[[str], list[list[str]]]
_PUNCTUATION = set(';:,.!?¡¿—…"«»“”()')


def _has_cjk(text: str) -> bool:
    return any("CJK" in unicodedata.name(ch, "") or "\u3040" <= ch <= "\u30ff" or "\uac00" <= ch <= "\ud7af"
               for ch in text)


class PhonemeTokenizer:
    """English lyric line -> token ids (vocabulary id + 1).

    Phones come from espeak-ng through ``phonemizer`` (en-us, no stress, punctuation kept);
    words are joined by the ``_`` symbol, punctuation marks are symbols of their own and
    phones missing from the vocabulary are dropped (as upstream does).  ``phonemize`` may be
    passed instead (``text -> [[phone, ...] per word]``), e.g. by tests.  Text normalisation
    (numbers, abbreviations) is simpler than the official cleaners', so tokens can differ
    from the official ones on such text.
    """

    def __init__(self, vocab: dict[str, int] | str | Path | None, *, phonemize: Phonemize | None = None,
                 max_id: int | None = 363):
        self.vocab = vocab if isinstance(vocab, dict) else load_g2p_vocab(vocab)
        if max_id is not None and max(self.vocab.values()) + 1 > max_id:
            raise AudioSAEError(f"g2p vocabulary ids reach {max(self.vocab.values())}; the DiT embeds ids up to "
                                f"{max_id - 1} (+1 shift): wrong vocabulary file?")
        self._phonemize = phonemize or _espeak_phonemizer()

    def encode(self, text: str) -> list[int]:
        if _has_cjk(text):
            raise AudioSAEError(f"lyric line {text[:40]!r}: Chinese/Japanese/Korean lyrics need DiffRhythm's own g2p "
                                "(jieba, pypinyin, a polyphone model); only English lyrics are supported here")
        ids: list[int] = []
        for w, word in enumerate(self._phonemize(text)):
            if w and "_" in self.vocab:
                ids.append(self.vocab["_"] + 1)
            for phone in word:
                if phone in self.vocab:
                    ids.append(self.vocab[phone] + 1)
        return ids

    __call__ = encode


def _espeak_phonemizer() -> Phonemize:
    try:
        from phonemizer.backend import EspeakBackend
        from phonemizer.separator import Separator
    except ImportError as exc:
        raise DependencyError(f"English lyrics need phonemizer (missing: {exc}) and the espeak-ng program; run: "
                              f"{INSTALL_HINT} and install espeak-ng (apt install espeak-ng / brew install espeak-ng; "
                              "on Windows set PHONEMIZER_ESPEAK_LIBRARY)") from None
    try:
        backend = EspeakBackend("en-us", preserve_punctuation=True, with_stress=False,
                                language_switch="remove-flags")
    except Exception as exc:  # phonemizer raises RuntimeError when espeak-ng is absent
        raise DependencyError(f"phonemizer cannot use espeak-ng ({exc}); install espeak-ng "
                              "(apt install espeak-ng / brew install espeak-ng; on Windows set "
                              "PHONEMIZER_ESPEAK_LIBRARY)") from None
    separator = Separator(phone="|", word=" ", syllable="")

    def phonemize(text: str) -> list[list[str]]:
        out = backend.phonemize([text], separator=separator, strip=True)[0]
        words = []
        for chunk in out.split():
            phones: list[str] = []
            for piece in chunk.split("|"):
                # punctuation comes glued to a neighbouring phone: split it off as its own symbol
                for part in re.split(r"([;:,.!?¡¿—…\"«»“”()])", piece):
                    if part.strip():
                        phones.append(part.strip())
            if phones:
                words.append(phones)
        return words

    return phonemize


def frames_for_seconds(seconds: float, max_frames: int) -> int:
    """Latent frames for ``seconds`` of audio (``int(seconds * 44100 / 2048)``), checked against the model."""
    if not (seconds > 0 and math.isfinite(seconds)):
        raise AudioSAEError(f"the length must be a positive number of seconds, got {seconds}")
    frames = int(seconds * LATENT_SAMPLE_RATE / LATENT_HOP)
    limit = max_frames * LATENT_HOP / LATENT_SAMPLE_RATE
    if frames > max_frames:
        hint = " (the 'full' model reaches 285 s)" if max_frames < 6144 else ""
        raise AudioSAEError(f"{seconds:g} s is longer than this model's {limit:.1f} s ({max_frames} frames){hint}")
    if frames < 1:
        raise AudioSAEError(f"{seconds:g} s is shorter than one latent frame ({LATENT_HOP / LATENT_SAMPLE_RATE:.3f} s)")
    return frames


def instrumental_tokens(frames: int) -> torch.Tensor:
    """No lyrics: ``frames`` filler ids (0)."""
    return torch.zeros(int(frames), dtype=torch.long)


def lyrics_to_tokens(lines: Sequence[LrcLine], frames: int, *, max_frames: int,
                     tokenizer: Callable[[str], list[int]] | None) -> torch.Tensor:
    """Frame-aligned token ids ``[frames]`` (long) for timed lyric lines.

    ``tokenizer`` maps a line to ids (vocabulary id + 1); it is not called (and may be None)
    when there is nothing to sing.  See the module docstring for the placement rules.
    """
    max_seconds = max_frames * LATENT_HOP / LATENT_SAMPLE_RATE
    kept = [line for line in lines if line.seconds < max_seconds]
    if max_frames == BASE_MODEL_FRAMES and kept:
        kept = kept[:-1]  # upstream drops the 95 s model's last line, as in its training data
    tokens = instrumental_tokens(frames)
    if not kept:
        return tokens
    if tokenizer is None:
        raise AudioSAEError("lyrics were given but no tokenizer: pass --g2p-vocab FILE")
    end_of_last = 0
    for line in kept:
        ids = [COMMA_TOKEN if i == PERIOD_TOKEN else i for i in tokenizer(line.text)] + [PERIOD_TOKEN]
        start = max(int(line.seconds * LATENT_SAMPLE_RATE / LATENT_HOP), end_of_last)
        length = min(len(ids), frames - start)
        if length <= 0:
            continue  # the line starts after the end of this (shorter) song
        tokens[start:start + length] = torch.tensor(ids[:length], dtype=torch.long)
        end_of_last = start + length
    return tokens
