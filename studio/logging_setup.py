"""The studio's log file and the error dialog that points to it.

- ``setup_logging()``: a rotating ``studio.log`` in the platform's app-data folder
  (``QStandardPaths.AppDataLocation``/logs, or ``$AUDIOSAE_LOG_DIR``), plus warnings on stderr.
- ``install_excepthook()``: uncaught exceptions, in the GUI thread (``sys.excepthook``, which
  PySide6 calls for exceptions raised in slots and event handlers) or in any Python thread
  (``threading.excepthook``), are logged with their traceback and shown as a one-line message
  with the log file's path and an "Open log folder" button.  Worker threads never touch widgets:
  the report crosses to the GUI thread through a queued signal.
- ``show_error()``: the same non-modal dialog for failures the app catches (job errors).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType
from typing import Callable

from PySide6.QtCore import QObject, QStandardPaths, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

LOG_DIR_ENV = "AUDIOSAE_LOG_DIR"
LOG_FILE_NAME = "studio.log"
LOG_MAX_BYTES = 2_000_000
LOG_BACKUPS = 3
_FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"

log = logging.getLogger("studio")


def log_dir() -> Path:
    """Folder of the log file: ``$AUDIOSAE_LOG_DIR``, else <app data>/logs."""
    override = os.environ.get(LOG_DIR_ENV)
    if override:
        return Path(override).expanduser()
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    if not base:  # no home folder (some sandboxes): stay usable
        base = str(Path.home() / ".audiosae-studio")
    return Path(base) / "logs"


def log_file() -> Path:
    return log_dir() / LOG_FILE_NAME


def setup_logging(level: int = logging.INFO, directory: str | Path | None = None) -> Path:
    """Attach the rotating file handler to the ``studio`` and ``audiosae`` loggers; returns its path.

    Idempotent: a second call with the same file adds nothing.
    """
    folder = Path(directory) if directory is not None else log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / LOG_FILE_NAME).resolve()
    formatter = logging.Formatter(_FORMAT)
    for name in ("studio", "audiosae"):
        logger = logging.getLogger(name)
        logger.setLevel(min(level, logger.level or level))
        if not any(isinstance(h, logging.handlers.RotatingFileHandler)
                   and Path(h.baseFilename).resolve() == path for h in logger.handlers):
            handler = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS,
                                                           encoding="utf-8", delay=True)
            handler.setFormatter(formatter)
            handler.setLevel(level)
            logger.addHandler(handler)
    if not any(getattr(h, "_studio_console", False) for h in logging.getLogger("studio").handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        console.setFormatter(formatter)
        console._studio_console = True  # type: ignore[attr-defined]
        for name in ("studio", "audiosae"):
            logging.getLogger(name).addHandler(console)
    return path


def current_log_file() -> Path:
    """The file the ``studio`` logger writes to (the default location if none is attached yet)."""
    for handler in logging.getLogger("studio").handlers:
        if isinstance(handler, logging.handlers.RotatingFileHandler):
            return Path(handler.baseFilename)
    return log_file()


def open_log_folder() -> bool:
    """Open the log folder in the system's file manager."""
    folder = current_log_file().parent
    folder.mkdir(parents=True, exist_ok=True)
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


def one_line(message: str) -> str:
    """The first non-empty line of ``message``, for status bars and dialog headlines."""
    for line in str(message).splitlines():
        if line.strip():
            return line.strip()
    return "unknown error"


def show_error(parent: QWidget | None, message: str, details: str = "", *,
               title: str = "audiosae studio: error") -> QMessageBox:
    """A non-modal error box: the one-line ``message``, where the log is, "Open log folder".

    Non-modal so that an error raised while another dialog or a drag is in progress can
    never dead-lock the event loop; it deletes itself when closed.
    """
    box = QMessageBox(parent)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setObjectName("studio_error_dialog")
    box.setIcon(QMessageBox.Icon.Critical)
    box.setWindowTitle(title)
    box.setText(one_line(message))
    box.setInformativeText(f"Details are in the log file:\n{current_log_file()}")
    if details:
        box.setDetailedText(details)
    open_button = box.addButton("Open log folder", QMessageBox.ButtonRole.ActionRole)
    # An action-role button would close the box; keep it open so the path stays readable.
    open_button.clicked.disconnect()
    open_button.clicked.connect(open_log_folder)
    box.addButton(QMessageBox.StandardButton.Close)
    box.setWindowModality(Qt.WindowModality.NonModal)
    box.show()
    return box


class ErrorReporter(QObject):
    """Receives uncaught exceptions from any thread and shows them in the GUI thread."""

    report = Signal(str, str)   # one-line message, traceback

    def __init__(self, parent_widget: Callable[[], QWidget | None] = lambda: None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self._parent_widget = parent_widget
        self.dialogs: list[QMessageBox] = []
        self.report.connect(self._show, Qt.ConnectionType.QueuedConnection)
        self._previous_hook = sys.excepthook
        self._previous_thread_hook = threading.excepthook
        self._installed = False

    def install(self) -> None:
        if not self._installed:
            sys.excepthook = self._excepthook
            threading.excepthook = self._thread_excepthook
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            sys.excepthook = self._previous_hook
            threading.excepthook = self._previous_thread_hook
            self._installed = False

    def _excepthook(self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            self._previous_hook(exc_type, exc, tb)
            return
        self.handle(exc_type, exc, tb, thread_name=threading.current_thread().name)

    def _thread_excepthook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        self.handle(args.exc_type, args.exc_value, args.exc_traceback,
                    thread_name=args.thread.name if args.thread else "?")

    def handle(self, exc_type: type[BaseException], exc: BaseException | None, tb: TracebackType | None,
               thread_name: str = "") -> None:
        """Log the exception and queue the dialog (safe from any thread)."""
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("uncaught exception in thread %s:\n%s", thread_name, text)
        message = one_line(f"{exc_type.__name__}: {exc}" if str(exc) else exc_type.__name__)
        self.report.emit(message, text)

    def _show(self, message: str, details: str) -> None:
        if QApplication.instance() is None:
            return
        self.dialogs = [d for d in self.dialogs if _alive(d) and d.isVisible()]
        if len(self.dialogs) >= 3:  # an error in a paint handler repeats: do not bury the screen
            return
        box = show_error(self._parent_widget(), message, details, title="audiosae studio: unexpected error")
        self.dialogs.append(box)


def _alive(obj: QObject) -> bool:
    import shiboken6

    return shiboken6.isValid(obj)


def install_excepthook(parent_widget: Callable[[], QWidget | None] = lambda: None) -> ErrorReporter:
    """Route uncaught exceptions to the log and the error dialog; returns the reporter.

    Call it from ``main()`` only: pytest-qt installs its own hook during tests.
    """
    reporter = ErrorReporter(parent_widget)
    reporter.install()
    return reporter
