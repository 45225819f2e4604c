"""``python -m adaperceiver``: the same as the ``adaperceiver`` command (``adaperceiver.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
