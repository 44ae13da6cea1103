"""The Explore page's time per photo without Gradio (`service.explore`, Grad-CAM, every species photo).

    python bench/page_time.py [--repeats 2] [--fixtures ../shared/fixtures]

Prints the median ms per photo over the repeats (after a warm-up of 3 photos). To compare two versions of the code
(e.g. the default input size before and after issue 13), run it alternately in two checkouts:
    for i in 1 2 3 4; do (cd ../old && python ../main/bench/page_time.py); python bench/page_time.py; done
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from teaching import service
from teaching.evaluation.data import read_species

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--fixtures", type=Path, default=FIXTURES)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    photos = read_species(args.fixtures / "species")
    for s in photos[:3]:
        service.explore(s.path, s.group, "gradcam")
    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for s in photos:
            service.explore(s.path, s.group, "gradcam")
        runs.append((time.perf_counter() - t0) / len(photos) * 1000)
    print(f"{statistics.median(runs):.1f}")


if __name__ == "__main__":
    main()
