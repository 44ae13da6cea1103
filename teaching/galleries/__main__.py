"""``python -m teaching.galleries download [--cache DIR] [--group ID]`` (see `teaching.galleries.cli`)."""

import sys

from teaching.galleries.cli import main

if __name__ == "__main__":
    sys.exit(main())
