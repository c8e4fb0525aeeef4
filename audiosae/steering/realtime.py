"""Real-time control-vector audition: steered audio rendered in chunks ahead of a playhead.

While a clip loops, the user moves alpha (or the target class, the attribute, "keep
residual", the steered time range) and must hear the result almost at once.  Decoding the
whole clip again on every change is too slow, so the clip is cut into chunks of latent frames:

* The clip's latents and SAE features are computed once, in ``SteeredRenderer.__init__``.
* Chunk ``k`` covers frames ``[bounds[k], bounds[k+1])``.  It is decoded with
  context frames on both sides (``context_frames``: one number, or (left, right) for causal
  decoders that never look ahead), so convolutional / recurrent / Griffin-Lim decoders see
  real neighbours, and it keeps ``fade/2`` samples beyond its edges.  Neighbouring chunks are
  joined by a raised-cosine cross-fade whose gains sum to one, so equal audio stays equal and
  audio from two different parameter versions meets without a step.
* Every chunk has a *content key*: what its audio depends on.  A chunk whose decode window
  holds no steered frame depends only on ``keep_residual`` (it is the unsteered path), so
  alpha, class and attribute changes leave it valid; a steered one depends on all the
  parameters and on which of its frames are steered.  A parameter change bumps the version
  and re-keys the chunks; only those whose key changed need rendering again.
* ``render_next(playhead)`` renders the most urgent stale chunk (the one under the playhead,
  then the ones after it, wrapping around the loop).  ``mix(start, n)`` joins whatever is
  there: a stale chunk plays its previous audio, a never-rendered one the original clip,
  never silence.
* ``RenderWorker`` is the background thread that keeps calling ``render_next``.

Nothing here knows about audio devices or Qt; ``audiosae.steering.playback`` plays ``mix``.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np
import torch

from ..codecs.base import LatentBackend
from ..errors import AudioSAEError
from .control import frame_mask
from .vectors import check_alpha
from .methods import CORPUS_METHODS, DEFAULT_METHOD, SteeringContext, match_block_seconds, \
    prepare_method, split_method
from .level import (LevelReport, LevelRule, apply_level_rule, loudness_db, merge_reports, rule_for,
                    warm_up)

if TYPE_CHECKING:
    from ..probes import ProbeSet
    from ..sae import SparseAutoencoder

Mode = Literal["steered", "original"]
DEFAULT_CONTEXT_FRAMES = 8   # the least context decoded on each side of a chunk by default
FEATURE_CACHE_BYTES = 256 * 2 ** 20  # keep the clip's SAE features up to this size
_ENCODE_BLOCK_FRAMES = 4096
_ENCODE_BLOCK_ELEMENTS = 1 << 23  # frames x features per block: ~0.1 s, so a cancel is seen soon
_HISTORY = 256               # parameter versions kept in the per-version counters
_RENDER_TIME_SMOOTHING = 0.2  # weight of the newest render in the running mean


@dataclass(frozen=True)
class SteeringParams:
    """What the user controls: ``f' = RMSNorm(f + alpha * w_target)`` on frames in [start, end)
    for the default method; ``method`` is any of ``steering.methods.METHODS`` (the renderer
    steers through its ``SteeringContext``, the one ``steer_wave`` uses)."""

    attribute: str
    target: int
    alpha: float = 0.0
    keep_residual: bool = False
    start: float | None = None   # seconds; None = from the clip start
    end: float | None = None     # seconds; None = to the clip end
    method: str = DEFAULT_METHOD


@dataclass(frozen=True)
class _SteerState:
    """Everything a render needs, captured under the lock so a render sees one version."""

    version: int
    params: SteeringParams
    direction: torch.Tensor      # [F] the method's direction at alpha 1 (the probe row w_k for "paper")
    mask: np.ndarray             # [T] bool, frames being steered
    context: Any = None          # the method's SteeringContext


@dataclass
class RenderStats:
    """Counters, for the UI's status line and for tests and benchmarks."""

    version: int
    chunks: int
    chunks_rendered: int
    stale_renders: int                   # finished after a change had already invalidated them
    invalid_chunks: int
    param_changes: int
    invalidated_by_version: dict[int, int]  # version -> chunks its change invalidated
    renders_by_version: dict[int, int]      # version -> chunks rendered for it
    mean_render_seconds: float


