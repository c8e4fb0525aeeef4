"""Entry point of the desktop app (``audiosae-studio``).

The explorer, the control-vector audition and the training wizard are the subject of the
studio issue and are not built yet; until then this entry point says so plainly instead of
opening an empty window.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("audiosae-studio: the desktop app is not built yet in this version; "
          "use the command line meanwhile (`audiosae demo`, `audiosae --help`).", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
