"""``python -m earmark``: the ``earmark`` command, for when the script is not on PATH."""

import sys

from earmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
