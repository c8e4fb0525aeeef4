"""``audiosae export-sae``, ``import-sae``, ``export-lanes`` (``workflows.export``) and ``describe``
(``workflows.describe``, with its Neuronpedia-style export)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..jobs import CancelToken, ProgressSink
from .options import warn


def add_export_sae(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    xs = sub.add_parser("export-sae", parents=[common], help="export an SAE in the SAELens layout",
                        description="Writes cfg.json + sae_weights.safetensors (SAELens 'standard' layout; cfg.json "
                                    "notes audiosae's RMSNorm on h, which SAELens' forward lacks) into FOLDER.")
    xs.add_argument("workspace", type=Path)
    xs.add_argument("--sae", required=True, help="SAE name in the workspace")
    xs.add_argument("--out", type=Path, required=True, metavar="FOLDER")
    xs.add_argument("--with-probes", action="store_true", help="also write the SAE's probes (probes.safetensors + .json)")
    xs.set_defaults(command="export_sae", handler=run_export_sae)
    return xs


def run_export_sae(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    from ..workflows import export as flow

    data = flow.run_export_sae(flow.ExportSAERequest(workspace=args.workspace, sae=args.sae, out=args.out,
                                                     with_probes=args.with_probes), progress=progress, cancel=cancel)
    return {"text": f"wrote SAE {data['sae']!r} (d_in {data['d_in']}, d_sae {data['d_sae']}) to {args.out} in the "
                    f"SAELens layout: {', '.join(data['files'])}",
            "json": data}


def add_import_sae(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    im = sub.add_parser("import-sae", parents=[common], help="import a SAELens-layout SAE into a workspace",
                        description="Reads FOLDER (cfg.json + sae_weights.safetensors), checks that d_in matches the "
                                    "workspace's latent dim and saves it as saes/NAME (with its probes, if exported).")
    im.add_argument("workspace", type=Path)
    im.add_argument("folder", type=Path)
    im.add_argument("--name", required=True, help="name for the SAE in the workspace")
    im.set_defaults(command="import_sae", handler=run_import_sae)
    return im


def run_import_sae(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    from ..workflows import export as flow

    data = flow.run_import_sae(flow.ImportSAERequest(workspace=args.workspace, folder=args.folder, name=args.name),
                               progress=progress, cancel=cancel)
    if data["warning"]:
        warn(data["warning"])
    text = (f"imported {args.folder} as SAE {data['sae']!r} (d_in {data['d_in']}, d_sae {data['d_sae']})"
            + (" with its probes" if data["probes"] else "; no probes (run `audiosae train` to fit them)"))
    return {"text": text, "json": data}


def add_export_lanes(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    xl = sub.add_parser("export-lanes", parents=[common], help="per-frame lanes of a clip as CSV and Sonic Visualiser layers",
                        description="Analyses AUDIO with the workspace's SAE and probes and writes lanes.csv, "
                                    "activations.csv, sonic-visualiser/*.csv (File > Import Annotation Layer) and "
                                    "sonic-visualiser/session.sv (the clip with every lane, opened in one go).")
    xl.add_argument("workspace", type=Path)
    xl.add_argument("audio", type=Path)
    xl.add_argument("--out", type=Path, required=True, metavar="FOLDER")
    xl.add_argument("--sae", default=None, help="SAE name (default: best pitch probe accuracy)")
    xl.set_defaults(command="export_lanes", handler=run_export_lanes)
    return xl


def run_export_lanes(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    from ..workflows import export as flow

    request = flow.LanesRequest(workspace=args.workspace, audio=args.audio, out=args.out, sae=args.sae,
                                device=args.device)
    r = flow.run_export_lanes(request, warn=warn, progress=progress, cancel=cancel)
    text = (f"wrote {r.lanes} ({r.frames} frames), {r.out / 'activations.csv'} ({r.active_features} active "
            f"features) and {len(r.sonic_visualiser)} Sonic Visualiser layers in {r.out / 'sonic-visualiser'} "
            f"(SAE {r.sae})" + (f"; open {r.sv_session} in Sonic Visualiser for all of them" if r.sv_session else ""))
    return {"text": text, "json": {"out": str(r.out), "frames": r.frames, "sae": r.sae,
                                   "active_features": r.active_features,
                                   "sonic_visualiser": {k: str(v) for k, v in r.sonic_visualiser.items()},
                                   "sv_session": str(r.sv_session) if r.sv_session else None}}


def add_describe(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from ..boost_schedule import DEFAULT_BPM, DEFAULT_SCHEDULE, SCHEDULES
    from ..defaults import DESCRIBE_THREADS, DESCRIBE_TOP

    ds = sub.add_parser("describe", parents=[common], help="label every SAE feature with its best attribute classes",
                        description="Streams the corpus through SAE NAME and scores every feature against every "
                                    "class of every attribute the workspace labels (pitch, loudness, timbre, onset, "
                                    "chord, instrument ...: one-vs-rest AUROC of its activation, and the "
                                    "share of its activation mass per class). Cached next to the SAE; recomputed "
                                    "when the SAE, the corpus or the attribute spec changes.")
    ds.add_argument("workspace", type=Path)
    ds.add_argument("--sae", required=True, help="SAE name in the workspace")
    ds.add_argument("--feature", type=int, default=None, metavar="J", help="only feature J (default: all)")
    ds.add_argument("--top", type=int, default=DESCRIBE_TOP, metavar="N",
                    help=f"labels per feature, best first (default {DESCRIBE_TOP})")
    ds.add_argument("--neuronpedia", type=Path, default=None, metavar="OUT.json",
                    help="also write a Neuronpedia-style export (explanations, density, top activations)")
    ds.add_argument("--threads", type=int, default=DESCRIBE_THREADS,
                    help=f"CPU threads while labelling (default {DESCRIBE_THREADS}: on a busy machine 1 was 2-3x "
                         f"faster than 2)")
    ds.add_argument("--boost-check", action="store_true",
                    help="also boost the top-labelled features of each attribute on corpus clips and measure "
                         "whether their labelled class grows (cached beside the SAE; the studio shows it)")
    ds.add_argument("--boost-schedule", choices=SCHEDULES, default=DEFAULT_SCHEDULE,
                    help="with --boost-check: boost on every frame (default), only on regular pulses "
                         "(--boost-bpm, 2 frames each), or on the clip's own beats; onset / beat timing is "
                         "measured against the pulses")
    ds.add_argument("--boost-bpm", type=float, default=DEFAULT_BPM, metavar="BPM",
                    help=f"pulse rate of --boost-schedule pulses (default {DEFAULT_BPM:g})")
    ds.add_argument("--boost-controls", type=int, default=0, metavar="N",
                    help="with --boost-check: also boost N random features with no label per attribute the "
                         "same way (does any feature boosted so move the class?)")
    ds.set_defaults(handler=run_describe)
    return ds


def run_describe(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    """Every feature's best attribute labels (``audiosae.describe``)."""
    from ..workflows import describe as flow

    request = flow.DescribeRequest(workspace=args.workspace, sae=args.sae, feature=args.feature, top=args.top,
                                   neuronpedia=args.neuronpedia, threads=args.threads, device=args.device,
                                   boost_check=args.boost_check, boost_schedule=args.boost_schedule,
                                   boost_bpm=args.boost_bpm, boost_controls=args.boost_controls)
    result = flow.run_describe(request, progress=progress, cancel=cancel)
    desc, data = result.description, result.data
    lines = [f"SAE {args.sae}: {desc.n_features} features over {desc.n_frames} frames "
             f"(score = one-vs-rest AUROC; mass = share of the feature's activation on the class)"]
    for item in data["features"]:
        labels = ", ".join(f"{x['attribute']} {x['class']} {x['score']:.2f} (mass {x['mass_fraction']:.2f})"
                           for x in item["labels"]) or "dead (never active)"
        lines.append(f"{item['feature']:>5}  density {item['density']:.4f}  single-label "
                     f"{item['single_label_score']:.2f}  {labels}")
    if result.boost_check is not None:
        sched = result.boost_check.get("schedule") or {"name": "every"}
        on = "every frame" if sched["name"] == "every" else \
            f"pulses at {sched.get('bpm', 0):g} BPM" if sched["name"] == "pulses" else "the clip's beats"
        lines.append(f"boost check, boosted on {on} (boosted feature -> share of frames in its labelled class, "
                     f"reference -> boosted):")
        for e in result.boost_check["features"]:
            j = e["feature"]
            tag = " [control]" if e.get("control") else ""
            before, after = e.get("before"), e.get("after")
            shown = "not measurable" if before is None or after is None else \
                f"{100 * before:.0f} % -> {100 * after:.0f} % ({100 * (after - before):+.0f} points)"
            timing = e.get("timing") or {}
            if sched["name"] != "every" and e["attribute"] == "onset" and timing.get("pulses_hit_after") is not None:
                shown += (f"; pulses with an onset within 2 frames {100 * timing['pulses_hit_before']:.0f} % -> "
                          f"{100 * timing['pulses_hit_after']:.0f} %")
            lines.append(f"  {j:>5}  {e['attribute']} {e['class']} (AUROC {e['auroc']:.2f}){tag}: {shown}")
        if result.boost_check.get("not_measurable"):
            lines.append(f"  not measurable on decoded audio (ground-truth labels): "
                         f"{', '.join(result.boost_check['not_measurable'])}")
    if result.neuronpedia is not None:
        lines.append(f"wrote the Neuronpedia-style export {result.neuronpedia}")
        if args.json and not args.quiet:
            print(f"audiosae: wrote {result.neuronpedia}", file=sys.stderr)
    return {"text": "\n".join(lines), "json": data}
