"""`evaluate --engine ray`: the per-photo work of `run.evaluate_sample` on Ray Data actors.

Each actor rebuilds the run's settings once (backbone, variants, the randomised models of the sanity check) from
plain values, then evaluates one photo per call and returns its rows as JSON; the driver appends them to rows.csv
as they arrive (so a stopped run resumes as the local one does) and the summary is computed from the gathered rows.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from teaching import metrics
from teaching.distributed import actor_pool, start_ray
from teaching.errors import TeachingError
from teaching.evaluation.data import Sample
from teaching.evaluation.run import Runner, Settings, Todo, evaluate_sample
from teaching.evaluation.variants import Variant, build_variants, parse_methods
from teaching.models import load_backbone


def run_config(args: argparse.Namespace, layer: str) -> dict[str, Any]:
    """What an actor needs to rebuild the run's Settings and variants: plain values, no model."""
    return {
        "backbone": args.backbone,
        "device": args.device,
        "layer": layer,
        "methods": args.methods,
        "steps": args.steps,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "sanity_levels": args.sanity_levels,
    }


class EvaluateActor:
    """Evaluates photos; the backbone, the variants and the randomised models are made once per actor."""

    def __init__(self, config: dict[str, Any], samples: Sequence[Sample]) -> None:
        torch.set_num_threads(1)  # one CPU per actor (Ray reserves one)
        torch.manual_seed(config["seed"])  # as the local run seeds before it loads the model
        bb = load_backbone(config["backbone"], device=config["device"])
        self.fns = build_variants(parse_methods(config["methods"]), bb, config["layer"], {})
        randomised = metrics.cascading_randomisation(bb.model, config["sanity_levels"], config["seed"])
        self.st = Settings(bb, config["steps"], config["seed"], config["batch_size"], [m for _, m in randomised])
        self.samples = list(samples)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
        """For each photo (`order` into the samples, `pending` variants as JSON): its rows as JSON, or its error."""
        out: dict[str, list[str]] = {"rows": [], "error": []}
        # autograd stays on whatever mode the caller set (Ray's inference examples use torch.inference_mode)
        with torch.inference_mode(False), torch.enable_grad():
            for order, pending in zip(batch["order"], batch["pending"], strict=True):
                sample = self.samples[int(order)]
                variants = [Variant(impl, method, contrast) for impl, method, contrast in json.loads(str(pending))]
                try:
                    rows = list(evaluate_sample(sample, variants, self.fns, self.st))
                except TeachingError as exc:
                    out["rows"].append("[]")
                    out["error"].append(f"{sample.name}: {exc}")
                    continue
                out["rows"].append(json.dumps(rows))
                out["error"].append("")
        return out


def ray_runner(args: argparse.Namespace, layer: str, log: Callable[[str], None]) -> Runner:
    """A `run.Runner` that evaluates the photos on Ray actors (--address, --workers), one photo per call."""

    def run(todo: Todo) -> Iterator[Iterable[dict[str, Any]]]:
        if not todo:
            return
        ray = start_ray(args.address)
        samples = [replace(s, path=s.path.resolve()) for s, _ in todo]  # the actors' folder may differ from ours
        items = [
            {"order": i, "pending": json.dumps([[v.impl, v.method, v.contrast] for v in pending])}
            for i, (_, pending) in enumerate(todo)
        ]
        ds = ray.data.from_items(items).map_batches(
            EvaluateActor,
            fn_constructor_kwargs={"config": run_config(args, layer), "samples": samples},
            batch_size=1,
            batch_format="numpy",
            **actor_pool(ray, args.workers),
        )
        for r in ds.iter_rows():
            if r["error"]:
                log(f"error: {r['error']} (no rows; a later run tries it again)")
            yield [{k: _nan(v) for k, v in row.items()} for row in json.loads(r["rows"])]

    return run


def _nan(value: Any) -> Any:
    """JSON gives NaN back as float('nan'); keep it so (the CSV writes it as the local run does)."""
    return math.nan if isinstance(value, float) and math.isnan(value) else value