class SteeredRenderer:
    """Chunked, cached steered rendering of one clip (see the module docstring).

    Thread-safe: ``set_params``/``set_mode`` (UI thread), ``render_next`` (worker) and ``mix``
    (audio feeder) may run concurrently.  Renders happen outside the lock.
    """

    def __init__(self, backend: LatentBackend, sae: SparseAutoencoder, probes: ProbeSet, wave: np.ndarray,
                 params: SteeringParams, *, latents: np.ndarray | None = None, chunk_seconds: float = 0.25,
                 context_frames: int | tuple[int, int] | None = None, fade_seconds: float = 0.01,
                 cancel: Any = None, limit: bool = True, contexts: Any = ()):
        """``wave``: the clip, float32 ``[channels, N]`` at the backend's rate (the reference that
        seeds decoding and the A/B "original").  ``latents``: the clip's ``[T, D]`` latents if
        already known (else encoded here).  ``chunk_seconds``: render granularity.
        ``context_frames``: frames decoded and dropped on each side of a chunk, or a
        ``(left, right)`` pair (a causal decoder such as EnCodec's needs no right context);
        default: the backend's ``context_frames`` if it has one, else 8 on each side, and
        never less than 8 on the left.  ``fade_seconds``: join cross-fade.  ``cancel``: an
        optional ``CancelToken``, checked between encoding segments and feature blocks.
        ``limit``: every rendered chunk goes through the level rule (``steering.level``):
        loudness matched to the clip's same span (unless loudness is the target), then a
        true-peak limiter to -1 dBFS, per chunk, so the cross-faded mix never exceeds it
        either; False plays the raw decoded level (the player's soft limiter still guards).
        ``contexts``: prepared ``SteeringContext``s (``steering.methods.prepare_method``) for the
        methods that need the workspace's class means (``add_context`` adds more later);
        ``paper`` and ``solve`` on an SAE with RMSNorm are prepared here when first used.
        """
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 1:
            wave = wave[None, :]
        if wave.ndim != 2 or wave.shape[0] != backend.channels or wave.shape[1] == 0:
            raise AudioSAEError(f"realtime: expected a [{backend.channels}, N] wave for {backend.name}, "
                                f"got shape {list(wave.shape)}")
        if chunk_seconds <= 0 or fade_seconds < 0:
            raise AudioSAEError("realtime: chunk_seconds must be > 0 and fade_seconds >= 0")
        self.backend = backend
        self.sae = sae
        self.probes = probes
        self.wave = np.ascontiguousarray(wave)
        self.sample_rate = int(backend.sample_rate)
        self.channels = int(backend.channels)
        self.hop = int(backend.hop_length)
        self.n_samples = int(wave.shape[1])
        self.limit = bool(limit)
        if self.limit:
            warm_up()  # here (a build job), not in the first chunk's render
        # Measured once: the floor that chunks over silent source spans are matched to.
        self.source_loudness_db = loudness_db(self.wave, self.sample_rate)

        if latents is None:
            latents = backend.encode_long(self.wave, cancel=cancel).latents
        latents = np.asarray(latents, dtype=np.float32)
        if latents.ndim != 2 or latents.shape[1] != backend.latent_dim:
            raise AudioSAEError(f"realtime: latents must be [T, {backend.latent_dim}], got {list(latents.shape)}")
        self.n_frames = int(latents.shape[0])
        if self.n_frames * self.hop < self.n_samples:
            raise AudioSAEError(f"realtime: {self.n_frames} latent frames cover {self.n_frames * self.hop} "
                                f"samples, fewer than the clip's {self.n_samples}")
        self._frame_times = backend.frame_centers(self.n_frames)

        # Computed once per clip: the SAE features and what the SAE does not reconstruct.  The
        # features are T x d_sae floats (a minute at 75 frames/s and 32768 features is 590 MB),
        # so above FEATURE_CACHE_BYTES they are recomputed per chunk instead of kept.
        self._sae_device = next(sae.parameters()).device
        x = torch.from_numpy(latents).to(self._sae_device)
        blocks, reconstruction = [], []
        with torch.inference_mode():
            # Blocks of at most _ENCODE_BLOCK_ELEMENTS features (~0.1 s on a CPU core), so a
            # cancel is seen quickly even for a 16384-wide SAE on a long clip.
            block = max(1, min(_ENCODE_BLOCK_FRAMES, _ENCODE_BLOCK_ELEMENTS // max(1, int(sae.cfg.d_sae))))
            for first in range(0, self.n_frames, block):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                _, f = sae.encode(x[first:first + block])
                reconstruction.append(sae.decode(f))
                blocks.append(f)
                self.d_features = int(f.shape[1])
                if self.n_frames * self.d_features * f.element_size() > FEATURE_CACHE_BYTES:
                    blocks = []  # too big to keep: recompute per chunk
        self._latents = x
        self._features: torch.Tensor | None = torch.cat(blocks) if blocks else None
        self._reconstruction = torch.cat(reconstruction)
        self._residual = x - self._reconstruction

        # Geometry.  The fade is even so that half of it lies on each side of a boundary.
        half = int(round(fade_seconds * self.sample_rate / 2))
        self.fade = 2 * half
        self._half = half
        chunk_frames = max(1, int(round(chunk_seconds * self.sample_rate / self.hop)))
        chunk_frames = max(chunk_frames, math.ceil(2 * self.fade / self.hop))  # a ramp fits twice
        self.chunk_frames = chunk_frames
        if context_frames is None:
            # At least 8: the mel backend's own figure (4) holds for gentle edits, but strongly
            # steered chunks decoded with 4 frames of context matched a whole decode to only
            # ~21 dB SNR (88 dB with 8), because Griffin-Lim carries edge effects further.
            declared = getattr(backend, "context_frames", None)
            if isinstance(declared, tuple):  # (left, right): trust a declared right side (causal)
                left, right = max(int(declared[0]), DEFAULT_CONTEXT_FRAMES), int(declared[1])
            else:
                left = right = max(int(declared or 0), DEFAULT_CONTEXT_FRAMES)
        elif isinstance(context_frames, tuple):
            left, right = (int(c) for c in context_frames)
        else:
            left = right = int(context_frames)
        if left < 0 or right < 0:
            raise AudioSAEError("realtime: context_frames must be >= 0")
        self.context_frames = (left, right)
        # The kept audio reaches half a fade beyond the chunk: decode that much further too.
        reach = math.ceil(half / self.hop)
        self._decode_context = (left + reach, right + reach)
        self._bounds = self._chunk_bounds(self.n_frames, chunk_frames)
        self._sample_bounds = np.minimum(self._bounds * self.hop, self.n_samples)
        self.n_chunks = len(self._bounds) - 1
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(self.fade) + 0.5) / max(1, self.fade))
        self._ramp = ramp.astype(np.float32)

        # Cache state (guarded by _lock).
        self._lock = threading.Lock()
        self._version = 0
        self._mode: Mode = "steered"
        self._state: _SteerState | None = None
        self._current_key: list[Any] = [None] * self.n_chunks
        self._audio: list[np.ndarray | None] = [None] * self.n_chunks
        self._audio_key: list[Any] = [None] * self.n_chunks
        self._audio_version: list[int] = [-1] * self.n_chunks
        self._level: list[LevelReport | None] = [None] * self.n_chunks
        self._chunks_rendered = 0
        self._stale_renders = 0
        self._param_changes = 0
        self._invalidated_by_version: OrderedDict[int, int] = OrderedDict()
        self._renders_by_version: OrderedDict[int, int] = OrderedDict()
        self._mean_render_seconds = 0.0
        self._audio_listeners: list[Callable[[int, int], None]] = []
        self._params_listeners: list[Callable[[int], None]] = []
        self._contexts: dict[tuple[str, str], SteeringContext] = {}
        for context in contexts:
            self.add_context(context)
        self.set_params(params)

    # ---- geometry ----------------------------------------------------------------------------
    @staticmethod
    def _chunk_bounds(n_frames: int, chunk_frames: int) -> np.ndarray:
        """Frame boundaries; a last chunk shorter than half a chunk joins the one before it."""
        bounds = list(range(0, n_frames, chunk_frames)) + [n_frames]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] < chunk_frames / 2:
            del bounds[-2]
        return np.asarray(bounds, dtype=np.int64)

    @property
    def duration(self) -> float:
        return self.n_samples / self.sample_rate

    def chunk_frames_range(self, index: int) -> tuple[int, int]:
        """Latent frames ``[a, b)`` of chunk ``index``."""
        return int(self._bounds[index]), int(self._bounds[index + 1])

    def chunk_span(self, index: int) -> tuple[int, int]:
        """Samples ``[start, end)`` chunk ``index`` owns (its audio reaches half a fade beyond)."""
        return int(self._sample_bounds[index]), int(self._sample_bounds[index + 1])

    def decode_window(self, index: int) -> tuple[int, int]:
        """Latent frames ``[lo, hi)`` decoded for chunk ``index`` (the chunk plus its context)."""
        a, b = self.chunk_frames_range(index)
        return max(0, a - self._decode_context[0]), min(self.n_frames, b + self._decode_context[1])

    def chunk_at(self, sample: int) -> int:
        """Index of the chunk that owns ``sample`` (clamped into the clip)."""
        sample = min(max(int(sample), 0), self.n_samples - 1)
        return int(np.searchsorted(self._sample_bounds, sample, side="right") - 1)

    # ---- parameters --------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """Bumped by every parameter change that changes what some chunk should sound like."""
        return self._version

    @property
    def params(self) -> SteeringParams:
        assert self._state is not None
        return self._state.params

    @property
    def mode(self) -> Mode:
        return self._mode

    def set_params(self, params: SteeringParams | None = None, **changes: Any) -> int:
        """Apply new parameters (a whole ``SteeringParams`` and/or field changes); returns the version.

        Only chunks whose content key changes become stale.  Raises ``AudioSAEError`` for an
        unknown attribute, a class out of range, a non-finite alpha or a range with no frame;
        the previous parameters then stay in force.
        """
        if params is None:
            if self._state is None:
                raise AudioSAEError("realtime: the first set_params needs a SteeringParams")
            params = self._state.params
        params = replace(params, **changes) if changes else params
        state = self._prepare(params)
        keys = [self._content_key(i, params, state.mask) for i in range(self.n_chunks)]
        with self._lock:
            if self._state is not None and params == self._state.params:
                return self._version
            changed = sum(1 for i in range(self.n_chunks) if keys[i] != self._current_key[i])
            if self._state is not None and changed == 0:
                # Nothing audible changed (e.g. a range edit inside the frame grid): same version.
                self._state = replace(state, version=self._version)
                return self._version
            if self._state is not None:
                self._version += 1
                self._param_changes += 1
            self._state = replace(state, version=self._version)
            self._current_key = keys
            self._remember(self._invalidated_by_version, self._version,
                           sum(1 for i in range(self.n_chunks) if self._audio_key[i] != keys[i]))
            self._renders_by_version.setdefault(self._version, 0)
            version = self._version
            listeners = list(self._params_listeners)
        for listener in listeners:
            listener(version)
        return version

    def set_alpha(self, alpha: float) -> int:
        return self.set_params(alpha=float(alpha))

    def set_scope(self, start: float | None, end: float | None) -> int:
        """Steer only the frames whose centre lies in ``[start, end)`` seconds (None = open)."""
        return self.set_params(start=start, end=end)

    def set_mode(self, mode: Mode) -> None:
        """The A/B switch: ``"original"`` plays the input clip, ``"steered"`` the rendered audio.

        Rendering goes on in both modes so switching back is instant.  Audio listeners hear
        about the switch (the whole clip changed)."""
        if mode not in ("steered", "original"):
            raise AudioSAEError(f"realtime: mode must be 'steered' or 'original', not {mode!r}")
        with self._lock:
            if mode == self._mode:
                return
            self._mode = mode
            listeners = list(self._audio_listeners)
        for listener in listeners:
            listener(0, self.n_samples)

    @property
    def contexts(self) -> tuple[SteeringContext, ...]:
        """The prepared steering contexts (to build another renderer that steers the same)."""
        return tuple(self._contexts.values())

    def add_context(self, context: SteeringContext) -> None:
        """Make ``context`` (``prepare_method`` for this SAE and probes) available to ``set_params``."""
        if context.sae is not self.sae:
            raise AudioSAEError("realtime: the steering context was prepared for another SAE")
        self._contexts[(context.method, context.attribute)] = context

    def has_context(self, method: str, attribute: str) -> bool:
        """Whether ``set_params`` can steer ``attribute`` with ``method`` now (else it needs
        ``add_context`` with a context prepared from the workspace)."""
        return (method, attribute) in self._contexts or not self.needs_workspace(method)

    def needs_workspace(self, method: str) -> bool:
        """``method`` needs the workspace's class means (``prepare_method`` with a workspace)."""
        return split_method(method)[0] in CORPUS_METHODS or not self.sae.cfg.rmsnorm

    def context(self, method: str, attribute: str) -> SteeringContext:
        key = (method, attribute)
        if key not in self._contexts:
            if self.needs_workspace(method):
                raise AudioSAEError(f"realtime: {method} steering of {attribute} needs the class means of the "
                                    "workspace (steering.methods.prepare_method, then add_context)")
            self._contexts[key] = prepare_method(None, self.sae.cfg.name, self.sae, self.probes, attribute, method)
        return self._contexts[key]

    def _prepare(self, params: SteeringParams) -> _SteerState:
        if getattr(self.probes, "feature_kind", "sae") != "sae":
            raise AudioSAEError("realtime: these probes read raw latents, not SAE features; "
                                "control vectors need probes trained on the SAE's features")
        weights = getattr(self.probes, "weights", {})
        if params.attribute not in weights:
            raise AudioSAEError(f"realtime: the probes have no attribute {params.attribute!r} "
                                f"(they have {', '.join(sorted(weights)) or 'none'})")
        try:
            check_alpha(params.alpha)
        except AudioSAEError as exc:
            raise AudioSAEError(f"realtime: {exc}") from None
        if params.start is not None and params.end is not None and params.end <= params.start:
            raise AudioSAEError(f"realtime: the steered range must end after it starts "
                                f"({params.start} .. {params.end} s)")
        mask = frame_mask(self.n_frames, self._frame_times, params.start, params.end).numpy()
        context = self.context(params.method, params.attribute)
        # The steered frames' features: the step's scale for an SAE without RMSNorm and no statistics.
        ref = self._features[torch.from_numpy(mask).to(self._sae_device)] if self._features is not None else None
        with torch.inference_mode():
            direction = context.direction(int(params.target), ref).to(self._sae_device)
        if direction.shape != (self.d_features,):
            raise AudioSAEError(f"realtime: the {params.attribute} probe has {direction.numel()} inputs but the "
                                f"SAE has {self.d_features} features (probes of another SAE?)")
        return _SteerState(version=self._version, params=params, direction=direction, mask=mask, context=context)

    def _content_key(self, index: int, params: SteeringParams, mask: np.ndarray) -> tuple:
        """What chunk ``index``'s audio depends on; equal keys mean equal audio."""
        lo, hi = self.decode_window(index)
        window = mask[lo:hi]
        rule = self.level_rule(params)
        if not window.any():
            return ("plain", params.keep_residual, rule)
        return ("steered", params.keep_residual, params.method, params.attribute, int(params.target),
                float(params.alpha), window.tobytes(), rule)

    def level_rule(self, params: SteeringParams | None = None) -> LevelRule:
        """The level rule chunks are rendered with for ``params`` (default: the current ones)."""
        params = params or self.params
        rule = rule_for(params.attribute, limit=self.limit)
        if rule.match_loudness and split_method(params.method)[1]:   # "+match": per-frame loudness
            rule = replace(rule, block_seconds=match_block_seconds(self.hop, self.sample_rate))
        return rule

    def level_summary(self) -> dict[str, Any]:
        """What the level rule did to the chunks rendered for the current parameters
        (gain, peaks before/after, limited samples), for a side-car or a status line."""
        with self._lock:
            reports = [self._level[i] for i in range(self.n_chunks)
                       if self._audio_key[i] == self._current_key[i] and self._level[i] is not None]
        summary = merge_reports(reports)
        summary["chunks_total"] = self.n_chunks
        return summary

    @staticmethod
    def _remember(counter: OrderedDict[int, int], version: int, value: int) -> None:
        counter[version] = value
        while len(counter) > _HISTORY:
            counter.popitem(last=False)

    # ---- listeners ---------------------------------------------------------------------------
    def add_audio_listener(self, listener: Callable[[int, int], None]) -> None:
        """``listener(start_sample, end_sample)`` after rendered audio for that span changed.

        Called from the thread that rendered (the worker), outside the renderer's lock; keep it
        short (e.g. ``Player.requeue``)."""
        with self._lock:
            self._audio_listeners.append(listener)

    def remove_audio_listener(self, listener: Callable[[int, int], None]) -> None:
        with self._lock:
            if listener in self._audio_listeners:
                self._audio_listeners.remove(listener)

    def add_params_listener(self, listener: Callable[[int], None]) -> None:
        """``listener(version)`` after a parameter change made chunks stale (wakes workers)."""
        with self._lock:
            self._params_listeners.append(listener)

    def remove_params_listener(self, listener: Callable[[int], None]) -> None:
        with self._lock:
            if listener in self._params_listeners:
                self._params_listeners.remove(listener)

    # ---- rendering ---------------------------------------------------------------------------
    def is_valid(self, index: int) -> bool:
        """Whether chunk ``index`` holds audio for the current parameters."""
        with self._lock:
            return self._audio_key[index] == self._current_key[index]

    def invalid_chunks(self) -> list[int]:
        with self._lock:
            return [i for i in range(self.n_chunks) if self._audio_key[i] != self._current_key[i]]

    def render_order(self, playhead_sample: int, loop: tuple[int, int] | None = None) -> list[int]:
        """All chunk indices, most urgent first: the playhead's chunk, then onward to the loop
        end, wrapping to the loop start; chunks outside the loop come last."""
        first = self.chunk_at(playhead_sample)
        if loop is None:
            lo_chunk, hi_chunk = 0, self.n_chunks - 1
        else:
            lo_chunk = self.chunk_at(loop[0])
            hi_chunk = self.chunk_at(max(loop[0], loop[1] - 1))
        inside = list(range(lo_chunk, hi_chunk + 1))
        if lo_chunk <= first <= hi_chunk:
            at = first - lo_chunk
            inside = inside[at:] + inside[:at]
        outside = [i for i in range(first, self.n_chunks) if not lo_chunk <= i <= hi_chunk]
        outside += [i for i in range(0, first) if not lo_chunk <= i <= hi_chunk]
        return inside + outside

    def render_next(self, playhead_sample: int, loop: tuple[int, int] | None = None,
                    limit: int | None = None) -> int | None:
        """Render the most urgent stale chunk; returns its index, or None if all are current.

        ``loop``: the looping region in samples, so the chunks after its end wrap to its start.
        ``limit``: look only at the first ``limit`` chunks of the urgency order (the near future).
        """
        with self._lock:
            stale = {i for i in range(self.n_chunks) if self._audio_key[i] != self._current_key[i]}
        if not stale:
            return None
        for index in self.render_order(playhead_sample, loop)[:limit]:
            if index in stale:
                self.render_chunk(index)
                return index
        return None

    def render_chunk(self, index: int) -> bool:
        """Render chunk ``index`` for the current parameters if it is stale; True if it rendered."""
        with self._lock:
            key = self._current_key[index]
            if self._audio_key[index] == key:
                return False
            state = self._state
        assert state is not None
        began = time.perf_counter()
        audio, level = self._render(index, state)
        elapsed = time.perf_counter() - began
        with self._lock:
            self._audio[index] = audio
            self._level[index] = level
            self._audio_key[index] = key
            self._audio_version[index] = state.version
            self._chunks_rendered += 1
            if key != self._current_key[index]:
                self._stale_renders += 1  # kept anyway: newer than what the chunk had
            if state.version in self._renders_by_version:
                self._renders_by_version[state.version] += 1
            smoothing = 1.0 if self._chunks_rendered == 1 else _RENDER_TIME_SMOOTHING
            self._mean_render_seconds += smoothing * (elapsed - self._mean_render_seconds)
            listeners = list(self._audio_listeners)
        start, end = self._extended_span(index)
        for listener in listeners:
            listener(start, end)
        return True

    def render_all(self, cancel: Any = None) -> int:
        """Render every stale chunk (offline use, tests); returns how many rendered.

        ``cancel``: an optional ``CancelToken``, checked between chunks."""
        count = 0
        for index in range(self.n_chunks):
            if cancel is not None:
                cancel.raise_if_cancelled()
            count += int(self.render_chunk(index))
        return count

    def _extended_span(self, index: int) -> tuple[int, int]:
        """Samples chunk ``index``'s audio covers: its span plus half a fade on inner sides."""
        start, end = self.chunk_span(index)
        return max(0, start - self._half), min(self.n_samples, end + self._half)

    def steered_latents(self, lo: int, hi: int, state: _SteerState | None = None) -> torch.Tensor:
        """Steered latents of frames ``[lo, hi)``, exactly as ``steering.steer_latents`` would
        give them for the whole clip (the SAE works frame by frame)."""
        state = state or self._state
        assert state is not None
        params = state.params
        mask = state.mask[lo:hi]
        x = self._latents[lo:hi]
        if not mask.any():
            return x if params.keep_residual else self._reconstruction[lo:hi]
        mask_t = torch.from_numpy(mask).to(self._sae_device)
        with torch.inference_mode():
            features = self._features[lo:hi] if self._features is not None else self.sae.encode(x)[1]
            steered = self.sae.decode(state.context.steer_features(features, int(params.target),
                                                                   float(params.alpha), mask_t))
            if params.keep_residual:
                steered = torch.where(mask_t[:, None], steered + self._residual[lo:hi], x)
        return steered

    def _render(self, index: int, state: _SteerState) -> tuple[np.ndarray, LevelReport]:
        lo, hi = self.decode_window(index)
        latents = self.steered_latents(lo, hi, state)
        reference = self.wave[:, lo * self.hop:hi * self.hop]
        decoded = self.backend.decode(latents, reference=reference)
        start, end = self._extended_span(index)
        offset = lo * self.hop
        audio = np.ascontiguousarray(decoded[:, start - offset:end - offset], dtype=np.float32)
        # The level rule per chunk, against the source's same span: every chunk is at or under
        # the ceiling, so their cross-faded sum (gains summing to one) is too, and the gain
        # moves only within a chunk's smooth curve and through the join's cross-fade.
        return apply_level_rule(audio, self.wave[:, start:end], self.sample_rate, self.level_rule(state.params),
                                target_attribute=state.params.attribute,
                                source_loudness_db=self.source_loudness_db)

    # ---- mixing ------------------------------------------------------------------------------
    def mix(self, start_sample: int, n: int) -> np.ndarray:
        """Audio ``[channels, n]`` for samples ``[start, start + n)``; zeros outside the clip."""
        return self.mix_tagged(start_sample, n)[0]

    def mix_tagged(self, start_sample: int, n: int, *, per_sample: bool = False) -> tuple[np.ndarray, Any]:
        """``mix`` plus the parameter version the audio fully reflects.

        The tag is the current version when every chunk used is current (or in "original"
        mode), else the oldest version among the stale chunks used (-1: the original clip
        stood in for a chunk never rendered).  Players use it to tell when a change is heard.
        ``per_sample=True`` gives one tag per sample (int64 ``[n]``) instead of one for the span.
        """
        start, n = int(start_sample), int(n)
        out = np.zeros((self.channels, max(n, 0)), dtype=np.float32)
        end = start + n
        lo, hi = max(start, 0), min(end, self.n_samples)
        with self._lock:
            version, mode = self._version, self._mode
            parts = []
            if hi > lo and mode == "original":
                out[:, lo - start:hi - start] = self.wave[:, lo:hi]
            elif hi > lo:
                for index in range(self.chunk_at(lo - self._half), self.chunk_at(hi - 1 + self._half) + 1):
                    audio = self._audio[index]
                    if audio is None:
                        tag = -1
                    elif self._audio_key[index] != self._current_key[index]:
                        tag = self._audio_version[index]
                    else:
                        tag = version
                    parts.append((index, audio, tag))
        # Rendered arrays are never modified after commit, so mixing needs no lock.
        tags = np.full(max(n, 0), version, dtype=np.int64) if per_sample else None
        span_tag = version
        for index, audio, tag in parts:
            e0, e1 = self._extended_span(index)
            a, b = max(lo, e0), min(hi, e1)
            if b <= a:
                continue
            source = self.wave[:, a:b] if audio is None else audio[:, a - e0:b - e0]
            out[:, a - start:b - start] += source * self._weights(index, a, b)
            span_tag = min(span_tag, tag)
            if tags is not None and tag < version:
                np.minimum(tags[a - start:b - start], tag, out=tags[a - start:b - start])
        return out, (tags if per_sample else span_tag)

    def _weights(self, index: int, a: int, b: int) -> np.ndarray:
        """Cross-fade gains of chunk ``index`` over samples ``[a, b)``; neighbours' sum to one."""
        weights = np.ones(b - a, dtype=np.float32)
        if self.fade == 0:
            return weights
        start, end = self.chunk_span(index)
        if index > 0:  # fade in over [start - half, start + half)
            r0 = start - self._half
            i0, i1 = max(a, r0), min(b, r0 + self.fade)
            if i1 > i0:
                weights[i0 - a:i1 - a] = self._ramp[i0 - r0:i1 - r0]
        if index < self.n_chunks - 1:  # fade out over [end - half, end + half)
            r0 = end - self._half
            i0, i1 = max(a, r0), min(b, r0 + self.fade)
            if i1 > i0:
                weights[i0 - a:i1 - a] = 1.0 - self._ramp[i0 - r0:i1 - r0]
        return weights

    # ---- counters ----------------------------------------------------------------------------
    def stats(self) -> RenderStats:
        with self._lock:
            invalid = sum(1 for i in range(self.n_chunks) if self._audio_key[i] != self._current_key[i])
            return RenderStats(
                version=self._version, chunks=self.n_chunks, chunks_rendered=self._chunks_rendered,
                stale_renders=self._stale_renders, invalid_chunks=invalid, param_changes=self._param_changes,
                invalidated_by_version=dict(self._invalidated_by_version),
                renders_by_version=dict(self._renders_by_version),
                mean_render_seconds=self._mean_render_seconds)

    @property
    def mean_render_seconds(self) -> float:
        """Running mean of the time one chunk takes to render (0 before the first)."""
        return self._mean_render_seconds


