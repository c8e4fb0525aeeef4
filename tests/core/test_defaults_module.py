"""One defaults module (issue 13): the demo's grid, minutes, alpha and workspace, describe's
--top/--threads and the build's backend live in ``audiosae.defaults``; the workflows' requests
and the CLI's options read them from there (no literal copied into either)."""

from __future__ import annotations

from pathlib import Path

from audiosae import defaults as D
from audiosae.cli import build_parser


def test_cli_and_workflow_defaults_are_the_defaults_module():
    from audiosae.workflows import demo, describe

    parser = build_parser()
    d = parser.parse_args(["demo"])
    assert d.minutes == D.DEMO_MINUTES == demo.DemoRequest().minutes
    assert d.workspace == Path(D.DEMO_WORKSPACE) == demo.DemoRequest().workspace
    ds = parser.parse_args(["describe", "WS", "--sae", "x4"])
    req = describe.DescribeRequest(workspace=Path("WS"), sae="x4")
    assert (ds.top, ds.threads) == (D.DESCRIBE_TOP, D.DESCRIBE_THREADS) == (req.top, req.threads)
    b = parser.parse_args(["build", "WS", "--builtin", "tones"])
    assert b.backend == D.DEFAULT_BACKEND
    # the old import places still answer, with the same objects
    assert (demo.DEMO_GRID, demo.DEMO_ALPHA, demo.DEMO_MINUTES) == (D.DEMO_GRID, D.DEMO_ALPHA, D.DEMO_MINUTES)
    assert (describe.DESCRIBE_TOP, describe.DESCRIBE_THREADS) == (D.DESCRIBE_TOP, D.DESCRIBE_THREADS)


def test_the_cli_reads_the_module_when_it_builds_its_parser(monkeypatch):
    """A changed value in ``audiosae.defaults`` reaches the options and their help (a literal
    copied into the CLI would not follow)."""
    monkeypatch.setattr(D, "DESCRIBE_TOP", 7)
    monkeypatch.setattr(D, "DESCRIBE_THREADS", 3)
    monkeypatch.setattr(D, "DEMO_MINUTES", 2.5)
    monkeypatch.setattr(D, "DEFAULT_BACKEND", "encodec")
    parser = build_parser()
    ds = parser.parse_args(["describe", "WS", "--sae", "x4"])
    assert (ds.top, ds.threads) == (7, 3)
    assert parser.parse_args(["demo"]).minutes == 2.5
    assert parser.parse_args(["build", "WS", "--builtin", "tones"]).backend == "encodec"
    sub = next(a for a in parser._actions if a.dest == "command" or getattr(a, "choices", None)
               and "describe" in (a.choices or {}))
    help_text = sub.choices["describe"].format_help()
    assert "(default 7)" in help_text and "(default 3:" in help_text
