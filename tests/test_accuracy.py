"""Top-1 accuracy of the offline lite0 weights with the documented preprocessing (docs: shared/docs/PLATFORM.md).

The reference numbers were measured with the same preprocessing (bicubic resize of the short side to 256, center
crop 224, mean = std = 0.5): 241/300 on `imagenet-val-dev`, 132/146 on `flickr-ccby-dev`. A drop means the weight
mapping, the preprocessing or the image decoding changed.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from teaching.images import load_image
from teaching.models import load_backbone

BATCH = 50


def top1(backbone: str, folder: Path) -> tuple[int, int]:
    """(correct, total) over folder/labels.csv (columns file, imagenet_index; images in folder/images)."""
    with (folder / "labels.csv").open(newline="", encoding="utf-8") as f:
        rows = [(row["file"], int(row["imagenet_index"])) for row in csv.DictReader(f)]
    bb = load_backbone(backbone, device="cpu")
    correct = 0
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        x = torch.cat([bb.preprocess(load_image(folder / "images" / name))[0] for name, _ in batch])  # (B, 3, S, S)
        with torch.no_grad():
            predicted = bb.model(x).argmax(1)
        correct += int((predicted == torch.tensor([label for _, label in batch])).sum())
    return correct, len(rows)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dataset", "expected", "floor"),
    [("imagenet-val-dev", (241, 300), 0.79), ("flickr-ccby-dev", (132, 146), 0.89)],
)
def test_lite0_top1(fixtures_dir, dataset, expected, floor):
    correct, total = top1("efficientnet_lite0", fixtures_dir / dataset)
    print(f"efficientnet_lite0 top-1 on {dataset}: {correct}/{total} = {correct / total:.1%} (measured {expected})")
    assert total == expected[1]
    assert correct / total >= floor
