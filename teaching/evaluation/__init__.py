"""`python -m teaching evaluate`: the metrics of `teaching.metrics` for CAM methods on labelled photos.

Two kinds of input:
    --images DIR --labels CSV [--boxes CSV]   labels: file,imagenet_index; boxes: file,xmin,ymin,xmax,ymax (pixels)
    --species DIR                             class folders + SOURCES.tsv (file, imagenet_index); the photos of
                                              the galleries' look-alike groups, boxes from
                                              boxes/collected_images_boxes.csv when present

For each photo and each method variant (`gradcam`, `cam`, `gradcam+pair`, `gradcam+group`, ...; with --peers also
pytorch-grad-cam's and TorchCAM's implementations of the same methods, and always two reference maps, `random`
and `centre`), one row of rows.csv in OUT; at the end summary.md (means with seeded 95% bootstrap intervals) and
one bar chart per metric. See docs/EVALUATION.md.

    data.py      the photos and their labels, boxes and species groups
    variants.py  the method variants and the functions that make their maps
    peers.py     the peers' adapters (test-only dependencies, imported when asked for)
    run.py       the work on each photo and the resumable CSV of rows
    summary.py   bootstrap intervals, the markdown table and the charts
    cli.py       the command line
"""

from teaching.evaluation.cli import main

__all__ = ["main"]
