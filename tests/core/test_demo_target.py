"""``audiosae demo`` steers toward A4, or toward the nearest note its pitch probe was trained on
(a short corpus may hold no A4; steering toward an unseen class is refused)."""

from __future__ import annotations

import types

import audiosae.probes as probes
import audiosae.report as report
from audiosae.attributes import AttributeSpec
from audiosae.workflows.demo import demo_target


def _workspace(monkeypatch, trained: list[int]):
    spec = AttributeSpec()
    fake_probes = types.SimpleNamespace(trained_classes=lambda attr: trained)
    monkeypatch.setattr(probes.ProbeSet, "load", classmethod(lambda cls, path, **kw: fake_probes))
    monkeypatch.setattr(report, "best_sae", lambda ws, attribute="pitch": "x4")
    return types.SimpleNamespace(attribute_spec=spec, probe_dir=lambda name: f"/nowhere/{name}"), spec


def test_demo_steers_toward_a4_when_the_probe_saw_it(monkeypatch):
    ws, _ = _workspace(monkeypatch, [0, 30, AttributeSpec().parse_target("pitch", "A4"), 50])
    assert demo_target(ws) == "A4"


def test_demo_steers_toward_the_nearest_trained_note_otherwise(monkeypatch):
    a4 = AttributeSpec().parse_target("pitch", "A4")
    ws, spec = _workspace(monkeypatch, [0, a4 - 5, a4 - 1, a4 + 3])
    assert demo_target(ws) == spec.class_names("pitch")[a4 - 1] == "G#4"
    ws, spec = _workspace(monkeypatch, [0])  # nothing voiced: A4, and steering says why it cannot
    assert demo_target(ws) == "A4"
