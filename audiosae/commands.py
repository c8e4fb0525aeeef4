"""The work behind each CLI subcommand.  Each returns ``{"text": str, "json": dict}``."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .errors import AudioSAEError, WorkspaceError
from .jobs import CancelToken, ProgressSink
from .storage import atomic_write_json


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if getattr(args, "weights", None):
        weights = Path(args.weights).expanduser().resolve()
        if not weights.is_file():
            raise AudioSAEError(f"{weights}: weights file not found")
        options["weights"] = str(weights)
    return options


def cmd_backends(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    from .codecs import available_backends

    specs = available_backends()
    width = max(len(s.name) for s in specs) + 1
    lines = [f"{'name':<{width}} {'rate':>6} {'ch':>3} {'fps':>6} {'dim':>5} {'kind':<10} download"]
    for s in specs:
        size = "built in" if s.download_bytes is None else f"{s.download_bytes / 1e6:,.0f} MB"
        lines.append(f"{s.name:<{width}} {s.sample_rate:>6} {s.channels:>3} {s.frame_rate:>6.2f} {s.latent_dim:>5} "
                     f"{s.kind:<10} {size}")
    data = [{"name": s.name, "sample_rate": s.sample_rate, "channels": s.channels, "frame_rate": s.frame_rate,
             "latent_dim": s.latent_dim, "kind": s.kind, "download_bytes": s.download_bytes,
             "description": s.description} for s in specs]
    return {"text": "\n".join(lines), "json": {"backends": data}}


def cmd_build(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    from .codecs import backend_spec
    from .corpus import builtin_sources, user_sources
    from .workflows import train as flow

    backend_spec(args.backend)  # unknown name -> error listing the known ones, before any work
    problems: list = []
    if args.builtin:
        sources = builtin_sources(args.builtin, minutes=args.minutes, seed=args.seed)
    else:
        sources, problems = user_sources(args.audio)
        if not sources:
            detail = "; ".join(str(p) for p in problems[:5])
            raise AudioSAEError(f"no usable audio found in {', '.join(map(str, args.audio))}"
                                + (f" ({detail})" if detail else ""))
    request = flow.BuildRequest(workspace=args.workspace, backend=args.backend, sources=sources,
                                backend_options=_backend_options(args), problems=problems, device=args.device,
                                crepe_model=args.crepe_model, seed=args.seed, shard_frames=args.shard_frames,
                                attributes=getattr(args, "attributes", None), labels=getattr(args, "labels", None))
    t0 = time.monotonic()
    ws, summary = flow.run_build(request, progress=progress, cancel=cancel)
    elapsed = time.monotonic() - t0
    lines = [f"workspace {ws.root}: {summary.sources_done} source(s), {summary.frames} frames "
             f"({summary.train_frames} train / {summary.val_frames} validation), "
             f"{summary.seconds_of_audio / 60:.1f} min of audio, built in {elapsed:.0f} s"]
    if summary.resumed_sources:
        lines.append(f"resumed: {summary.resumed_sources} source(s) were already encoded")
    if summary.skipped:
        lines.append(f"skipped {len(summary.skipped)} file(s):")
        lines += [f"  {s}" for s in summary.skipped]
    if summary.warnings:
        lines.append(f"used {len(summary.warnings)} file(s) with a warning:")
        lines += [f"  {s}" for s in summary.warnings]
    return {"text": "\n".join(lines), "json": {"workspace": str(ws.root), **summary.to_dict(), "seconds": elapsed}}


def cmd_label(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    from .workflows import train as flow

    request = flow.LabelRequest(workspace=args.workspace, attributes=args.attributes, labels=args.labels,
                                relabel=args.relabel)
    ws, summary = flow.run_label(request, progress=progress, cancel=cancel)
    lines = [f"workspace {ws.root}: labelled {', '.join(summary.attributes)} on {summary.frames} frames of "
             f"{summary.sources_labelled} source(s) ({summary.shards_written} shard(s) written, "
             f"{summary.shards_skipped} already labelled) in {summary.seconds:.1f} s"]
    lines += [f"warning: {w}" for w in summary.warnings]
    return {"text": "\n".join(lines), "json": {"workspace": str(ws.root), **summary.to_dict()}}


def cmd_train(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    from .devices import pick_device
    from .report import format_report
    from .workflows import train as flow
    from .workspace import Workspace

    ws = Workspace.open(args.workspace)
    settings = train_settings_from_args(args)
    device = str(pick_device(args.device))
    if not args.quiet:
        from .workflows.train_plan import describe_train_estimate

        print(describe_train_estimate(ws, settings, device), file=sys.stderr, flush=True)
    request = flow.TrainRequest(workspace=ws.root, settings=settings, device=device,
                                checkpoint_every_s=args.checkpoint_seconds)
    report = flow.run_train(request, progress=progress, cancel=cancel)
    return {"text": format_report(report), "json": report}


def train_settings_from_args(args: argparse.Namespace) -> Any:
    """``audiosae train``'s options as ``TrainSettings``: ``workflows.train.train_settings``, the
    wizard's resolution of the defaults too (an option not given is ``audiosae.defaults``' value)."""
    from . import defaults as D
    from .workflows.train import train_settings

    weights = getattr(args, "class_weights", None)
    class_weight = D.PROBE_CLASS_WEIGHT if weights is None else (None if weights == "none" else str(weights))
    folds = getattr(args, "probe_folds", None)
    return train_settings(expansions=args.expansion, l1s=args.l1, architecture=getattr(args, "architecture", None),
                          ks=getattr(args, "k", None), rmsnorm=getattr(args, "rmsnorm", None), epochs=args.epochs,
                          frames=getattr(args, "frames", None), batch_size=args.batch_size, seed=args.seed,
                          probe_folds=D.PROBE_FOLDS if folds is None else int(folds), probe_class_weight=class_weight,
                          **_probe_attributes(args))


def _probe_attributes(args: argparse.Namespace) -> dict[str, Any]:
    """``--attributes`` of train: a list, 'all' (every attribute the workspace labels) or absent."""
    names = getattr(args, "attributes", None)
    if names is None:
        return {}
    if names == ["all"]:
        from .workspace import Workspace

        return {"probe_attributes": tuple(Workspace.open(args.workspace).attribute_spec.attributes)}
    return {"probe_attributes": tuple(names)}


def cmd_report(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    from .report import format_report, workspace_report
    from .workspace import Workspace

    ws = Workspace.open(args.workspace)
    if not ws.sae_names():
        raise WorkspaceError(f"{ws.root}: no trained SAE yet; run `audiosae train {ws.root}`")
    report = workspace_report(ws, verify=True)  # a damaged file fails here, not as garbage in the table
    return {"text": format_report(report), "json": report}


def steer_file(ws_path: Path, audio: Path, *, attribute: str, target: str, alpha: float, sae: str | None,
               start: float | None, end: float | None, keep_residual: bool, out: Path, device: str,
               limit: bool = True, method: str = "paper") -> dict[str, Any]:
    """Steer ``audio`` with the workspace's SAE + probes; write ``out`` and its JSON side-car.

    The audio goes through the level rule (``steering.level``): its side-car's ``level`` says
    what was done.  ``limit=False`` writes the raw decoded level.  ``method``: one of
    ``steering.methods.METHODS`` (``"paper"``: the probe row; see that module)."""
    from .audio import load_audio, probe_audio, save_audio
    from .probes import ProbeSet
    from .report import best_sae
    from .sae import SparseAutoencoder, _json_safe
    from .steering import check_alpha, steer_wave
    from .steering.methods import check_method, prepare_method
    from .workspace import Workspace

    alpha = check_alpha(alpha)  # before any file or model is read
    check_method(method)
    probe_audio(audio)  # a bad input file fails before any model loads
    ws = Workspace.open(ws_path)
    spec = ws.attribute_spec
    name = sae or best_sae(ws, attribute)
    if name not in ws.sae_names():
        raise WorkspaceError(f"{ws.root}: no SAE named {name!r}; available: {', '.join(ws.sae_names()) or 'none'}")
    target_class = spec.parse_target(attribute, target)
    backend = ws.backend(device)
    model = SparseAutoencoder.load(ws.sae_dir(name), device=str(backend.device))
    probes = ProbeSet.load(ws.probe_dir(name))
    warnings: list[str] = []
    wave = load_audio(audio, backend.sample_rate, backend.channels, on_warning=warnings.append)
    context = prepare_method(ws, name, model, probes, attribute, method)
    result = steer_wave(backend, model, probes, spec, wave, attribute, target_class, alpha,
                        start=start, end=end, keep_residual=keep_residual, limit=limit, context=context)
    out = Path(out)
    if out.suffix.lower() not in {".wav", ".flac"}:
        raise AudioSAEError(f"{out}: output must end in .wav or .flac")
    save_audio(out, result.wave, backend.sample_rate, limit=limit)
    report = {"schema_version": 1, "input": str(audio), "output": str(out), "workspace": str(ws.root),
              "sae": name, "backend": ws.backend_name, **result.report, "input_warnings": warnings}
    # A clip with no voiced frames has undefined (NaN) shifts: JSON has no NaN, the side-car says null.
    atomic_write_json(out.with_suffix(out.suffix + ".json"), _json_safe(report))
    return report


def _describe_level(report: dict[str, Any]) -> str:
    """One line: what the level rule did (gain, peaks, limited samples)."""
    level = report.get("level")
    if not level:
        return ""

    def db(value: Any) -> str:
        return "-inf" if value is None else f"{value:+.1f}"

    if level["rule"] == "raw":
        return (f"level: raw (--no-limit): peak {db(level['peak_after_dbfs'])} dBFS, loudness "
                f"{db(level['loudness_shift_db'])} dB vs the input\n")
    gain = f"gain {level['gain_db']:+.1f} dB (loudness matched to the input), " if "matched" in level["rule"] else \
        "loudness not matched (it is the target), "
    where = ""
    if level.get("levelled") == "selection" and level.get("region"):
        a, b = level["region"]
        where = (f" (selection {a:.2f}-{b:.2f} s only, {1000 * (level.get('crossfade_seconds') or 0):.0f} ms "
                 "cross-fades; outside it the unsteered audio)")
    return (f"level: {gain}peak {db(level['peak_before_dbfs'])} -> {db(level['peak_after_dbfs'])} dBFS, "
            f"{100 * level['limited_fraction']:.1f}% of samples limited{where}\n")


def _describe_shift(report: dict[str, Any]) -> str:
    shift = report.get("shift")
    if not shift:
        return ""
    t = shift["target"]
    lines = [f"target {t['attribute']} = {t['name']}: frames at target {100 * t['rate_before']:.0f}% -> "
             f"{100 * t['rate_after']:.0f}%, mean distance {t['distance_before']:.2f} -> "
             f"{t['distance_after']:.2f} {t['unit']}"]
    for other, s in shift["non_target"].items():
        lines.append(f"non-target {other}: {100 * s['changed_fraction']:.0f}% of frames changed class, "
                     f"mean shift {s['mean_abs_shift']:.2f} {s['unit']}")
    return "\n".join(lines)


def cmd_steer(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    report = steer_file(args.workspace, args.audio, attribute=args.attribute, target=args.target, alpha=args.alpha,
                        sae=args.sae, start=args.start, end=args.end, keep_residual=args.keep_residual,
                        out=args.out, device=args.device, limit=args.limit, method=args.method)
    for warning in report["input_warnings"]:
        print(f"audiosae: warning: {warning}", file=sys.stderr)
    text = f"wrote {report['output']} (steered {report['attribute']} toward {report['target']}, " \
           f"alpha {report['alpha']:g}, method {report['method']}, SAE {report['sae']})\n" + _describe_level(report) + _describe_shift(report)
    return {"text": text, "json": report}


DEMO_GRID = {"expansions": [4, 16], "l1s": [0.01, 0.05], "epochs": 20, "batch_size": 256}


def _demo_target(ws: Any) -> str:
    """A4, or the note nearest to it that the steering SAE's pitch probe saw in training (a
    short corpus may hold no A4, and a class never seen has no direction to steer toward)."""
    from .probes import ProbeSet
    from .report import best_sae

    spec = ws.attribute_spec
    a4 = spec.parse_target("pitch", "A4")
    trained = [k for k in ProbeSet.load(ws.probe_dir(best_sae(ws, "pitch"))).trained_classes("pitch") if k > 0]
    if not trained or a4 in trained:
        return "A4"
    return spec.class_names("pitch")[min(trained, key=lambda k: (abs(k - a4), k))]


def cmd_demo(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    """Offline end to end: built-in tones -> mel -> SAE grid -> probes -> report -> steered example."""
    from .audio import save_audio
    from .corpus import builtin_sources
    from .devices import pick_device
    from .report import format_report
    from .training import TrainSettings, train_workspace
    from .workspace import Workspace, build_corpus

    root = Path(args.workspace)
    if args.fresh and root.exists():
        if not (root / "workspace.json").exists():
            raise WorkspaceError(f"{root}: refusing to delete a folder that is not a workspace")
        shutil.rmtree(root)
    t0 = time.monotonic()
    ws = Workspace.create(root, "mel")
    sources = builtin_sources("tones", minutes=args.minutes, seed=0)
    build = build_corpus(ws, sources, device=args.device, progress=progress, cancel=cancel)
    t_build = time.monotonic() - t0
    settings = TrainSettings(**DEMO_GRID)
    report = train_workspace(ws, settings, device=str(pick_device(args.device)), progress=progress, cancel=cancel)
    t_train = time.monotonic() - t0 - t_build
    cancel.raise_if_cancelled()

    # A steered example: a validation clip pushed toward A4.
    val = [r for r in ws.manifest().sources.values() if r.split == "val"]
    example = next(s for s in sources if s.source_id == val[0].source_id)
    backend = ws.backend(args.device)
    original = ws.root / "steer" / "demo-original.wav"
    save_audio(original, example.load(backend.sample_rate, backend.channels), backend.sample_rate)
    cancel.raise_if_cancelled()
    target = _demo_target(ws)
    steered_path = ws.root / "steer" / f"demo-steered-{target}.wav"
    steer = steer_file(ws.root, original, attribute="pitch", target=target, alpha=20.0, sae=None, start=None,
                       end=None, keep_residual=False, out=steered_path, device=args.device)
    elapsed = time.monotonic() - t0
    text = "\n".join([
        format_report(report), "",
        f"steered example: {original} -> {steered_path} (pitch toward {target}, alpha 20, SAE {steer['sae']})",
        _describe_level(steer) + _describe_shift(steer), "",
        f"demo finished in {elapsed:.0f} s (build {t_build:.0f} s, train {t_train:.0f} s); "
        f"workspace: {ws.root.resolve()}",
    ])
    return {"text": text, "json": {"report": report, "steer": steer, "build": build.to_dict(),
                                   "seconds": {"total": elapsed, "build": t_build, "train": t_train}}}


def trace_request_from_args(args: argparse.Namespace) -> Any:
    """``audiosae trace``'s flags as a ``TraceRequest`` (a ``TraceBatchRequest`` with ``--prompts``)."""
    from .workflows import trace as flow

    common = dict(workspace=args.workspace, seconds=args.seconds, seed=args.seed, style_file=args.style_embedding,
                  style_audio=args.style_audio, lyrics=args.lyrics, g2p_vocab=args.g2p_vocab,
                  negative_style=args.negative_style, model=args.model, weights=args.weights, dtype=args.dtype,
                  steps=args.steps, cfg_strength=args.cfg, threshold=args.threshold, sae=args.sae,
                  keep_latents=not args.no_latents, decode_final=not args.no_audio, device=args.device, out=args.out)
    if args.prompts is not None:
        return flow.TraceBatchRequest(prompts=tuple(flow.read_prompt_list(args.prompts)), **common)
    return flow.TraceRequest(prompt=args.prompt, **common)


