"""Tracing DiffRhythm generation as a workflow: the one path of ``audiosae trace`` and the studio's
generation view.

``TraceRequest`` holds what the user chose (the CLI's flags, the view's form); every default is
``audiosae.defaults``' ``TRACE_*``.  ``run_trace`` resolves the conditioning (negative style,
lyrics, style from a given embedding, a file, audio or the text prompt), checks that the
workspace was built with the ``diffrhythm-vae`` backend, loads what is missing and runs
``trace_generation``; ``run_trace_batch`` does the same for a list of prompts (``trace_batch``,
resumable).  Cheap inputs are read first, so a typo or a missing package fails before gigabytes
are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import defaults as D
from ..errors import AudioSAEError, WorkspaceError
from ..jobs import CancelToken, Progress, ProgressSink, null_progress

REQUIRED_BACKEND = "diffrhythm-vae"


def _path(value: Any) -> str | None:
    """File choices as ``str`` (``None`` for none or an empty field): a ``Path`` from the CLI and
    the text of the view's field compare equal."""
    if value is None or not str(value).strip():
        return None
    return str(Path(str(value).strip()).expanduser())


@dataclass
class TraceRequest:
    """``audiosae trace WORKSPACE --prompt ...``: one traced generation.

    The style: ``style`` (a ``StyleEmbedding`` or ``[1, 512]`` array, the studio's "use this
    embedding") wins over ``style_file`` (row ``i`` for prompt ``i`` of a batch), which wins over
    ``style_audio``, which wins over the text ``prompt`` (both through MuQ-MuLan).  ``out``: the
    folder the trace is saved to (None: not saved; the studio saves on request).
    """

    workspace: Path
    prompt: str = ""
    seconds: float = D.TRACE_SECONDS
    seed: int = D.TRACE_SEED
    style: Any = None
    style_file: str | None = None
    style_audio: str | None = None
    lyrics: str | None = None
    g2p_vocab: str | None = None
    negative_style: str | None = None
    model: str | None = None              # released checkpoint: "base" / "full" (None: base)
    weights: str | None = None            # a local cfm_model.pt
    dtype: str = D.TRACE_DTYPE
    steps: int = D.TRACE_STEPS
    cfg_strength: float = D.TRACE_CFG_STRENGTH
    threshold: float = D.TRACE_THRESHOLD
    sae: str | None = None                # None: the workspace's best pitch SAE
    keep_latents: bool = True
    decode_final: bool = True
    device: str = "auto"
    out: Path | None = None

    def __post_init__(self) -> None:
        self.workspace = Path(self.workspace).expanduser()
        self.prompt = str(self.prompt or "").strip()
        self.seconds, self.seed, self.steps = float(self.seconds), int(self.seed), int(self.steps)
        self.cfg_strength, self.threshold = float(self.cfg_strength), float(self.threshold)
        for name in ("style_file", "style_audio", "lyrics", "g2p_vocab", "negative_style", "weights"):
            setattr(self, name, _path(getattr(self, name)))
        self.dtype = str(self.dtype or D.TRACE_DTYPE)
        if self.dtype not in D.TRACE_DTYPES:
            raise AudioSAEError(f"dtype {self.dtype!r}: choose one of {', '.join(D.TRACE_DTYPES)}")
        self.device = str(self.device or "auto")
        self.out = None if self.out is None else Path(self.out)


@dataclass
class TraceBatchRequest(TraceRequest):
    """``audiosae trace WORKSPACE --prompts FILE``: one trace per prompt (seed ``seed + i``) into
    ``out/trace-NNN`` plus ``summary.json``."""

    prompts: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.prompts = tuple(str(p) for p in self.prompts)
        if not self.prompts:
            raise AudioSAEError("a batch needs at least one prompt")
        if self.out is None:
            raise AudioSAEError("a batch needs an output folder")


@dataclass
class TraceResult:
    """What ``run_trace`` gives back: the trace, the models it used (the studio keeps them to
    decode states) and the warnings shown (the zero negative style...)."""

    trace: Any
    models: Any
    warnings: list[str] = field(default_factory=list)


def read_prompt_list(path: str | Path) -> list[str]:
    """The prompts of a file, one a line; ``builtin`` (when no such file exists) is the shipped list."""
    from ..generation.trace import builtin_prompts_path, read_prompts

    path = Path(path)
    return read_prompts(builtin_prompts_path() if str(path) == "builtin" and not path.exists() else path)


@dataclass
class _Prepared:
    models: Any
    cfm: Any
    style_for: Callable[[int, str], Any]
    negative: Any
    lyrics: Any
    settings: dict[str, Any]
    warnings: list[str]


def _models_fit(models: Any, workspace: Path, sae: str | None) -> bool:
    """Whether already loaded ``models`` are the request's workspace (and SAE)."""
    ws = getattr(models, "workspace", None)
    if ws is None or getattr(ws, "backend_name", None) != REQUIRED_BACKEND:
        return False
    try:
        same = Path(ws.root).resolve() == workspace.resolve()
    except OSError:
        return False
    return same and (sae is None or getattr(getattr(models.sae, "cfg", None), "name", None) == sae)


