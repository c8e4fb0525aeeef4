"""Closing the loop for rhythm (issue 14): every-frame vs pulsed boosts of the top-labelled
onset / beat_phase / chord features, with random unlabelled features boosted alike as controls.

    python benchmarks/boost_schedule.py WS --sae NAME [--schedules every pulses] [--bpm 120]
        [--attributes onset beat_phase chord] [--controls 2] [--clips 2] [--amount 4] [--out DIR]

Runs ``audiosae.feature_loop.feature_loop`` once per schedule (same clips, same amount; nothing is
written into the workspace) and prints one row per (attribute, feature, schedule): the labelled
class's share before -> after, its delta, the controls' mean delta for that class, and the onset
timing (onset rate before -> after, share of the onsets within +-2 frames of a pulse start, chance;
share of the pulses with an onset that close), the class's share on the boosted frames alone, and a
summary of every control feature's pulse onsets (does any feature pulsed make onsets?).
``--out``: also write each schedule's document there as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from audiosae.boost_schedule import DEFAULT_BPM, DEFAULT_WIDTH, BoostSchedule  # noqa: E402
from audiosae.feature_loop import DEFAULT_AMOUNT, feature_loop  # noqa: E402
from audiosae.workspace import Workspace  # noqa: E402


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f}"


def _gain(e: dict) -> float | None:
    t = e.get("timing") or {}
    if t.get("pulses_hit_after") is None or t.get("pulses_hit_before") is None:
        return None
    return t["pulses_hit_after"] - t["pulses_hit_before"]


def rows(doc: dict) -> list[dict]:
    """One row per labelled entry, with its controls (same attribute, class and boost length):
    their mean delta, and the median / max of their pulse-onset gain (share of the pulses that
    gained an onset within +-2 frames)."""
    out = []
    for e in doc["features"]:
        if e.get("control"):
            continue
        mine = [c for c in doc["features"] if c.get("control") and c.get("control_of") == e["feature"]
                and c["attribute"] == e["attribute"] and c["class_index"] == e["class_index"]]
        deltas = [c["delta"] for c in mine if c.get("delta") is not None]
        on_boosted = [c["after_boosted"] for c in mine if c.get("after_boosted") is not None]
        gains = sorted(g for g in (_gain(c) for c in mine) if g is not None)
        out.append({**e, "schedule": doc["schedule"]["name"], "controls": len(mine),
                    "control_delta": sum(deltas) / len(deltas) if deltas else None,
                    "control_after_boosted": sum(on_boosted) / len(on_boosted) if on_boosted else None,
                    "control_gain_median": gains[len(gains) // 2] if gains else None,
                    "control_gain_max": gains[-1] if gains else None,
                    "controls_gain_ge": sum(1 for g in gains if _gain(e) is not None and g >= _gain(e))})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--sae", required=True)
    ap.add_argument("--schedules", nargs="+", default=["every", "pulses"])
    ap.add_argument("--bpm", type=float, default=DEFAULT_BPM)
    ap.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    ap.add_argument("--attributes", nargs="+", default=["onset", "beat_phase", "chord"])
    ap.add_argument("--per-attribute", type=int, default=2)
    ap.add_argument("--controls", type=int, default=2)
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--clip-seconds", type=float, default=6.0)
    ap.add_argument("--amount", type=float, default=DEFAULT_AMOUNT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    ws = Workspace.open(args.workspace)
    print("attribute | feature | schedule | before % | after % | delta pts | control delta pts | "
          "on boosted frames % before->after (controls after) | onsets % before->after | onsets at pulses % before->after (chance) | "
          "pulses gaining an onset pts: feature / controls median, max (controls >= feature) | "
          "beats at pulses % before->after | boost length")
    for name in args.schedules:
        sched = BoostSchedule(name, bpm=args.bpm, width=args.width)
        doc = feature_loop(ws, args.sae, attributes=args.attributes, per_attribute=args.per_attribute,
                           clips=args.clips, clip_seconds=args.clip_seconds, amount=args.amount, schedule=sched,
                           controls=args.controls, seed=args.seed, save=False)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{Path(args.workspace).name}-{sched.slug}.json").write_text(json.dumps(doc, indent=1))
        for r in rows(doc):
            t = r.get("timing") or {}
            print(f"{r['attribute']} {r['class']} | {r['feature']} | {sched.slug} | {_pct(r['before'])} | "
                  f"{_pct(r['after'])} | {_pct(r['delta'])} | {_pct(r['control_delta'])} | "
                  f"{_pct(r.get('before_boosted'))}->{_pct(r.get('after_boosted'))} "
                  f"({_pct(r['control_after_boosted'])}) | "
                  f"{_pct(t.get('onset_rate_before'))}->{_pct(t.get('onset_rate_after'))} | "
                  f"{_pct(t.get('at_pulses_before'))}->{_pct(t.get('at_pulses_after'))} ({_pct(t.get('chance'))}) | "
                  f"{_pct(_gain(r))} / {_pct(r['control_gain_median'])}, {_pct(r['control_gain_max'])} "
                  f"({r['controls_gain_ge']} of {r['controls']}) | "
                  f"{_pct(t.get('beats_at_pulses_before'))}->{_pct(t.get('beats_at_pulses_after'))} | "
                  f"{r.get('boost_norm')}")
        print(f"# {sched.slug}: clips {doc['clips']}, boosted frames {_pct(doc['boosted_frames'])} %, "
              f"{doc['seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
