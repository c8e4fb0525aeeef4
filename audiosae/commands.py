"""Former home of the CLI's jobs; they are ``audiosae.workflows`` (typed requests) and
``audiosae.cli`` (arguments -> requests, printing) now.  These names stay until the tests that
import them move (issue 13); new code imports from those packages."""

from __future__ import annotations

from .cli.training import run_demo as cmd_demo, train_settings_from_args  # noqa: F401
from .workflows.demo import demo_target as _demo_target  # noqa: F401
