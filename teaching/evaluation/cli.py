"""`python -m teaching evaluate`: the command line, the run's settings (config.json) and the run itself."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from teaching import metrics
from teaching.cams import find_layer
from teaching.distributed import add_engine_options
from teaching.errors import TeachingError
from teaching.evaluation.data import EvaluationError, read_labelled, read_species
from teaching.evaluation.peers import peer_variants
from teaching.evaluation.run import Settings, evaluate
from teaching.evaluation.summary import BOOTSTRAP, write_summary
from teaching.evaluation.variants import DEFAULT_METHODS, build_variants, parse_methods
from teaching.models import BACKBONES, DEFAULT_BACKBONE, load_backbone


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m teaching evaluate`."""
    p = argparse.ArgumentParser(
        prog="python -m teaching evaluate",
        description="Faithfulness, localisation and teaching metrics of CAM methods on labelled photos.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder of photos named in --labels")
    src.add_argument("--species", type=Path, help="species folder: class folders and SOURCES.tsv")
    p.add_argument("--labels", type=Path, help="CSV file,imagenet_index (with --images)")
    p.add_argument("--boxes", type=Path, help="CSV file,xmin,ymin,xmax,ymax in image pixels (pointing game)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=list(BACKBONES))
    p.add_argument("--layer", default="", help="target layer (default: the backbone's)")
    p.add_argument("--methods", default=DEFAULT_METHODS, help="comma list; '+pair' / '+group' add a contrast")
    p.add_argument("--peers", action="store_true", help="also pytorch-grad-cam and TorchCAM (test-only deps)")
    p.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    p.add_argument("--out", type=Path, required=True, help="output folder (rows.csv, summary.md, figures/)")
    p.add_argument("--batch-size", type=int, default=metrics.FORWARD_BATCH, help="inputs per forward pass")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch during the run (0: torch's default; 1 is faster on a busy machine)",
    )
    p.add_argument("--steps", type=int, default=metrics.DELETION_STEPS, help="deletion/insertion steps")
    p.add_argument("--sanity-levels", type=int, default=4, help="units randomised, cumulative from the top")
    p.add_argument("--bootstrap", type=int, default=BOOTSTRAP, help="bootstrap resamples of the intervals")
    add_engine_options(p)
    return p


def check_config(out: Path, config: dict[str, Any]) -> None:
    """Write config.json, or check that a resumed run uses the same settings."""
    path = out / "config.json"
    if path.is_file():
        old = json.loads(path.read_text())
        changed = [k for k in config if k != "images" and old.get(k) != config[k]]
        if changed:
            raise EvaluationError(
                f"{out} holds a run with other settings ({', '.join(changed)}); use another --out or the same settings"
            )
    path.write_text(json.dumps(config, indent=2) + "\n")


def run(args: argparse.Namespace, log: Callable[[str], None]) -> str:
    """Evaluate, append the new rows, summarise; returns the summary markdown."""
    if args.images is not None:
        if args.labels is None:
            raise EvaluationError("--images needs --labels (CSV file,imagenet_index)")
        samples = read_labelled(args.images, args.labels, args.boxes)
        dataset = str(args.images)
    else:
        samples = read_species(args.species)
        dataset = f"{args.species} (species groups)"
    if args.limit > 0:
        samples = samples[: args.limit]
    if not samples:
        raise EvaluationError("no photos to evaluate")
    torch.manual_seed(args.seed)
    bb = load_backbone(args.backbone, device=args.device)
    layer = args.layer or bb.spec.target_layer
    find_layer(bb.model, layer)
    methods = parse_methods(args.methods)
    if args.peers and args.engine == "ray":
        raise EvaluationError("--peers runs on the local engine only (the peers are test-only dependencies)")
    peers = peer_variants(methods, layer, bb.spec.classifier, log) if args.peers else {}
    fns = build_variants(methods, bb, layer, peers)
    randomised = metrics.cascading_randomisation(bb.model, args.sanity_levels, args.seed)
    config = {
        "dataset": dataset,
        "backbone": bb.name,
        "layer": layer,
        "steps": args.steps,
        "seed": args.seed,
        "sanity_levels": len(randomised),
        "sanity_units": [units[-1] for units, _ in randomised],
        "images": len(samples),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    check_config(args.out, config)
    path = args.out / "rows.csv"
    settings = Settings(bb, args.steps, args.seed, args.batch_size, [m for _, m in randomised])
    runner = None
    if args.engine == "ray":
        from teaching.evaluation.distributed import ray_runner

        runner = ray_runner(args, layer, log)
    rows = evaluate(samples, fns, settings, path, log, runner)
    markdown = write_summary(args.out, rows, config, args.seed, args.bootstrap)
    log(f"wrote {path}, {args.out / 'summary.md'} and {args.out / 'figures'}/")
    return markdown


def main(argv: list[str] | None = None) -> int:
    """`python -m teaching evaluate ...`; returns the exit status (2 on a user error)."""
    args = parser().parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    threads = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        print(run(args, log))
    except TeachingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)
    return 0
