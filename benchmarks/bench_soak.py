"""Soak: ten minutes of looped steered playback through a PulseAudio null sink while SAE
training runs in the same app; counts underruns and GUI stalls.

    python benchmarks/bench_soak.py [--minutes 10] [--snapshot 60] [--virtual] [--json]

It drives the real ``MainWindow`` on the demo workspace exactly as ``bench_studio`` does (alpha
moved every ~0.3 s, the whole clip re-rendered on every move), for much longer, with a
training job kept running the whole time (a new one is submitted as soon as one finishes),
and prints, per interval and in total: underruns (goal 0), GUI gaps over 50 ms (goal none),
slider-to-audible latency and the process's resident memory (a leak shows as steady growth).
``--virtual`` replaces the null sink with the silent virtual clock (no PulseAudio needed).
Exit status 0 when both goals are met, 1 otherwise (the figures are printed either way).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_studio  # noqa: E402


def run(minutes: float = 10.0, snapshot_seconds: float = 60.0, virtual: bool = False,
        threads: int = 1) -> dict:
    figures = bench_studio.run("main", output="virtual", run_seconds=60.0 * minutes, interval=0.3,
                               training=True, threads=threads, null_sink_output=not virtual,
                               keep_training=True, snapshot_seconds=snapshot_seconds)
    underruns = sum(figures["underruns"].values())
    figures["soak"] = {
        "minutes": minutes,
        "underruns_total": underruns,
        "gui_stalls_over_50ms": figures["gui_gaps_over_50ms"],
        "goals_met": underruns == 0 and figures["gui_gaps_over_50ms"] == 0,
        "rss_growth_mib": round(figures["rss_mib_end"] - figures["rss_mib_start"], 1),
    }
    return figures


def _print(r: dict) -> None:
    soak = r["soak"]
    print(f"soak: {soak['minutes']:g} min of looped steered playback on {r['output']} '{r['device']}' "
          f"({r['output_latency_ms']} ms output latency), training alongside "
          f"({r['training']['jobs_finished']} grids finished, one running at the end: "
          f"{r['training']['still_running_at_end']}); load average {r['load_average']:.1f}")
    print(f"{'until s':>8} {'underruns':>9} {'gaps>50ms':>9} {'max gap ms':>10} {'lat med':>8} {'lat max':>8} "
          f"{'RSS MiB':>8} {'trained':>7}")
    for row in r["intervals"]:
        print(f"{row['until_s']:>8} {row['underruns']:>9} {row['gui_gaps_over_50ms']:>9} {row['gui_gap_ms_max']:>10} "
              f"{row['latency_ms_median']:>8} {row['latency_ms_max']:>8} {row['rss_mib']:>8} "
              f"{row['trainings_finished']:>7}")
    print(f"total: underruns {soak['underruns_total']} (device {r['underruns']['device_underflows']}, "
          f"ring dry {r['underruns']['ring_dry']}; goal 0); GUI gaps > 50 ms: {soak['gui_stalls_over_50ms']} "
          f"(max {r['gui_gap_ms_max']} ms, p99 {r['gui_gap_ms_p99']} ms; goal none); "
          f"{r['alpha_changes']} alpha changes, slider-to-audible median {r['latency_ms_median']} / "
          f"p95 {r['latency_ms_p95']} / max {r['latency_ms_max']} ms; RSS {r['rss_mib_start']} -> "
          f"{r['rss_mib_end']} MiB ({soak['rss_growth_mib']:+} MiB)")
    for site, count in r["gui_stall_sites"].items():
        print(f"    stalled {count}x in {site}")
    print("goals met" if soak["goals_met"] else "goals NOT met")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--snapshot", type=float, default=60.0, help="seconds per reported interval")
    parser.add_argument("--virtual", action="store_true", help="no PulseAudio: a silent virtual output")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.minutes, args.snapshot, args.virtual, args.threads)
    print(json.dumps(result, indent=2, default=str)) if args.json else _print(result)
    return 0 if result["soak"]["goals_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