class RenderWorker:
    """Background thread that keeps ``renderer`` rendering ahead of a playhead.

    ``playhead()`` returns the sample the listener hears now (or the point where new audio
    will next be queued); the worker renders from ``lookahead_seconds`` plus one mean render
    time beyond it, so the chunk is ready when the audio reaches it.  ``loop()`` returns the
    looping region in samples or None.

    While the user is moving a control (a change less than ``settle_seconds`` ago) the worker
    renders only the chunks starting within ``horizon_seconds`` of the playhead, just in time:
    far-ahead chunks would go stale again at the next move, and a long render in progress
    delays the next move's first chunk.  Once the parameters settle it renders everything.
    Parameter changes wake it at once; otherwise it sleeps while nothing is due.
    An exception ends the thread and is kept in ``error`` (with ``error_traceback``);
    ``on_error`` is called with it from the worker thread.
    """

    def __init__(self, renderer: SteeredRenderer, playhead: Callable[[], int] | None = None, *,
                 loop: Callable[[], tuple[int, int] | None] | None = None, lookahead_seconds: float = 0.0,
                 horizon_seconds: float = 0.4, settle_seconds: float = 0.5, idle_timeout: float = 0.25,
                 on_error: Callable[[BaseException], None] | None = None, name: str = "audiosae-render"):
        self.renderer = renderer
        self._playhead = playhead or (lambda: 0)
        self._loop = loop or (lambda: None)
        self.lookahead_seconds = float(lookahead_seconds)
        self.horizon_seconds = float(horizon_seconds)
        self.settle_seconds = float(settle_seconds)
        self.idle_timeout = float(idle_timeout)
        self._last_change = -math.inf
        self.on_error = on_error
        self.name = name
        self.error: BaseException | None = None
        self.error_traceback: str = ""
        self.rendered = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._poked = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise AudioSAEError("realtime: a RenderWorker can be started once")
        self.renderer.add_params_listener(self._on_params)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Wake the worker (e.g. after a seek) so it looks for stale chunks now."""
        with self._cond:
            self._poked = True
            self._cond.notify_all()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the thread to end after its current chunk and wait for it."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.renderer.remove_params_listener(self._on_params)
        self.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def raise_if_failed(self) -> None:
        """Re-raise, in the caller's thread, the exception that ended the worker (if any)."""
        if self.error is not None:
            raise AudioSAEError(f"realtime: the render worker failed: {self.error!r}") from self.error

    def __enter__(self) -> RenderWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_params(self, version: int) -> None:
        self._last_change = time.monotonic()
        self.poke()

    def _target_sample(self) -> int:
        ahead = self.lookahead_seconds + self.renderer.mean_render_seconds
        return int(self._playhead()) + int(ahead * self.renderer.sample_rate)

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        return
                    self._poked = False
                loop = self._loop()
                target = self._target_sample()
                if loop is not None and target >= loop[1]:
                    target = loop[0] + (target - loop[1]) % max(1, loop[1] - loop[0])
                unsettled = self.settle_seconds - (time.monotonic() - self._last_change)
                limit = None
                if unsettled > 0:  # just in time: the chunks the horizon reaches, +1 partly in it
                    chunk_seconds = self.renderer.chunk_frames * self.renderer.hop / self.renderer.sample_rate
                    limit = 2 + int(self.horizon_seconds / chunk_seconds)
                if self.renderer.render_next(target, loop, limit) is not None:
                    self.rendered += 1
                    continue
                timeout = self.idle_timeout
                if unsettled > 0:  # wake as the playhead moves on, and when the controls settle
                    timeout = min(timeout, unsettled, 0.25 * self.renderer.chunk_frames * self.renderer.hop
                                  / self.renderer.sample_rate)
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping or self._poked, timeout=timeout)
        except BaseException as exc:  # reported to the owner, never lost in a thread
            self.error = exc
            self.error_traceback = traceback.format_exc()
            if self.on_error is not None:
                self.on_error(exc)