def cmd_trace(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    """Trace DiffRhythm generation through a workspace's SAE and probes (one prompt or a batch)."""
    from .workflows import trace as flow

    def warn(note: str) -> None:
        print(f"audiosae: warning: {note}", file=sys.stderr)

    request = trace_request_from_args(args)
    if isinstance(request, flow.TraceBatchRequest):
        summary, warnings_shown = flow.run_trace_batch(request, warn=warn, progress=progress, cancel=cancel)
        report = [f"wrote {summary['n']} traces and summary.json to {args.out} ({summary['ci']})"]
        for attr in summary["attributes"]:
            row = summary["convergence"]["x_t"]["endpoint"][attr]
            ci = "" if row["lo"] is None else f" [{row['lo']:.1f}, {row['hi']:.1f}]"
            report.append(f"{attr:<9} mean convergence step {row['mean_step']:.1f}{ci}, "
                         f"{100 * row['fraction_converged']:.0f}% converged")
        return {"text": "\n".join(report), "json": {"out": str(args.out), **summary, "warnings": warnings_shown}}

    result = flow.run_trace(request, warn=warn, progress=progress, cancel=cancel)
    trace = result.trace
    report = [f"wrote {args.out} ({trace.frames} frames, {trace.steps} states, "
              f"{trace.meta['timings']['seconds_per_step']:.3f} s/step, SAE {trace.meta['sae']})"]
    for attr in trace.attributes:
        step = trace.convergence["x_t"]["endpoint"][attr]
        paper = trace.convergence["x_t"]["paper"][attr]
        report.append(f"{attr:<9} convergence step {step:>2} (paper form {paper:>2}) of {trace.steps - 1}"
                      f"{'' if step < trace.steps - 1 else '  (not converged)'}")
    data = {"out": str(args.out), "frames": trace.frames, "steps": trace.steps, "sae": trace.meta["sae"],
            "threshold": args.threshold, "convergence": trace.convergence, "s_t": trace.progress,
            "timings": trace.meta["timings"], "warnings": result.warnings}
    return {"text": "\n".join(report), "json": data}


def cmd_trace_report(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    """report.png + report.json for a trace folder or a batch folder."""
    from .generation.trace import REPORT_PNG, write_report

    report = write_report(args.trace_dir, threshold=args.threshold)
    lines = [f"wrote {Path(args.trace_dir) / REPORT_PNG} and report.json ({report['n']} trace(s), "
             f"threshold {report['threshold']:g})"]
    for attr in report["attributes"]:
        row = report["convergence"]["x_t"]["endpoint"][attr]
        paper = report["convergence"]["x_t"]["paper"][attr]
        lines.append(f"{attr:<9} convergence step {row['mean_step']:.1f} (paper form {paper['mean_step']:.1f}), "
                     f"{100 * row['fraction_converged']:.0f}% converged")
    return {"text": "\n".join(lines), "json": report}


def _workspace_latent_dim(ws: Any) -> int:
    """The latent width of the workspace's corpus (or, before a build, of its backend)."""
    from .codecs import backend_spec

    dim = (ws.meta.get("corpus") or {}).get("latent_dim")
    return int(dim) if dim else int(backend_spec(ws.backend_name).latent_dim)


def cmd_export_sae(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    """An SAE (and optionally its probes) in the SAELens layout."""
    from .exports import SAELENS_CFG_FILE, SAELENS_WEIGHTS_FILE, export_saelens
    from .probes import ProbeSet
    from .sae import SparseAutoencoder
    from .workspace import Workspace

    ws = Workspace.open(args.workspace)
    if args.sae not in ws.sae_names():
        raise WorkspaceError(f"{ws.root}: no SAE named {args.sae!r}; available: {', '.join(ws.sae_names()) or 'none'}")
    sae = SparseAutoencoder.load(ws.sae_dir(args.sae))
    probes = None
    if args.with_probes:
        if not ws.probe_dir(args.sae).is_dir():
            raise WorkspaceError(f"{ws.root}: SAE {args.sae!r} has no probes yet; run `audiosae train` or drop --with-probes")
        probes = ProbeSet.load(ws.probe_dir(args.sae))
    export_saelens(sae, args.out, probes=probes,
                   metadata={"model_name": ws.backend_name, "workspace": str(ws.root), "sae_name": args.sae})
    files = [SAELENS_CFG_FILE, SAELENS_WEIGHTS_FILE] + (["probes.safetensors", "probes.json"] if probes else [])
    return {"text": f"wrote SAE {args.sae!r} (d_in {sae.cfg.d_in}, d_sae {sae.cfg.d_sae}) to {args.out} in the "
                    f"SAELens layout: {', '.join(files)}",
            "json": {"sae": args.sae, "out": str(args.out), "files": files, "d_in": sae.cfg.d_in,
                     "d_sae": sae.cfg.d_sae}}


def cmd_import_sae(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    """A SAELens-layout SAE copied into ``saes/NAME`` (and its exported probes into ``probes/NAME``)."""
    import sys

    from .exports import import_saelens, load_exported_probes, saelens_import_warning
    from .workspace import Workspace

    ws = Workspace.open(args.workspace)
    name = str(args.name)
    if not name or name in (".", "..") or any(c in name for c in "/\\:") or name.startswith("."):
        raise AudioSAEError(f"invalid SAE name {name!r}: use letters, digits, '-', '_' or '.'")
    if ws.sae_dir(name).exists() or ws.probe_dir(name).exists():
        raise WorkspaceError(f"{ws.root}: an SAE named {name!r} already exists; choose another --name")
    sae = import_saelens(args.folder)
    d_in = _workspace_latent_dim(ws)
    if sae.cfg.d_in != d_in:
        raise WorkspaceError(f"{args.folder}: SAE d_in {sae.cfg.d_in} does not match the latent dim {d_in} of "
                             f"workspace {ws.root} (backend {ws.backend_name})")
    probes = load_exported_probes(args.folder, sae)
    sae.cfg.name = name
    sae.save(ws.sae_dir(name), metrics=sae.metrics, extra={"backend": ws.backend_name})
    if probes is not None:
        probes.save(ws.probe_dir(name))
    warning = saelens_import_warning(sae)
    if warning:
        print(f"audiosae: warning: {warning}", file=sys.stderr)
    text = (f"imported {args.folder} as SAE {name!r} (d_in {sae.cfg.d_in}, d_sae {sae.cfg.d_sae})"
            + (" with its probes" if probes is not None else "; no probes (run `audiosae train` to fit them)"))
    return {"text": text, "json": {"sae": name, "folder": str(args.folder), "d_in": sae.cfg.d_in,
                                   "d_sae": sae.cfg.d_sae, "probes": probes is not None, "warning": warning}}


def cmd_export_lanes(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    """lanes.csv, activations.csv and Sonic Visualiser layers for one clip."""
    from .analysis import LoadedModels
    from .audio import load_audio, probe_audio
    from .exports import export_activations_csv, export_lanes_csv, export_sonic_visualiser

    probe_audio(args.audio)  # a bad input file fails before any model loads
    models = LoadedModels.load(args.workspace, args.sae, device=args.device)
    backend = models.backend
    wave = load_audio(args.audio, backend.sample_rate, backend.channels,
                      on_warning=lambda line: print(f"audiosae: warning: {line}", file=sys.stderr))
    analysis = models.analyze(wave, source=str(args.audio), progress=progress, cancel=cancel)
    out = Path(args.out)
    lanes = export_lanes_csv(analysis, models.spec, out / "lanes.csv")
    features = export_activations_csv(analysis, out / "activations.csv")
    sv = export_sonic_visualiser(analysis, models.spec, out / "sonic-visualiser")
    text = (f"wrote {lanes} ({analysis.n_frames} frames), {out / 'activations.csv'} ({len(features)} active "
            f"features) and {len(sv)} Sonic Visualiser layers in {out / 'sonic-visualiser'} "
            f"(SAE {models.sae.cfg.name})")
    return {"text": text, "json": {"out": str(out), "frames": analysis.n_frames, "sae": models.sae.cfg.name,
                                   "active_features": len(features), "sonic_visualiser": {k: str(v) for k, v in sv.items()}}}


def cmd_describe(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    """Every feature's best attribute labels (``audiosae.describe``)."""
    from .describe import load_or_describe, neuronpedia_export
    from .workspace import Workspace

    if args.top < 1:
        raise AudioSAEError(f"--top must be at least 1, got {args.top}")
    ws = Workspace.open(args.workspace)
    desc = load_or_describe(ws, args.sae, device=args.device, progress=progress, cancel=cancel,
                            threads=args.threads or None)
    if args.feature is not None and not 0 <= args.feature < desc.n_features:
        raise AudioSAEError(f"feature {args.feature} is out of range (0..{desc.n_features - 1})")
    feats = [args.feature] if args.feature is not None else range(desc.n_features)
    data = desc.to_json(feats, top=args.top)
    lines = [f"SAE {args.sae}: {desc.n_features} features over {desc.n_frames} frames "
             f"(score = one-vs-rest AUROC; mass = share of the feature's activation on the class)"]
    for item in data["features"]:
        labels = ", ".join(f"{x['attribute']} {x['class']} {x['score']:.2f} (mass {x['mass_fraction']:.2f})"
                           for x in item["labels"]) or "dead (never active)"
        lines.append(f"{item['feature']:>5}  density {item['density']:.4f}  single-label "
                     f"{item['single_label_score']:.2f}  {labels}")
    if args.neuronpedia is not None:
        neuronpedia_export(ws, desc, args.neuronpedia, top=args.top)
        lines.append(f"wrote the Neuronpedia-style export {args.neuronpedia}")
        if args.json and not args.quiet:
            print(f"audiosae: wrote {args.neuronpedia}", file=sys.stderr)
    return {"text": "\n".join(lines), "json": data}


def cmd_steer_eval(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    """Every method x alpha on the clips (``steering.evaluate``): JSON + PNG matrices, and the tables."""
    from .audio import probe_audio
    from .steering.control import PAPER_ALPHAS
    from .steering.eval_plot import format_tables
    from .steering.evaluate import EvaluationRequest, evaluate_steering
    from .workspace import Workspace

    for clip in args.audio:
        probe_audio(clip)  # a bad input file fails before any model loads
    ws = Workspace.open(args.workspace)
    request = EvaluationRequest(ws, list(args.audio), targets=args.eval_targets or [("pitch", "A4")],
                                alphas=args.alpha or list(PAPER_ALPHAS), methods=args.method, sae=args.sae,
                                start=args.start, end=args.end, keep_residual=args.keep_residual, limit=args.limit,
                                device=args.device)
    evaluation = evaluate_steering(request, progress=progress, cancel=cancel)
    files = evaluation.save(args.out if args.out is not None else ws.root / "steer" / "eval")
    text = format_tables(evaluation) + f"\nwrote {files['json']}" + "".join(f"\nwrote {p}" for p in files["png"])
    matrices = {f"{a} {t}": {m: evaluation.matrix(m, attribute=a, target=t).values.tolist()
                             for m in ("hit_rate", "loudness_shift_db", "centroid_change_pct", "frechet", "mmd",
                                       "clipped_fraction")} for a, t in evaluation.targets}
    data = {"files": files, "methods": evaluation.methods, "alphas": evaluation.alphas, "matrices": matrices,
            "best": [evaluation.best_method(attribute=a, target=t) for a, t in evaluation.targets]}
    from .steering.eval_metrics import json_clean

    return {"text": text, "json": json_clean(data)}
