"""Past one machine: `explain --engine ray` on Ray Data, writing exactly the files of the local run.

The photo paths become a Ray dataset; `ExplainActor` holds the backbone (loaded once per actor, one GPU per actor
where the cluster has GPUs) and explains each batch with `teaching.api.explain_batch`, the engine call of the
local run, then writes the photo's files with `teaching.outputs.write_results`. The driver gathers one index row
per photo (the error of a photo that failed, in one line) and writes grid.png and index.csv. On a cluster, --out
must be a folder that every node can write (a shared file system).

Ray is an optional extra (`pip install "teaching[ray]"`); it is imported only here, and only when asked for.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from teaching.api import Prepared, explain_batch, prepare
from teaching.errors import TeachingError
from teaching.labels import resolve_classes
from teaching.models import load_backbone
from teaching.outputs import INDEX_COLUMNS, Settings, index_row, write_results, writing

INSTALL = 'the Ray engine needs Ray: pip install "teaching[ray]" (or "ray[data]==2.60.0")'
LOADS = 0  # backbones the actors of this process loaded (one per actor; read by the tests)


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """--engine, --address, --workers: where the per-photo work runs (shared by explain and evaluate)."""
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process; ray: Ray Data actors on this machine or a cluster (pip install 'teaching[ray]')",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="with --engine ray: the Ray cluster to join (e.g. auto, on one of its nodes); default a local Ray",
    )
    p.add_argument(
        "--workers",
        type=_count,
        metavar="N",
        help="with --engine ray: actors, each with its own model (default: the GPUs, else the CPU cores)",
    )


def _count(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def require_ray() -> Any:
    """The ray module, or a one-line TeachingError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the `data` extra: pandas, pyarrow)
    except ImportError:
        raise TeachingError(INSTALL) from None
    return ray


