"""Photos per second of `explain` on the local engine and on Ray Data with 1, 2, ... workers; seconds per photo of
`evaluate` (the number the cost of a 50,000-photo evaluation is worked out from, in docs/PERFORMANCE.md).

Run on demand, never from the tests:
    .venv/bin/python -m bench.bench_ray                                   # this machine: local Ray, 48 photos
    python -m bench.bench_ray --address auto --workers 4 8 --device cuda  # a running cluster (shared --tmp folder)

Every run is the command a user types (`teaching.cli.main`, in this process), on the first --photos photos of
imagenet-val-dev (different sizes), writing every file; the wall time includes each run's start: Ray's actors
starting and loading the model, but not `ray.init` (timed apart). The local engine runs with one torch thread and
with the machine's threads (each Ray actor has one CPU and one thread).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from teaching.cli import main as cli_main
from teaching.distributed import start_ray
from teaching.evaluation.cli import main as evaluate_main
from teaching.models import load_backbone

REPO = Path(__file__).resolve().parents[1]


def fixtures() -> Path:
    return Path(os.environ.get("TEACHING_FIXTURES", REPO.parent / "shared" / "fixtures")) / "imagenet-val-dev"


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # one line per photo
        code = cli_main(argv)
    elapsed = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"{' '.join(argv[:3])}...: exit code {code}")
    return elapsed


def max_map_difference(a: Path, b: Path) -> float:
    """The largest difference between the maps (raw and scaled) and probabilities of two runs' photo folders."""
    worst = 0.0
    for folder in sorted(p for p in a.iterdir() if p.is_dir()):
        with np.load(folder / "maps.npz") as x, np.load(b / folder.name / "maps.npz") as y:
            for key in ("raw_maps", "maps", "probs"):
                worst = max(worst, float(np.abs(x[key].astype(np.float64) - y[key]).max()))
            if not np.array_equal(x["classes"], y["classes"]):
                return float("inf")
    return worst


def ps() -> str:
    return subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True).stdout[:600]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--address", default=None, help="a Ray cluster to join (default: a local Ray on this machine)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=2, help="rounds of all runs (the table gives the median)")
    p.add_argument("--evaluate-photos", type=int, default=4, help="photos of the evaluate timing (0: skip it)")
    p.add_argument("--tmp", default=None, help="output folder (on a cluster: one every node can write)")
    p.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "ray_cpu.json")
    args = p.parse_args()

    images = [str(f) for f in sorted((fixtures() / "images").glob("*.JPEG"))[: args.photos]]
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_", dir=args.tmp))
    common = ["explain", *images, "--batch-size", str(args.batch_size), "--device", args.device, "--top", "3"]
    report: dict[str, object] = {
        "command": " ".join(["python -m bench.bench_ray", *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "photos": len(images),
        "batch_size": args.batch_size,
        "ps_start": ps(),
    }
    load_backbone("efficientnet_lite0", device=args.device)  # the local runs' model, loaded before the clock
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    start_ray(args.address)
    report["ray_init_seconds"] = round(time.perf_counter() - t0, 2)
    address = ["--address", args.address] if args.address else []
    runs: dict[tuple[str, int, int], list[float]] = {}
    for _ in range(args.repeats):  # round-robin, so that the load of a shared machine hits every run alike
        for n in sorted({1, threads}):
            torch.set_num_threads(n)
            runs.setdefault(("local", 1, n), []).append(timed([*common, "--out", str(tmp / f"local{n}")]))
            torch.set_num_threads(threads)
        for w in args.workers:
            argv = [*common, "--out", str(tmp / f"ray{w}"), "--engine", "ray", "--workers", str(w), *address]
            runs.setdefault(("ray", w, 1), []).append(timed(argv))
        print(runs, file=sys.stderr)
    rows: list[dict[str, object]] = []
    for (engine, workers, n), seconds in runs.items():
        median = float(np.median(seconds))
        rows.append(
            {
                "engine": engine,
                "workers": workers,
                "threads": n,
                "seconds": [round(x, 2) for x in seconds],
                "median_s": round(median, 2),
                "photos_per_s": round(len(images) / median, 3),
            }
        )
    report["explain"] = rows
    report["max_difference_ray_vs_local"] = {
        f"ray{w}": max_map_difference(tmp / "local1", tmp / f"ray{w}") for w in args.workers
    }  # maps in [0, 1], raw maps, probabilities; inf where the classes differ
    if args.evaluate_photos:
        val = fixtures()
        torch.set_num_threads(1)
        t0 = time.perf_counter()
        code = evaluate_main(
            ["--images", str(val / "images"), "--labels", str(val / "labels.csv"), "--boxes", str(val / "boxes.csv"),
             "--limit", str(args.evaluate_photos), "--device", args.device, "--out", str(tmp / "evaluate")]
        )  # fmt: skip
        torch.set_num_threads(threads)
        if code != 0:
            raise SystemExit(f"evaluate: exit code {code}")
        seconds = time.perf_counter() - t0
        report["evaluate"] = {
            "photos": args.evaluate_photos,
            "settings": "default methods (7 variants + 2 reference maps), default steps, sanity levels, 1 thread",
            "seconds": round(seconds, 1),
            "seconds_per_photo": round(seconds / args.evaluate_photos, 2),
        }
        print(report["evaluate"], file=sys.stderr)
    report["ps_end"] = ps()
    shutil.rmtree(tmp, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print("| engine | workers | threads each | seconds (median) | photos/s |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['engine']} | {r['workers']} | {r['threads']} | {r['median_s']} | {r['photos_per_s']} |")
    print(report["max_difference_ray_vs_local"])


if __name__ == "__main__":
    main()
