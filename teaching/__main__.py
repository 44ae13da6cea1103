"""`python -m teaching`: the command line of `teaching.cli`."""

from teaching.cli import main

raise SystemExit(main())
