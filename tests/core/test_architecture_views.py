"""Issue 13's rule that views only draw: no widget under studio/widgets computes science itself.

The probes' decode, softmax, contributions and the steered features f' are the core's
(``audiosae.explore.decoding``, ``audiosae.steering``) and are called by view-models
(``studio.models``), which hand the widgets arrays.  A widget that imports one of these functions
(from anywhere) or calls a model's ``logits`` / ``predict_proba`` / ``encode`` / ``steer_features``
/ ``softmax`` breaks the rule.  (No torch in widgets is ``test_architecture.test_views_import_no_torch``.)
"""

from __future__ import annotations

import ast
import pathlib

import audiosae

REPO = pathlib.Path(audiosae.__path__[0]).parent
SCIENCE_FUNCTIONS = {"decode_classes", "decode_cost", "probe_logits", "probe_distributions", "softmax",
                     "feature_contributions", "steer_features", "steered_rows", "steer_heat_rows", "decode_job"}
SCIENCE_CALLS = {"logits", "predict_proba", "predict", "encode", "steer_features", "softmax", "log_softmax"}


def science_offenders(root: pathlib.Path, folder: str = "studio/widgets") -> dict[str, list[str]]:
    """``{relative path: sorted findings}``: science functions imported, and science methods called."""
    offenders = {}
    for path in sorted((root / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                found.update(f"import {a.name}" for a in node.names if a.name in SCIENCE_FUNCTIONS)
            elif isinstance(node, ast.Call):
                fn = node.func
                name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
                if name in SCIENCE_CALLS or name in SCIENCE_FUNCTIONS:
                    found.add(f"call {name}")
        if found:
            offenders[path.relative_to(root).as_posix()] = sorted(found)
    return offenders


def test_widgets_do_no_science():
    assert (REPO / "studio" / "widgets" / "lanes.py").is_file()   # the scan looks where the code is
    assert science_offenders(REPO) == {}


def test_the_science_check_finds_offenders(tmp_path):
    widgets = tmp_path / "studio" / "widgets"
    (widgets / "sub").mkdir(parents=True)
    (widgets / "a.py").write_text("from audiosae.explore.decoding import decode_classes\n")
    (widgets / "b.py").write_text("def f(probes, x):\n    return probes.logits(x, 'pitch').argmax(-1)\n")
    (widgets / "sub" / "c.py").write_text("def f(ctx, f):\n    from ...models.audition import steered_rows\n"
                                          "    return steered_rows(ctx, f, 1, 2.0, None)\n")
    (widgets / "d.py").write_text('"""softmax in a docstring is fine"""\nfrom ..models.steered_lanes import SteeredLanes\n')
    assert science_offenders(tmp_path) == {
        "studio/widgets/a.py": ["import decode_classes"],
        "studio/widgets/b.py": ["call logits"],
        "studio/widgets/sub/c.py": ["call steered_rows", "import steered_rows"]}
