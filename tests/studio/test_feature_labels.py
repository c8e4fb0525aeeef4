"""Issue 14 in the studio: the inspector's labels panel (studio.models.feature_labels +
studio.widgets.feature_labels): labels computed in a job when absent, read from the cache,
the search box finding features by label and selecting them, the heatmap's label per row."""

from __future__ import annotations

import types

import pytest

pytest.importorskip("pytestqt")

from audiosae.describe import description_path, load_description  # noqa: E402
from audiosae.sae import SparseAutoencoder  # noqa: E402
from studio.state import ExplorerState  # noqa: E402
from studio.widgets.feature_labels import FeatureLabelsPanel  # noqa: E402
from studio.workers import JobRunner  # noqa: E402
from tests.support.labelled_corpus import (BRASS_FEATURE, MINOR_FEATURE, NOTE_FEATURE, ONSET_FEATURE,  # noqa: E402
                                           make_labelled_workspace)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws, _ = make_labelled_workspace(tmp_path_factory.mktemp("labels") / "ws")
    return ws


def fake_models(ws):
    """What the labels model reads of LoadedModels: the workspace and the SAE's name / width."""
    return types.SimpleNamespace(workspace=ws, sae=SparseAutoencoder.load(ws.sae_dir("labelled"), device="cpu"))


@pytest.fixture
def panel(qtbot, workspace):
    state = ExplorerState()
    runner = JobRunner()
    widget = FeatureLabelsPanel(state, runner)
    qtbot.addWidget(widget)
    widget.resize(420, 600)
    widget.show()
    yield widget, state
    widget.model.cancel()
    runner.shutdown() if hasattr(runner, "shutdown") else None


def test_labels_are_computed_in_a_job_then_cached_and_the_search_selects_features(panel, qtbot, workspace):
    widget, state = panel
    m = widget.model
    description_path(workspace, "labelled").unlink(missing_ok=True)
    state.set_models(fake_models(workspace))
    assert m.description is None and widget.compute_button.isVisible()
    assert "not labelled yet" in widget.headline.text()
    # the search before labelling says why it finds nothing
    assert m.search("onset") == [] and "label the features first" in m.search_message
    with qtbot.waitSignal(m.description_ready, timeout=120_000):
        widget.compute_button.click()
    qtbot.waitUntil(lambda: not m.running, timeout=10_000)
    assert load_description(workspace, "labelled") is not None        # cached beside the SAE
    assert not widget.compute_button.isVisible() and not widget.progress_bar.isVisible()
    # the search box: typed text + Enter, the hits table, a click selects the feature
    for text, feature in (("onset", ONSET_FEATURE), ("brass", BRASS_FEATURE), ("minor", MINOR_FEATURE),
                          ("C#4", NOTE_FEATURE)):
        widget.search_box.setText(text)
        widget.search_box.returnPressed.emit()
        assert widget.hit_table.rowCount() >= 1 and int(widget.hit_table.item(0, 0).text()) == feature, text
        with qtbot.waitSignal(state.feature_selected, timeout=2000) as sel:
            widget.hit_table.cellClicked.emit(0, 1)
        assert sel.args[0] == feature
        # the inspector's card now opens on that feature's labels
        assert widget.label_table.rowCount() >= 1
        assert widget.label_table.item(0, 1).text() == {ONSET_FEATURE: "onset", BRASS_FEATURE: "brass",
                                                        MINOR_FEATURE: "Am", NOTE_FEATURE: "C#4"}[feature]
        assert f"feature {feature} is" in widget.headline.text()
    widget.search_box.setText("Bm")
    widget.search_box.returnPressed.emit()
    assert widget.hit_table.rowCount() == 0 and "no feature is labelled" in widget.search_status.text()
    # the heatmap's label per row: every live feature's best label
    rows = m.row_labels()
    assert rows[ONSET_FEATURE] == "onset onset" and rows[BRASS_FEATURE] == "instrument brass" and rows[-1] == ""


def test_a_second_session_reads_the_cache_without_a_job(panel, workspace):
    widget, state = panel
    m = widget.model
    if load_description(workspace, "labelled") is None:
        pytest.skip("needs the cache of the previous test")
    state.set_models(fake_models(workspace))
    assert m.description is not None and not m.running          # read at once, no job
    state.select_feature(BRASS_FEATURE, 0)
    assert widget.label_table.item(0, 0).text() == "instrument"
    assert "boost check: not measured" in widget.loop_label.text()
    assert widget.loop_button.isVisible()


