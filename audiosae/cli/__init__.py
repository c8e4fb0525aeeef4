"""``audiosae``: the command line.  Every long command shows progress; ``--json`` prints a
machine-readable summary on stdout; exit status 0 = ok, 1 = error (one-line message, no
traceback unless ``--debug``), 2 = usage error.

The CLI only parses arguments, builds the workflows' typed requests (``audiosae.workflows``),
calls them and prints what comes back.  One module per command group, each with its parsers
(``add_<command>(sub, common)``) and handlers (``run_<command>(args, *, progress, cancel)``):
``corpus`` (build, label, backends), ``training`` (train, report, demo), ``steering`` (steer,
steer-eval), ``tracing`` (trace, trace-report), ``exporting`` (export-sae, import-sae,
export-lanes, describe); ``main`` puts them together; ``options`` holds the shared option types;
``parity`` is ``python -m audiosae.parity``'s command line.
"""

from __future__ import annotations

from .main import EXIT_ERROR, EXIT_OK, EXIT_USAGE, build_parser, main
from .progress import TqdmProgress

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_USAGE", "TqdmProgress", "build_parser", "main"]
