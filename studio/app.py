"""Entry point of the desktop app: ``audiosae-studio [WORKSPACE] [--demo] [--device D] [--clip AUDIO]``.

With no workspace the window opens on the start page (open, new via the wizard, recent, demo).
``--demo`` opens the bundled ``resources/demo`` workspace; ``--clip`` analyses that audio file
instead of the workspace's default clip.  Logging goes to a rotating file in the app-data
folder (``$AUDIOSAE_LOG_DIR`` overrides it); uncaught errors show a dialog that points to it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .qt_guard import guard_singleton_refcounts

APP_DISPLAY_NAME = "audiosae studio"
DESKTOP_FILE_NAME = "audiosae-studio"   # packaging/audiosae-studio.desktop


def build_parser() -> argparse.ArgumentParser:
    from audiosae.devices import DEVICE_CHOICES  # imports torch: kept out of module import (tests import this module)

    parser = argparse.ArgumentParser(
        prog="audiosae-studio",
        description="See and hear what audio latent spaces encode: SAE features, probes and control vectors.")
    parser.add_argument("workspace", nargs="?",
                        help="workspace folder to open (default: the start page); an audio file is analysed "
                             "with the most recent workspace, else the demo (what a file manager's Open With passes)")
    parser.add_argument("--demo", action="store_true", help="open the bundled demo workspace")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default=None,
                        help="compute device for this session (default: the saved preference, else auto)")
    parser.add_argument("--clip", metavar="AUDIO", help="audio file to analyse first")
    parser.add_argument("--smoke-test", action="store_true",
                        help="check this build: open (the demo or WORKSPACE), wait until it is loaded, print one "
                             "JSON line and exit (0 = ok); see studio/smoke.py")
    parser.add_argument("--smoke-report", metavar="FILE", help="with --smoke-test, also write the line to FILE")
    return parser


def workspace_for_audio(recent: list[str]) -> str | None:
    """Where to analyse an audio file opened on its own: the most recent workspace that still
    exists, else None (the bundled demo)."""
    from .widgets.start_page import workspace_exists

    return next((path for path in recent if workspace_exists(path)), None)


def main(argv: list[str] | None = None) -> int:
    started_at = time.monotonic()
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.demo and args.workspace:
        build_parser().error("give a WORKSPACE or --demo, not both")

    from PySide6.QtCore import QCoreApplication, QTimer
    from PySide6.QtGui import QGuiApplication, QIcon
    from PySide6.QtWidgets import QApplication

    from audiosae.audio import AUDIO_EXTENSIONS
    from audiosae.memory import keep_large_allocations_off_the_heap

    keep_large_allocations_off_the_heap()  # hours of steered playback: no heap creep

    from .logging_setup import install_excepthook, setup_logging
    from .main_window import ICON_PATH, MainWindow
    from .settings import APPLICATION, ORGANIZATION, StudioSettings

    QCoreApplication.setOrganizationName(ORGANIZATION)   # before setup_logging: names the app-data folder
    QCoreApplication.setApplicationName(APPLICATION)
    QGuiApplication.setApplicationDisplayName(APP_DISPLAY_NAME)
    QGuiApplication.setDesktopFileName(DESKTOP_FILE_NAME)   # Wayland app id: the launcher's icon and name
    log_path = setup_logging()
    guard_singleton_refcounts()
    # Qt 6 scales by the screen's device pixel ratio on its own; the layouts use font metrics.
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "audiosae-studio"])
    if ICON_PATH.is_file():
        app.setWindowIcon(QIcon(str(ICON_PATH)))
    log = logging.getLogger("studio.app")
    log.info("starting audiosae studio (log %s, args %s)", log_path, vars(args))

    window: MainWindow | None = None
    reporter = install_excepthook(lambda: window)
    settings = StudioSettings()
    if args.workspace and Path(args.workspace).suffix.lower() in AUDIO_EXTENSIONS and Path(args.workspace).is_file():
        args.clip = args.workspace
        args.workspace = workspace_for_audio(settings.recent_workspaces)
        args.demo = args.workspace is None
    window = MainWindow(settings, device=args.device)
    window.show()
    smoke = None
    if args.smoke_test:
        from .smoke import SmokeCheck

        smoke = SmokeCheck(app, window, reporter, expect_workspace=bool(args.demo or args.workspace),
                           started_at=started_at, report_path=args.smoke_report)

    def first_open() -> None:  # once the event loop runs, so the window paints first
        if args.demo:
            window.open_demo(clip=args.clip)
        elif args.workspace:
            window.open_workspace(Path(args.workspace), clip=args.clip)
        elif args.clip:
            window.report_error(f"{args.clip}: open a workspace too (WORKSPACE or --demo); the clip is "
                                f"analysed with its SAE", context="No workspace")

    QTimer.singleShot(0, first_open)
    try:
        code = app.exec()
        return smoke.exit_code if smoke is not None and smoke.exit_code is not None else code
    finally:
        reporter.uninstall()
        log.info("audiosae studio exited")


if __name__ == "__main__":
    sys.exit(main())