def test_cancelling_the_labelling_job_leaves_no_cache(panel, qtbot, workspace, monkeypatch):
    import audiosae.describe as describe

    widget, state = panel
    m = widget.model
    description_path(workspace, "labelled").unlink(missing_ok=True)
    state.set_models(fake_models(workspace))
    real = describe._describe

    def slow(*args, **kwargs):
        import time
        cancel = args[6]
        for _ in range(200):            # until cancelled
            cancel.raise_if_cancelled()
            time.sleep(0.02)
        return real(*args, **kwargs)

    monkeypatch.setattr(describe, "_describe", slow)
    widget.compute_button.click()
    qtbot.waitUntil(lambda: m.job.handle is not None, timeout=5000)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not m.running, timeout=10_000)
    assert m.failed == "cancelled" and m.description is None
    assert not description_path(workspace, "labelled").exists()
    assert "cancelled" in widget.headline.text() and widget.compute_button.isVisible()


def test_heatmap_groups_and_marks_rows_by_label(qtbot, workspace):
    import numpy as np
    import pyqtgraph as pg

    from studio.layers.feature_rows import row_order
    from studio.widgets.heatmap import HeatmapPane, label_colour

    from audiosae.describe import describe_features

    if load_description(workspace, "labelled") is None:
        describe_features(workspace, "labelled")
    state = ExplorerState()
    panel = FeatureLabelsPanel(state, JobRunner())
    qtbot.addWidget(panel)
    state.set_models(fake_models(workspace))
    labels = state.feature_labels
    assert labels == panel.model.row_labels() and state.row_labels() is None     # not grouping yet
    state.set_group_by_label(True)
    assert state.row_labels() == labels
    # rows as the timeline orders them: by score, grouped by label through the layers' row_order
    f = np.zeros((50, len(labels)), np.float32)
    scores = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 0.0])
    f[:] = scores
    pane = HeatmapPane()
    widget = pg.GraphicsLayoutWidget()
    qtbot.addWidget(widget)
    widget.addItem(pane.plot)
    pane.set_clip(np.arange(50) / 75.0, 50 / 75.0, (0.0, 6.0))
    pane.set_features(f)
    mixed = ["onset onset", "chord Am", "onset onset", "chord Am", "", ""]   # two groups, interleaved by score
    pane.set_row_labels(mixed)
    pane.show_rows(row_order(scores, 5, mixed))
    assert pane.row_features.tolist() == [0, 2, 1, 3, 4]          # grouped, each group by score
    assert [(lab, a, b) for lab, a, b in pane.label_runs] == [("onset onset", 0, 2), ("chord Am", 2, 4), (None, 4, 5)]
    tags = [i for i in pane._label_items if isinstance(i, pg.TextItem)]
    assert [t.toPlainText() for t in tags] == ["onset onset ×2", "chord Am ×2"]
    assert pane._strip is not None and list(pane._strip.opts["y0"]) == [0, 2]     # one strip per labelled run
    assert label_colour("onset onset") != label_colour("chord Am")
    assert "(chord Am)" in pane.describe(0.1, 2.5)
    pane.set_row_labels(None)
    assert pane._label_items == [] and pane.label_runs == []


def test_the_card_shows_the_boost_check_of_the_feature(panel, workspace):
    from audiosae.describe import describe_features
    from audiosae.feature_index import sae_fingerprint
    from audiosae.feature_loop import LOOP_KIND, loop_path
    from audiosae.storage import SCHEMA_VERSION, atomic_write_json

    widget, state = panel
    if load_description(workspace, "labelled") is None:
        describe_features(workspace, "labelled")
    entry = {"feature": MINOR_FEATURE, "attribute": "chord", "class": "Am", "class_index": 13, "auroc": 1.0,
             "before": 0.1, "after": 0.55, "delta": 0.45, "boost": 2.0}
    other = dict(entry, feature=BRASS_FEATURE, attribute="onset", **{"class": "onset"}, before=0.3, after=0.2)
    atomic_write_json(loop_path(workspace, "labelled"), {
        "schema_version": SCHEMA_VERSION, "kind": LOOP_KIND, "sae": "labelled",
        "sae_fingerprint": sae_fingerprint(workspace, "labelled"), "features": [entry, other], "attributes": {}})
    try:
        state.set_models(fake_models(workspace))
        assert widget.model.loop is not None and not widget.loop_button.isVisible()
        state.select_feature(MINOR_FEATURE, 0)
        assert widget.loop_label.text() == ("boosting it (2.00 added to f) moves it toward the label: chord Am "
                                            "on 10 % → 55 % of the frames")
        state.select_feature(BRASS_FEATURE, 0)
        assert "does not move it toward the label: onset onset on 30 % → 20 %" in widget.loop_label.text()
        state.select_feature(ONSET_FEATURE, 0)
        assert "not among the top-labelled ones measured" in widget.loop_label.text()
    finally:
        loop_path(workspace, "labelled").unlink(missing_ok=True)
