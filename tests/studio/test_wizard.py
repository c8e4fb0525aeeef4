"""The training wizard, driven page by page offscreen: a real tiny build + train, cancel and
resume, skipped files, backend facts, the attribute preview and the time estimate."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent  # noqa: E402
from PySide6.QtWidgets import QWizard  # noqa: E402

from audiosae.defaults import DEFAULT_EXPANSIONS  # noqa: E402
from audiosae.corpus import builtin_sources  # noqa: E402
from audiosae.workspace import Workspace, build_corpus, read_shard  # noqa: E402
from studio.settings import StudioSettings  # noqa: E402
from studio.widgets.wizard.common import PAGE_ATTRIBUTES, PAGE_BACKEND, PAGE_GRID, PAGE_RESULTS, PAGE_RUN  # noqa: E402
from studio.widgets.wizard.wizard import TrainingWizard  # noqa: E402
from studio.workers import JobRunner  # noqa: E402

from tests.support.common import harmonic_tone  # noqa: E402
from tests.support.qt_fixtures import isolated_settings, qt_leak_check, qt_leak_guard  # noqa: E402,F401  (fail on Qt leaks)

RUN_TIMEOUT_MS = 180_000
TINY_MINUTES = 0.3
TINY_SAE = "x4-l1_0.02"


@pytest.fixture(scope="module")
def reference_build(tmp_path_factory) -> Workspace:
    """The tiny corpus built directly by the library, as ``audiosae build`` would."""
    ws = Workspace.create(tmp_path_factory.mktemp("reference") / "ws", "mel")
    build_corpus(ws, builtin_sources("tones", minutes=TINY_MINUTES), device="cpu", crepe_model="tiny")
    return ws


@pytest.fixture
def runner():
    jobs = JobRunner()
    yield jobs
    assert jobs.shutdown(), "a wizard job did not stop"
    assert jobs.active == []


@pytest.fixture
def settings(tmp_path) -> StudioSettings:
    s = StudioSettings(tmp_path / "settings.ini")
    s.compute_device = "cpu"
    return s


@pytest.fixture
def wizard(qtbot, runner, settings):
    wiz = TrainingWizard(runner, settings)
    qtbot.addWidget(wiz)
    wiz.show()
    yield wiz
    wiz.close()


def click_next(wiz: TrainingWizard) -> None:
    button = wiz.button(QWizard.WizardButton.NextButton)
    assert button.isEnabled(), f"Next is disabled on page {wiz.currentId()}"
    button.click()


def drive_to_run(wiz: TrainingWizard, workspace: Path) -> None:
    """Steps 1-4 for the tiny job: builtin tones 0.3 min, mel, 4x x 0.02, 2 epochs, batch 256."""
    wiz.audio_page.use_builtin("tones", TINY_MINUTES)
    wiz.setField("workspace", str(workspace))
    click_next(wiz)
    assert wiz.currentId() == PAGE_BACKEND
    wiz.backend_page.select_backend("mel")
    wiz.setField("device", "cpu")
    click_next(wiz)
    assert wiz.currentId() == PAGE_ATTRIBUTES
    wiz.setField("crepe_model", "tiny")
    click_next(wiz)
    assert wiz.currentId() == PAGE_GRID
    wiz.grid_page.set_widths([4])
    wiz.setField("l1s", "0.02")
    wiz.setField("epochs", 2)
    wiz.setField("batch_size", 256)
    click_next(wiz)
    assert wiz.currentId() == PAGE_RUN


def write_tone(path: Path, midi: float, seconds: float = 1.0, sample_rate: int = 16000) -> None:
    sf.write(path, harmonic_tone(midi, seconds, sample_rate), sample_rate)


def test_end_to_end_tiny_run(qtbot, wizard, tmp_path):
    workspace = tmp_path / "ws"
    drive_to_run(wizard, workspace)
    run = wizard.run_page
    qtbot.waitUntil(lambda: run.state in ("done", "failed"), timeout=RUN_TIMEOUT_MS)
    assert run.state == "done", run.error
    assert wizard.button(QWizard.WizardButton.BackButton).isEnabled()
    steps, loss = run.curves.series(TINY_SAE, "loss")
    assert len(steps) >= 1 and np.all(np.isfinite(loss)) and np.all(np.diff(steps) > 0)
    assert "corpus complete" in run.log_view.toPlainText()

    click_next(wizard)
    assert wizard.currentId() == PAGE_RESULTS
    table = wizard.results_page.table
    assert table.rowCount() == 3  # one SAE, the raw-latent baseline, chance
    assert table.item(0, 0).text() == TINY_SAE
    assert table.item(1, 0).text().startswith("raw latent") and table.item(2, 0).text().startswith("chance")
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    for c, header in enumerate(headers):
        if header.endswith("acc."):
            for r in range(3):
                value = float(table.item(r, c).text())
                assert 0.0 <= value <= 1.0
    assert int(table.item(0, headers.index("Width")).text()) == 4 * 128
    assert 0.0 <= float(table.item(0, headers.index("Sparsity")).text()) <= 1.0
    assert wizard.results_page.selected_sae() == TINY_SAE

    with qtbot.waitSignal(wizard.workspace_ready, timeout=5000) as blocker:
        wizard.button(QWizard.WizardButton.FinishButton).click()
    assert blocker.args == [str(workspace.resolve()), TINY_SAE]
    ws = Workspace.open(workspace)
    assert ws.sae_names() == [TINY_SAE]
    assert ws.manifest().complete


def test_cancel_then_resume_equals_a_normal_build(qtbot, wizard, tmp_path, reference_build):
    workspace = tmp_path / "ws"
    drive_to_run(wizard, workspace)
    run = wizard.run_page
    assert run.state == "running" and run.job is not None
    assert not wizard.button(QWizard.WizardButton.BackButton).isEnabled()  # no going back mid-run
    stopped: list[str] = []

    def stop_once(event) -> None:
        if not stopped:
            stopped.append(event.stage)
            run.stop_button.click()

    run.job.progress.connect(stop_once)
    qtbot.waitUntil(lambda: run.state in ("cancelled", "done", "failed"), timeout=RUN_TIMEOUT_MS)
    assert run.state == "cancelled", run.error
    assert stopped == ["build"]
    assert run.resume_button.isEnabled() and not run.stop_button.isEnabled()
    assert "Resume" in run.state_label.text()
    assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()
    assert not Workspace.open(workspace).manifest().complete

    run.resume_button.click()
    qtbot.waitUntil(lambda: run.state in ("done", "failed", "cancelled"), timeout=RUN_TIMEOUT_MS)
    assert run.state == "done", run.error
    assert wizard.button(QWizard.WizardButton.NextButton).isEnabled()

    resumed, reference = Workspace.open(workspace).manifest(), reference_build.manifest()
    assert resumed.complete
    assert {k: (v.split, v.n_frames, v.shard) for k, v in resumed.sources.items()} == \
        {k: (v.split, v.n_frames, v.shard) for k, v in reference.sources.items()}
    assert resumed.shards == reference.shards
    for shard in reference.shards:
        got, _ = read_shard(workspace / "corpus" / shard["file"])
        want, _ = read_shard(reference_build.corpus_dir / shard["file"])
        assert torch.equal(got["latents"], want["latents"])
        for column in ("midi", "loudness_db", "centroid_hz"):
            assert torch.allclose(got[column], want[column], atol=1e-4, equal_nan=True), column
    assert Workspace.open(workspace).attribute_spec.timbre_edges.tolist() == \
        reference_build.attribute_spec.timbre_edges.tolist()


def test_bad_audio_files_are_listed_as_skipped(qtbot, wizard, tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    write_tone(folder / "a.wav", 57, seconds=1.0)
    write_tone(folder / "b.flac", 64, seconds=2.0)
    (folder / "broken.wav").write_bytes(b"this is not audio" * 20)
    (folder / "empty.wav").write_bytes(b"")
    page = wizard.audio_page

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    with warnings.catch_warnings():  # PySide marks the only QDragEnterEvent constructor deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(QPointF(20, 20).toPoint(), Qt.DropAction.CopyAction, mime,
                                Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    page.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(page.scan_done, timeout=20_000):
        page.dropEvent(drop)
    assert sorted(Path(p).name for p in page.usable_files()) == ["a.wav", "b.flac"]
    assert page.file_tree.topLevelItemCount() == 2
    assert "2 file(s), 3 s in total" in page.files_summary.text()
    skipped = {Path(line.split(": ", 1)[0]).name: line for line in page.skipped_problems()}
    assert set(skipped) == {"broken.wav", "empty.wav"}
    assert "not a readable audio file" in skipped["broken.wav"]
    assert "file is empty" in skipped["empty.wav"]
    shown = [page.skipped_list.item(i).text() for i in range(page.skipped_list.count())]
    assert sorted(shown) == sorted(skipped.values())
    assert not page.skipped_list.isHidden()

    choice = page.audio_choice()
    assert choice.n_sources == 2 and math.isclose(choice.seconds, 3.0, abs_tol=0.01)
    assert len(choice.problems) == 2  # recorded in the manifest's skipped list by the build
    wizard.setField("workspace", str(tmp_path / "ws"))
    assert wizard.button(QWizard.WizardButton.NextButton).isEnabled()
    wizard.setField("workspace", str(folder))  # not empty and not a workspace
    assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()
    assert "not empty" in page.message.text()


def test_backend_page_shows_download_sizes(wizard, tmp_path):
    wizard.audio_page.use_builtin("tones", TINY_MINUTES)
    wizard.setField("workspace", str(tmp_path / "ws"))
    click_next(wizard)
    page = wizard.backend_page
    table = page.table
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    rows = {table.item(r, 0).text(): r for r in range(table.rowCount())}
    download = headers.index("Download")
    assert table.item(rows["encodec-24k"], download).text() == "93 MB"
    assert table.item(rows["mel"], download).text() == "built in"
    assert table.item(rows["mel"], headers.index("Dim")).text() == "128"
    assert table.item(rows["encodec-24k"], headers.index("Frames/s")).text() == "75.0"
    assert [page.device_combo.itemText(i) for i in range(page.device_combo.count())][0] == "auto"
    assert page.device() == "cpu"  # from settings.compute_device

    page.select_backend("encodec-24k")
    assert "93 MB" in page.description.text()
    wizard.setField("weights", str(tmp_path / "missing.th"))
    assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()
    assert "weights file not found" in page.message.text()
    weights = tmp_path / "encodec.th"
    weights.write_bytes(b"x")
    wizard.setField("weights", str(weights))
    assert wizard.button(QWizard.WizardButton.NextButton).isEnabled()
    assert page.backend_options() == {"weights": str(weights.resolve())}


def test_attribute_preview_and_time_estimate(qtbot, wizard, tmp_path):
    wizard.audio_page.use_builtin("tones", TINY_MINUTES)
    wizard.setField("workspace", str(tmp_path / "ws"))
    click_next(wizard)
    wizard.backend_page.select_backend("mel")
    page = wizard.attributes_page
    with qtbot.waitSignal(page.preview_ready, timeout=60_000):
        click_next(wizard)
    preview = page.preview
    assert [len(preview.counts[a]) for a in ("pitch", "loudness", "timbre")] == [66, 20, 20]
    assert all(int(preview.counts[a].sum()) == preview.n_frames for a in preview.counts)
    assert preview.n_sources == 2 and preview.n_frames > 1000
    assert preview.spec.timbre_range_source.startswith("corpus")
    assert int(preview.counts["pitch"][1:].sum()) > preview.n_frames // 2  # tones are mostly voiced
    assert "edges -60, -57" in page.edges_labels["loudness"].text()

    grid = wizard.grid_page
    with qtbot.waitSignal(grid.estimate_ready, timeout=60_000):
        click_next(wizard)
    assert grid.estimate_seconds is not None
    assert math.isfinite(grid.estimate_seconds) and grid.estimate_seconds > 0
    first = grid.estimate_seconds
    assert grid.estimate_label.text().startswith(("about", "under a minute"))
    assert "estimate" in grid.estimate_detail.text()
    with qtbot.waitSignal(grid.estimate_ready, timeout=60_000):
        grid.set_widths([*DEFAULT_EXPANSIONS, 2 * max(DEFAULT_EXPANSIONS)])  # a new width is timed, the rest cached
    assert grid.estimate_seconds > first
    wizard.setField("l1s", "0.02, abc")
    assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()
    assert "'abc' is not a number" in grid.message.text()
