"""`python -m teaching`: the command line of `teaching.cli`."""

import os

# torch reads this at its first allocation: CPU tensors of 2 MB and more then sit on transparent huge pages (Linux),
# which halves the time to write large fresh outputs such as 1000 upsampled maps (docs/PERFORMANCE.md)
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from teaching.cli import main

raise SystemExit(main())
