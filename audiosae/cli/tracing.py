"""``audiosae trace`` (``workflows.trace``) and ``trace-report``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import defaults as D
from ..jobs import CancelToken, ProgressSink
from .options import warn


def add_trace(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    g = sub.add_parser("trace", parents=[common], help="trace DiffRhythm generation through the SAE and probes",
                       description="Generate music with DiffRhythm and send every sampler state (X_t and the predicted "
                                   "end point) through WORKSPACE's SAE and probes (a workspace built with the "
                                   "diffrhythm-vae backend). Writes trace.json, trace.safetensors and final.wav to "
                                   "--out; with --prompts, one trace per prompt plus summary.json (mean and 95% CI).")
    g.add_argument("workspace", type=Path)
    what = g.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", help="style text (through MuQ-MuLan unless --style-audio/--style-embedding is "
                                       "given, in which case it is only recorded)")
    what.add_argument("--prompts", type=Path, metavar="FILE",
                      help="one prompt per line ('#' comments); 'builtin' = the shipped list; seeds are --seed + i")
    g.add_argument("--seconds", type=float, default=D.TRACE_SECONDS,
                   help=f"length (default {D.TRACE_SECONDS:g}; up to 285 with --model full)")
    g.add_argument("--seed", type=int, default=D.TRACE_SEED)
    g.add_argument("--lyrics", type=Path, metavar="FILE.lrc", help="timed lyrics ([mm:ss.xx]text); default: instrumental")
    g.add_argument("--g2p-vocab", type=Path, metavar="FILE",
                   help="DiffRhythm's g2p/g2p/vocab.json (needed with --lyrics; not shipped)")
    style = g.add_mutually_exclusive_group()
    style.add_argument("--style-audio", type=Path, metavar="FILE", help="style from the middle 10 s of a recording (>= 10 s)")
    style.add_argument("--style-embedding", type=Path, metavar="FILE",
                       help="saved style vector(s): .npy/.safetensors/.pt, [512], [1,512] or [N,512] (row i for prompt i)")
    g.add_argument("--negative-style", type=Path, metavar="FILE",
                   help="negative style vector, e.g. DiffRhythm's infer/example/vocal.npy (default: zeros, with a warning)")
    g.add_argument("--model", choices=["base", "full"], default=None, help="released checkpoint (default base)")
    g.add_argument("--weights", type=Path, default=None, metavar="cfm_model.pt", help="local DiT checkpoint (offline)")
    g.add_argument("--dtype", choices=D.TRACE_DTYPES, default=D.TRACE_DTYPE,
                   help="DiT precision (auto: float16 on CUDA, float32 elsewhere)")
    g.add_argument("--steps", type=int, default=D.TRACE_STEPS,
                   help=f"sampler states (default {D.TRACE_STEPS} = {D.TRACE_STEPS - 1} Euler steps)")
    g.add_argument("--cfg", type=float, default=D.TRACE_CFG_STRENGTH,
                   help=f"classifier-free guidance strength (default {D.TRACE_CFG_STRENGTH:g})")
    g.add_argument("--threshold", type=float, default=D.TRACE_THRESHOLD,
                   help=f"convergence threshold on s_t (default {D.TRACE_THRESHOLD:g})")
    g.add_argument("--sae", default=None, help="SAE name (default: best pitch probe accuracy)")
    g.add_argument("--no-latents", action="store_true", help="do not store per-state latents (smaller traces)")
    g.add_argument("--no-audio", action="store_true", help="do not decode the final latent to final.wav")
    g.add_argument("--out", type=Path, required=True, metavar="TRACE_DIR")
    g.set_defaults(handler=run_trace)
    return g


def trace_request_from_args(args: argparse.Namespace) -> Any:
    """``audiosae trace``'s flags as a ``TraceRequest`` (a ``TraceBatchRequest`` with ``--prompts``)."""
    from ..workflows import trace as flow

    common = dict(workspace=args.workspace, seconds=args.seconds, seed=args.seed, style_file=args.style_embedding,
                  style_audio=args.style_audio, lyrics=args.lyrics, g2p_vocab=args.g2p_vocab,
                  negative_style=args.negative_style, model=args.model, weights=args.weights, dtype=args.dtype,
                  steps=args.steps, cfg_strength=args.cfg, threshold=args.threshold, sae=args.sae,
                  keep_latents=not args.no_latents, decode_final=not args.no_audio, device=args.device, out=args.out)
    if args.prompts is not None:
        return flow.TraceBatchRequest(prompts=tuple(flow.read_prompt_list(args.prompts)), **common)
    return flow.TraceRequest(prompt=args.prompt, **common)


def run_trace(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    """Trace DiffRhythm generation through a workspace's SAE and probes (one prompt or a batch)."""
    from ..workflows import trace as flow

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


def add_trace_report(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    gr = sub.add_parser("trace-report", parents=[common], help="plot and summarise a trace or a batch of traces",
                        description="Writes report.png (s_t per attribute with convergence markers; mean and 95% CI "
                                    "bands for a batch) and report.json into TRACE_DIR.")
    gr.add_argument("trace_dir", type=Path)
    gr.add_argument("--threshold", type=float, default=None, help="convergence threshold (default: the trace's)")
    gr.set_defaults(command="trace_report", handler=run_trace_report)
    return gr


def run_trace_report(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    """report.png + report.json for a trace folder or a batch folder."""
    from ..generation.trace import REPORT_PNG, write_report

    report = write_report(args.trace_dir, threshold=args.threshold)
    lines = [f"wrote {Path(args.trace_dir) / REPORT_PNG} and report.json ({report['n']} trace(s), "
             f"threshold {report['threshold']:g})"]
    for attr in report["attributes"]:
        row = report["convergence"]["x_t"]["endpoint"][attr]
        paper = report["convergence"]["x_t"]["paper"][attr]
        lines.append(f"{attr:<9} convergence step {row['mean_step']:.1f} (paper form {paper['mean_step']:.1f}), "
                     f"{100 * row['fraction_converged']:.0f}% converged")
    return {"text": "\n".join(lines), "json": report}