def start_ray(address: str | None, cpus: int | None = None) -> Any:
    """Join the cluster at `address`, or start a local Ray with `cpus` (default this machine's cores); reuse a
    running session.

    The local Ray listens on 127.0.0.1 only, without its dashboard, and keeps the workers' logs out of the
    command's output.
    """
    ray = require_ray()
    if not ray.is_initialized():
        quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        try:
            if address:
                ray.init(address=address, **quiet)
            else:
                # the workers import this very package, installed or not (a checkout's folder on their path)
                root = str(Path(__file__).resolve().parents[1])
                path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
                env = {"env_vars": {"PYTHONPATH": path}}
                ray.init(num_cpus=cpus or os.cpu_count() or 1, _node_ip_address="127.0.0.1", runtime_env=env, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise TeachingError(f"cannot start or join Ray at {address or 'this machine'}: {exc}") from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": we know
    return ray


def actor_pool(ray: Any, workers: int | None) -> dict[str, Any]:
    """The map_batches options of an actor pool: `workers` actors (default one per GPU, else one per CPU core),
    each with one GPU where the cluster has GPUs, else one CPU (and one torch thread)."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    size = workers or gpus or max(1, int(resources.get("CPU", 1)))
    options: dict[str, Any] = {"compute": ray.data.ActorPoolStrategy(size=size), "num_cpus": 1}
    if gpus:
        options["num_gpus"] = 1
    return options


def run_config(s: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """What an actor needs to rebuild the run's Settings: plain values, no model."""
    return {
        "backbone": args.backbone,
        "weights": str(Path(args.weights).resolve()) if args.weights else None,  # the actors' folder may differ
        "labels": str(Path(args.labels).resolve()) if args.labels else None,
        "device": args.device,
        "method": s.method,
        "layer": s.layer,
        "classes": s.classes,
        "top": s.top,
        "contrast": s.contrast,
        "versus": s.versus,
        "cmap": s.cmap,
        "alpha": s.alpha,
        "names": s.names,
    }


class ExplainActor:
    """Explains batches of photos and writes their files; the backbone is loaded once, when the actor starts."""

    def __init__(self, config: dict[str, Any]) -> None:
        global LOADS
        torch.set_num_threads(1)  # one CPU per actor (Ray reserves one)
        bb = load_backbone(config["backbone"], config["weights"], config["labels"], config["device"])
        LOADS += 1
        classes = resolve_classes(config["classes"], bb.labels) if config["classes"] else None
        self.settings = Settings(
            bb,
            config["method"],
            config["layer"],
            classes,
            config["top"],
            config["contrast"],
            config["versus"],
            config["cmap"],
            config["alpha"],
            names=config.get("names") or {},
        )
        self.worker = f"{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        """Index rows of the batch's photos (columns INDEX_COLUMNS, as text) plus `order`, `worker`, `loads`."""
        # Ray's batch-inference examples run the model under torch.inference_mode(); the CAMs need gradients
        # (one batched backward), so whatever mode the caller set, autograd is on here.
        with torch.inference_mode(False), torch.enable_grad():
            rows = list(self._explain(list(batch["path"]), list(batch["source"]), list(batch["folder"])))
        out: dict[str, list[Any]] = {c: [str(r.get(c, "")) for r in rows] for c in INDEX_COLUMNS}
        out["order"] = [int(i) for i in batch["order"]]
        out["worker"] = [self.worker] * len(rows)
        out["loads"] = [LOADS] * len(rows)
        return out

    def _explain(
        self, paths: Sequence[str], sources: Sequence[str], folders: Sequence[str]
    ) -> Iterator[dict[str, object]]:
        """Read (from the absolute `paths`), explain in one engine call, write; `sources` as the user named them."""
        s = self.settings
        ready: list[tuple[str, Path, Prepared]] = []
        errors: dict[str, str] = {}
        seconds: dict[str, float] = {}
        for path, source, folder in zip(paths, sources, folders, strict=True):
            t0 = time.perf_counter()
            try:
                ready.append((str(source), Path(folder), prepare(str(path), s.backbone)))
                seconds[str(source)] = time.perf_counter() - t0
            except TeachingError as exc:
                errors[str(source)] = str(exc).replace(str(path), str(source))  # the local run's message
        try:
            explanations = explain_batch([p for _, _, p in ready], **s.explain_options())
        except TeachingError as exc:  # the whole batch failed: every photo of it says why
            explanations = []
            errors.update({source: str(exc) for source, _, _ in ready})
        done = {source: (folder, e) for (source, folder, _), e in zip(ready, explanations, strict=False)}
        for source, folder in zip(map(str, sources), folders, strict=True):
            if source in errors:
                yield index_row(source, Path(folder), error=errors[source])
                continue
            where, e = done[source]
            e.timings["preprocess"] = seconds[source]  # this photo's decoding and preprocessing
            try:
                with writing(where):
                    write_results(e, source, where, s)
            except TeachingError as exc:
                yield index_row(source, where, error=str(exc))
                continue
            yield index_row(source, where, e, names=s.names)


def explain_on_ray(
    images: Sequence[str], folders: Sequence[Path], s: Settings, args: argparse.Namespace
) -> list[dict[str, object]]:
    """Explain the photos on Ray Data actors; the index rows in the order of `images` (errors included)."""
    ray = start_ray(args.address)
    items = [
        {"order": i, "path": str(Path(p).resolve()), "source": p, "folder": str(f.resolve())}
        for i, (p, f) in enumerate(zip(images, folders, strict=True))
    ]
    ds = ray.data.from_items(items).map_batches(
        ExplainActor,
        fn_constructor_kwargs={"config": run_config(s, args)},
        batch_size=args.batch_size,
        batch_format="numpy",
        **actor_pool(ray, args.workers),
    )
    rows: list[dict[str, object] | None] = [None] * len(images)
    for r in ds.iter_rows():
        i = int(r["order"])
        row: dict[str, object] = {c: r[c] for c in (*INDEX_COLUMNS, "worker", "loads")}  # index.csv: INDEX_COLUMNS
        row["image"], row["folder"] = images[i], str(folders[i])  # as the user named them, like the local run
        rows[i] = row
    missing = [images[i] for i, r in enumerate(rows) if r is None]
    if missing:
        raise TeachingError(f"Ray returned no result for {len(missing)} photos, e.g. {missing[0]}")
    return [r for r in rows if r is not None]
