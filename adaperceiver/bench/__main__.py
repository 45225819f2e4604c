"""``python -m adaperceiver.bench``: the benchmark of ``adaperceiver.bench.cli``."""

from .cli import main

if __name__ == "__main__":
    main()
