"""A real window under Xvfb: the app opens the demo, a heatmap cell is selected, alpha is set,
and the window is grabbed to ``test-artifacts/explorer.png`` (repo root; git-ignored).

The app runs in a subprocess on the ``xcb`` platform against a private Xvfb server started
here (skipped, with the reason, where Xvfb is not installed).  The checks: the PNG exists,
has the window's size, is not blank, and the heatmap region is not uniform.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
SCREEN = (1600, 1000)
WINDOW = (1500, 940)


@pytest.fixture(scope="module")
def xvfb_display():
    """A private Xvfb server; yields its DISPLAY string (":N")."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb) - the real-window screenshot needs an X server")
    read_fd, write_fd = os.pipe()
    # -displayfd: Xvfb picks a free display number and writes it to the pipe once it is ready.
    proc = subprocess.Popen([xvfb, "-displayfd", str(write_fd), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24",
                             "-nolisten", "tcp"], pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    os.close(write_fd)
    number = b""
    deadline = time.monotonic() + 20
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while time.monotonic() < deadline and not number.endswith(b"\n"):
            chunk = pipe.read(16)
            if not chunk:
                break
            number += chunk
    if not number.strip():
        proc.kill()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        pytest.fail(f"Xvfb did not start: {err.strip()[-500:]}")
    try:
        yield f":{number.decode().strip()}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


APP_SCRIPT = textwrap.dedent(r'''
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    out_png, out_json, settings_path = sys.argv[2], sys.argv[3], sys.argv[4]
    width, height = int(sys.argv[5]), int(sys.argv[6])
    import numpy as np
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication
    from studio.app import guard_singleton_refcounts

    app = QApplication(["audiosae-studio-screenshot"])
    guard_singleton_refcounts()
    from studio.main_window import MainWindow, is_placeholder
    from studio.settings import StudioSettings

    def pump(seconds, until=lambda: False):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not until():
            app.processEvents()
            time.sleep(0.005)
        return until()

    window = MainWindow(StudioSettings(settings_path))
    window.move(0, 0)
    window.resize(width, height)
    window.show()
    pump(1.0, lambda: window.isVisible() and window.windowHandle() is not None and window.windowHandle().isExposed())
    window.open_demo()
    state = window.state
    if not pump(120, lambda: state.analysis is not None):
        sys.exit("the demo clip was not analysed within 120 s: " + window.statusBar().currentMessage())
    pump(60, lambda: not window.runner.active)
    report = {"panes": {n: not is_placeholder(getattr(window, n)) for n in ("timeline", "inspector", "audition")}}

    # Select a heatmap cell: click the heatmap where a strong feature is active, else set it.
    f = state.features_for_display()
    frame = int(np.argmax(f.max(axis=1)[: max(1, f.shape[0] // 2)]))
    feature = int(np.argmax(f[frame]))
    heat = getattr(getattr(window.timeline, "heatmap", None), "plot", None)
    report["heatmap_rect"] = None
    if heat is not None:
        view = window.timeline.graphics
        box = heat.getViewBox().sceneBoundingRect()
        top_left = view.mapFromScene(box.topLeft())
        bottom_right = view.mapFromScene(box.bottomRight())
        a = view.viewport().mapTo(window, top_left)
        b = view.viewport().mapTo(window, bottom_right)
        report["heatmap_rect"] = [a.x(), a.y(), b.x(), b.y()]
        t = float(state.analysis.times[frame])
        vb = heat.getViewBox()
        (_, _), (ya, yb) = vb.viewRange()
        y_best = 0.5 * (ya + yb)
        cell_at = getattr(window.timeline.heatmap, "cell_at", None)
        if cell_at is not None:  # the row (in the pane's own order) whose feature is strongest here
            best = -1.0
            for y in np.arange(np.floor(ya), np.ceil(yb)) + 0.5:   # row centres (rows span [r, r + 1))
                cell = cell_at(t, float(y))
                if cell is not None and f[frame, cell[1]] > best:
                    best, y_best = float(f[frame, cell[1]]), float(y)
        point = view.mapFromScene(vb.mapViewToScene(QPointF(t, y_best)))
        QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         QPoint(int(point.x()), int(point.y())))
        pump(0.5)
    report["clicked_cell"] = state.selected_feature
    report["clicked_activation"] = (float(f[state.selected_feature[1], state.selected_feature[0]])
                                    if state.selected_feature else None)
    if state.selected_feature is None:
        state.select_feature(feature, frame)
    report["selected"] = state.selected_feature

    alpha = getattr(window.audition, "set_alpha", None)
    if alpha is not None:
        alpha(20.0)
    report["alpha"] = getattr(window.audition, "alpha", None)
    pump(2.0)
    pump(30, lambda: not window.runner.active)
    pump(0.5)

    image = window.screen().grabWindow(window.winId())
    source = "QScreen.grabWindow"
    if image.isNull():
        image, source = window.grab(), "QWidget.grab"
    image.save(out_png)
    ratio = window.devicePixelRatioF()
    report.update(source=source, window=[window.width(), window.height()], ratio=ratio,
                  image=[image.width(), image.height()], status=window.statusBar().currentMessage(),
                  steering=str(state.steering))
    with open(out_json, "w") as fh:
        json.dump(report, fh)
    window.close()
''')


def read_rgb(path: Path) -> np.ndarray:
    """The PNG as float64 [H, W, 3] (Qt's decoder: no extra dependency)."""
    from PySide6.QtGui import QImage

    img = QImage(str(path))
    assert not img.isNull(), f"{path} is not a readable image"
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    return rows[:, : img.width() * 3].reshape(img.height(), img.width(), 3).astype(np.float64)


def test_explorer_screenshot_under_xvfb(xvfb_display, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / "explorer.png"
    png.unlink(missing_ok=True)
    script = tmp_path / "shoot.py"
    script.write_text(APP_SCRIPT)
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", DISPLAY=xvfb_display, OMP_NUM_THREADS="1",
               AUDIOSAE_LOG_DIR=str(tmp_path / "logs"), QT_SCALE_FACTOR="1")
    env.pop("WAYLAND_DISPLAY", None)
    done = subprocess.run([sys.executable, str(script), str(REPO_ROOT), str(png), str(tmp_path / "report.json"),
                           str(tmp_path / "settings.ini"), str(WINDOW[0]), str(WINDOW[1])],
                          env=env, capture_output=True, text=True, timeout=300)
    if "Could not load the Qt platform plugin" in done.stderr:
        reason = next((line for line in done.stderr.splitlines() if "is needed" in line), done.stderr.strip()[:300])
        pytest.skip(f"Qt's xcb platform plugin cannot load here: {reason.strip()}")
    assert done.returncode == 0, f"app subprocess failed ({done.returncode}):\n{done.stderr[-3000:]}"
    report = json.loads((tmp_path / "report.json").read_text())
    assert png.is_file()

    image = read_rgb(png)
    height, width = image.shape[:2]
    expected = [round(v * report["ratio"]) for v in report["window"]]
    assert [width, height] == expected == report["image"]
    assert report["window"] == list(WINDOW)

    pixels = image.reshape(-1, 3)
    assert pixels.std(axis=0).mean() > 20, "the screenshot is (nearly) blank"
    colours = np.unique((pixels // 8).astype(np.int64) @ np.array([1 << 10, 1 << 5, 1]))
    assert len(colours) > 200, f"only {len(colours)} distinct colours"
    if report["panes"]["timeline"]:
        x0, y0, x1, y1 = report["heatmap_rect"]
        region = image[y0:y1, x0:x1]
        assert region.size and region.reshape(-1, 3).std(axis=0).mean() > 10, "the heatmap region is uniform"
        rows_lit = (region.max(axis=2) > 80).any(axis=1).mean()
        assert rows_lit > 0.3, "few heatmap rows show any activation"
    assert report["selected"] is not None
    if report["panes"]["timeline"]:
        assert report["clicked_cell"] is not None, "clicking the heatmap selected no cell"