def _prepare(request: TraceRequest, prompts: list[str], models: Any, warn: Callable[[str], None] | None,
             progress: ProgressSink, cancel: CancelToken) -> _Prepared:
    import torch

    from ..analysis import LoadedModels
    from ..devices import pick_device
    from ..generation import conditioning as cond
    from ..generation import trace as tr
    from ..workspace import Workspace

    # Cheap inputs first, so a typo or a missing package fails before gigabytes are loaded.
    negative = cond.load_negative_style(request.negative_style)
    notes = [negative.note] if negative.note else []
    for note in notes:
        if warn is not None:
            warn(note)
    lines = cond.read_lrc(request.lyrics) if request.lyrics else []
    tokenizer = cond.PhonemeTokenizer(request.g2p_vocab) if lines else None
    if models is None or not _models_fit(models, request.workspace, request.sae):
        models = None
        ws = Workspace.open(request.workspace)
        if ws.backend_name != REQUIRED_BACKEND:
            raise WorkspaceError(f"{ws.root}: tracing DiffRhythm needs a workspace built with --backend "
                                 f"{REQUIRED_BACKEND} (its SAE reads the DiT's latents); this one uses "
                                 f"{ws.backend_name!r}")
    device = pick_device(request.device)
    if request.style is not None:
        style = request.style

        def style_for(i: int, prompt: str) -> Any:
            return style
    elif request.style_file:
        table = cond.load_style_embeddings(request.style_file)
        if table.shape[0] not in (1, len(prompts)):
            raise AudioSAEError(f"{request.style_file}: {table.shape[0]} style rows for {len(prompts)} prompt(s); "
                                "give one row, or one per prompt")

        def style_for(i: int, prompt: str) -> Any:
            return cond.style_from_file(request.style_file, i)
    else:
        progress(Progress("style", 0, 1, "loading MuQ-MuLan"))
        mulan = cond.load_mulan(device)
        if request.style_audio:
            audio_style = cond.style_from_audio(request.style_audio, mulan)

            def style_for(i: int, prompt: str) -> Any:
                return audio_style
        elif all(p.strip() for p in prompts):
            def style_for(i: int, prompt: str) -> Any:
                return cond.style_from_text(prompt.strip(), mulan)
        else:
            raise AudioSAEError("give a prompt, a style embedding file or a style audio file")
    cancel.raise_if_cancelled()
    if models is None:
        progress(Progress("load", 0, 1, "loading the workspace's backend, SAE and probes"))
        models = LoadedModels.load(ws, request.sae, device=str(device))
    cancel.raise_if_cancelled()
    progress(Progress("load", 0, 1, "loading the DiffRhythm generator"))
    backend = models.require_backend("generation")   # it decodes the trace with the codec
    dtype = {"auto": None, "float32": torch.float32, "float16": torch.float16,
             "bfloat16": torch.bfloat16}[request.dtype]
    cfm = tr.load_generator(variant=request.model, weights=request.weights, device=backend.device, dtype=dtype,
                            progress=progress, cancel=cancel)
    frames = cond.frames_for_seconds(request.seconds, cfm.config.max_frames)
    lyrics = None
    if lines:
        lyrics = cond.lyrics_to_tokens(lines, frames, max_frames=cfm.config.max_frames, tokenizer=tokenizer)
    meta: dict[str, Any] = {"lyrics_file": request.lyrics, "weights": request.weights, "variant": request.model}
    if notes:
        meta["warnings"] = list(notes)
    settings = dict(seconds=request.seconds, steps=request.steps, cfg_strength=request.cfg_strength,
                    keep_latents=request.keep_latents, decode_final=request.decode_final, extra_meta=meta)
    return _Prepared(models, cfm, style_for, negative, lyrics, settings, notes)


def run_trace(request: TraceRequest, *, models: Any = None, on_step: Callable[[Any], None] | None = None,
              warn: Callable[[str], None] | None = None, progress: ProgressSink = null_progress,
              cancel: CancelToken | None = None) -> TraceResult:
    """One traced generation (saved to ``request.out`` when given).

    ``models``: ``LoadedModels`` already loaded (the studio's), used when they are the request's
    workspace and SAE; otherwise loaded.  ``on_step(TraceStep)`` is called for every sampler state
    as it is computed (in the calling thread); ``warn(text)`` for each warning, before the work.
    """
    from ..generation import trace as tr

    cancel = cancel or CancelToken()
    ready = _prepare(request, [request.prompt], models, warn, progress, cancel)
    trace = tr.trace_generation(ready.models, ready.cfm, style=ready.style_for(0, request.prompt),
                                negative_style=ready.negative, lyrics_tokens=ready.lyrics, seed=request.seed,
                                prompt=request.prompt, threshold=request.threshold, on_step=on_step,
                                progress=progress, cancel=cancel, **ready.settings)
    if request.out is not None:
        tr.save_trace(trace, request.out)
    return TraceResult(trace, ready.models, ready.warnings)


def run_trace_batch(request: TraceBatchRequest, *, models: Any = None, warn: Callable[[str], None] | None = None,
                    progress: ProgressSink = null_progress, cancel: CancelToken | None = None
                    ) -> tuple[dict[str, Any], list[str]]:
    """One trace per prompt into ``request.out`` (resumable) and ``summary.json``; returns
    ``(summary, warnings)``."""
    from ..generation import trace as tr

    cancel = cancel or CancelToken()
    ready = _prepare(request, list(request.prompts), models, warn, progress, cancel)
    summary = tr.trace_batch(ready.models, ready.cfm, list(request.prompts), request.out, style_for=ready.style_for,
                             negative_style=ready.negative, lyrics_tokens=ready.lyrics, seed=request.seed,
                             threshold=request.threshold, progress=progress, cancel=cancel, **ready.settings)
    return summary, ready.warnings
