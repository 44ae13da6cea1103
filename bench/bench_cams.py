"""Time our CAM engine against pytorch-grad-cam, TorchCAM and Captum in one process, on the same inputs.

Run on demand, never from the tests:
    .venv/bin/python -m bench.bench_cams --preset cpu                 # a subset that fits two shared cores
    python3 -m bench.bench_cams --preset gpu --device cuda            # the whole grid on a GPU

For one backbone, batch B, k target classes and method, every implementation (the bare forward pass as the floor,
ours eager, ours accelerated by teaching.accel, the peers) is timed round-robin in one loop, so that load changes on
a shared machine hit them alike: a warm-up, then `repeats` rounds, each call between device synchronisations.
Reported: median and interquartile range (ms), ratios ours/peer and ours/forward from the same loop, and the agreement
of our maps with the reference peer (Pearson correlation and max abs difference of the min-max scaled maps).

Inputs: seeded smooth images (bicubic upsampling of 8x8 noise) and the top-k classes the model predicts for the
first image, shared by the batch; k = 1000 means every class. efficientnet_lite0 has its real ImageNet weights,
the other backbones random ones (seeded): timings do not depend on the weights.

Ours (eager and fast) gets the head's linear layer for every method where the backbone's target layer feeds
global-average-pool + linear (`BackboneSpec.gap_linear`): the gradient methods then take their gradients in closed
form (the engine checks that on each pass; the report's `closed_form` says where it did).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

# torch reads this at its first allocation: large CPU tensors on transparent huge pages (see teaching/__main__.py);
# 1000 maps upsampled to 224 x 224 take half the time (docs/PERFORMANCE.md). THP_MEM_ALLOC_ENABLE=0 turns it off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import numpy as np
import torch
import torch.nn.functional as F

from bench import peers
from bench.peers import PEER_METHODS, PEERS, REFERENCE, Case, Runner
from teaching.cams.maps import upsample
from teaching.models import get_spec, load_backbone

# Score-CAM on the CPU takes minutes a call (1,280 masked forward passes on lite0): time it alone, once, with
#   --methods scorecam --repeats 1 --warmup 0 --ks 1 --batches ''
RESULTS = Path(__file__).resolve().parent / "results"
LARGE_K_METHODS = ("gradcam", "cam")  # the methods worth timing with every class at once


@dataclass
class Plan:
    """What to time; the presets below are starting points that the command line overrides."""

    backbones: list[str]
    methods: list[str]  # gradcam, gradcampp, layercam, scorecam, guided, cam
    ks: list[int]  # numbers of classes of one image (batch 1)
    batches: list[int]  # batch sizes above 1, each with `batch_k` classes
    batch_k: int = 3
    impls: list[str] = field(default_factory=lambda: ["ours", "fast", "pgc", "torchcam", "captum"])
    repeats: int = 30
    warmup: int = 3
    max_seconds: float = 15.0  # stop a case's rounds after this long (at least 3 rounds)
    peer_max_k: int = 6  # peers above this k would need a batch of k copies of the image: skipped (TorchCAM CAM kept)
    scorecam_max_k: int = 3
    scorecam_backbones: list[str] | None = None  # None: all of `backbones`
    scorecam_batch: int = 128
    fast_dtype: str = "auto"  # float16 | bfloat16 | float32 | auto (float16 on CUDA, bfloat16 on CPU)
    graphs: bool = True
    profile: list[str] = field(default_factory=list)  # implementations to run under torch.profiler after timing
    upsample: bool = True  # time ours up to maps min-max scaled at input size (False: the engine's raw maps)


PRESETS = {
    "cpu": Plan(
        backbones=["efficientnet_lite0", "resnet50"],
        methods=["gradcam", "gradcampp", "layercam", "cam", "guided"],
        ks=[1, 3, 6, 1000],
        batches=[8],
        repeats=15,
        warmup=1,
        max_seconds=20.0,
        scorecam_max_k=1,
        scorecam_backbones=["efficientnet_lite0"],
        scorecam_batch=64,
    ),
    "gpu": Plan(
        backbones=["efficientnet_lite0", "resnet50", "vgg16", "densenet121", "mobilenet_v2"],
        methods=["gradcam", "gradcampp", "layercam", "cam", "guided", "scorecam"],
        ks=[1, 3, 6, 1000],
        batches=[8, 32],
        warmup=2,
        max_seconds=8.0,
        scorecam_backbones=["efficientnet_lite0", "resnet50"],
    ),
}


# --- timing -----------------------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_round_robin(
    runners: dict[str, Runner], plan: Plan, device: torch.device
) -> tuple[dict[str, list[float]], dict[str, Any], dict[str, str]]:
    """Warm each runner up, then time one call of each per round, starting each round one runner later.

    Returns the times (s) per runner, each runner's last output, and the error of each runner that failed.
    Without warm-up (slow methods on a CPU) the first timed call includes one-off set-up costs.
    """
    outputs: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, runner in runners.items():
        try:
            for _ in range(plan.warmup):
                outputs[name] = runner.fn()
            synchronize(device)
        except Exception as exc:  # a peer that cannot handle this model (e.g. in-place ReLU): reported, not fatal
            errors[name] = describe(exc)
    names = [n for n in runners if n not in errors]
    times: dict[str, list[float]] = {n: [] for n in names}
    start = time.perf_counter()
    for round_ in range(plan.repeats):
        for i in range(len(names)):
            name = names[(i + round_) % len(names)]
            if name in errors:
                continue
            synchronize(device)
            t0 = time.perf_counter()
            try:
                outputs[name] = runners[name].fn()
                synchronize(device)
            except Exception as exc:  # only reachable without warm-up
                errors[name] = describe(exc)
                continue
            times[name].append(time.perf_counter() - t0)
        if round_ + 1 >= min(3, plan.repeats) and time.perf_counter() - start > plan.max_seconds:
            break
    times = {n: ts for n, ts in times.items() if ts}
    return times, outputs, errors


def describe(exc: BaseException) -> str:
    """One line naming the exception, for the report."""
    first = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"


def summary(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    q1, median, q3 = np.percentile(ms, [25, 50, 75])
    return {"median_ms": float(median), "q1_ms": float(q1), "q3_ms": float(q3), "n": len(ms)}


def agreement(ours: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """Pearson correlation and max abs difference; maps of different resolutions are both brought to the larger one."""
    a, b = ours.detach().float().cpu(), ref.detach().float().cpu()
    if a.ndim == b.ndim == 4 and a.shape[-2:] != b.shape[-2:]:
        size = max(a.shape[-2:], b.shape[-2:])
        a, b = upsample(a, size), upsample(b, size)
    if a.shape != b.shape:
        return {}
    corr = np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]
    return {"corr": float(corr), "max_abs_diff": float((a - b).abs().max())}


# --- the grid ---------------------------------------------------------------------------------------------------


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Seeded photo-like inputs: bicubic upsampling of 8x8 uniform noise in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    return F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def cases_for(plan: Plan, backbone: str, method: str) -> list[tuple[int, int]]:
    """The (B, k) pairs this method is timed at on this backbone."""
    spec = get_spec(backbone)
    if method == "cam" and not spec.gap_linear:
        return []
    if method == "scorecam" and plan.scorecam_backbones is not None and backbone not in plan.scorecam_backbones:
        return []
    pairs = [(1, k) for k in plan.ks] + [(b, plan.batch_k) for b in plan.batches]
    if method not in LARGE_K_METHODS:
        pairs = [(b, k) for b, k in pairs if k <= plan.peer_max_k]
    if method == "scorecam":
        pairs = [(b, k) for b, k in pairs if b == 1 and k <= plan.scorecam_max_k]
    return pairs


def fast_dtype(plan: Plan, device: torch.device) -> torch.dtype | None:
    name = plan.fast_dtype
    if name == "auto":
        name = "float16" if device.type == "cuda" else "bfloat16"
    return None if name == "float32" else getattr(torch, name)


def runners_for(plan: Plan, case: Case, method: str, device: torch.device) -> tuple[dict[str, Runner], dict[str, str]]:
    """Set up every implementation of this method for this case; a set-up that fails is reported as an error."""
    dtype = fast_dtype(plan, device)
    graphs = plan.graphs and device.type == "cuda"
    makers: dict[str, Callable[[], Runner]] = {"forward": lambda: peers.forward(case)}
    if "fast" in plan.impls:
        makers["forward_fast"] = lambda: peers.fast_forward(case, dtype, graphs)
    if "ours" in plan.impls:
        makers["ours"] = lambda: peers.ours(case, method)
    if "fast" in plan.impls:
        makers["fast"] = lambda: peers.fast(case, method, dtype, graphs)
    k = len(case.classes)
    for peer in ("pgc", "torchcam", "captum"):
        if peer in plan.impls and method in PEER_METHODS[peer] and (k <= plan.peer_max_k or method == "cam"):
            makers[peer] = lambda peer=peer: PEERS[peer](case, method)  # type: ignore[misc]
    runners: dict[str, Runner] = {}
    errors: dict[str, str] = {}
    for name, make in makers.items():
        try:
            runners[name] = make()
        except Exception as exc:
            errors[name] = describe(exc)
    return runners, errors


def run_case(plan: Plan, case: Case, method: str, device: torch.device) -> dict[str, Any]:
    runners, errors = runners_for(plan, case, method, device)
    profiles: dict[str, str] = {}
    try:
        times, outputs, run_errors = time_round_robin(runners, plan, device)
        for name in plan.profile:
            if name in times:
                profiles[name] = profile(runners[name], device)
    finally:
        for runner in runners.values():
            runner.close()
    errors.update(run_errors)
    closed_form = {name: runners[name].closed_form for name in times if runners[name].closed_form is not None}
    agree: dict[str, dict[str, float]] = {}
    ref = REFERENCE.get(method)
    for mine in ("ours", "fast"):
        if mine in outputs and ref in outputs:
            agree[f"{mine}_vs_{ref}"] = agreement(outputs[mine], outputs[ref])
    if "ours" in outputs and "fast" in outputs:
        agree["fast_vs_ours"] = agreement(outputs["fast"], outputs["ours"])
    b, k = case.x.shape[0], len(case.classes)
    return {
        "method": method,
        "batch": b,
        "k": k,
        "times": {name: summary(ts) for name, ts in times.items()},
        "errors": errors,
        "agreement": agree,
        "closed_form": closed_form,  # per implementation of ours: whether its gradients came in closed form
        "profiles": profiles,
    }


def profile(runner: Runner, device: torch.device, calls: int = 3, rows: int = 12) -> str:
    """torch.profiler's table of the operators that took the most time over a few calls (self time, device first)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(calls):
            runner.fn()
        synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return str(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=48))


def bench_backbone(plan: Plan, backbone: str, device: torch.device, record: Callable[[dict], None]) -> None:
    torch.manual_seed(0)
    loaded = load_backbone(backbone, device=str(device), pretrained=backbone == "efficientnet_lite0")
    peer_model = copy.deepcopy(loaded.model).requires_grad_(True)  # same weights; the peers need grad-enabled params
    size = loaded.spec.preprocess.size
    images = smooth_images(max([1, *plan.batches]), size).to(device)
    with torch.no_grad():
        order = loaded.model(images[:1]).argsort(1, descending=True)[0].tolist()
    for method in plan.methods:
        for b, k in cases_for(plan, backbone, method):
            case = Case(
                model=loaded.model,
                peer_model=peer_model,
                layer=loaded.spec.target_layer,
                linear=loaded.spec.classifier,
                x=images[:b].contiguous(),
                classes=order[:k],
                scorecam_batch=plan.scorecam_batch,
                upsample=plan.upsample,
                gap_linear=loaded.spec.gap_linear,
            )
            t0 = time.perf_counter()
            result = run_case(plan, case, method, device)
            result.update(backbone=backbone, wall_s=round(time.perf_counter() - t0, 1))
            record(result)
            print(one_line(result), flush=True)
            for name, table in result["profiles"].items():
                print(f"torch.profiler, {name}:\n{table}", flush=True)


# --- reporting --------------------------------------------------------------------------------------------------


def busy_processes(n: int = 6) -> list[str]:
    """The processes using the most CPU right now (the machine may be shared)."""
    try:
        ps = subprocess.run(["ps", "-eo", "pcpu,rss,args", "--sort=-pcpu"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [" ".join(line.split())[:150] for line in ps.stdout.splitlines()[1 : n + 1]]


def machine(device: torch.device) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
    cpu = names[0] if names else platform.processor()
    versions = {}
    for dist in ("torch", "torchvision", "timm", "grad-cam", "torchcam", "captum"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = "missing"
    info: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU: {cpu}",
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE", ""),
        "python": platform.python_version(),
        "versions": versions,
        "loadavg_start": os.getloadavg(),
        "busy_start": busy_processes(),
    }
    if device.type == "cuda":
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    return info


def one_line(r: dict[str, Any]) -> str:
    times = " ".join(f"{n}={t['median_ms']:.1f}" for n, t in r["times"].items())
    errs = f" errors={list(r['errors'])}" if r["errors"] else ""
    return f"{r['backbone']} {r['method']} B={r['batch']} k={r['k']}: {times}{errs} ({r['wall_s']}s)"


def _cell(times: dict[str, dict[str, float]], name: str) -> str:
    t = times.get(name)
    return f"{t['median_ms']:.1f} ({t['q3_ms'] - t['q1_ms']:.1f})" if t else ""


def _ratio(times: dict[str, dict[str, float]], num: str, den: str) -> str:
    if num not in times or den not in times:
        return ""
    return f"{times[num]['median_ms'] / times[den]['median_ms']:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """One table: medians (IQR) in ms, then the ratios from the same loop, then agreement with the reference peer."""
    head = (
        "| backbone | method | B | k | forward | fwd fast | ours | fast | pgc | torchcam | captum "
        "| ours/fwd | fast/fwd | fast/fwd fast | pgc/ours | pgc/fast | torchcam/fast | captum/fast | agreement |"
    )
    lines = [head, "|" + " --- |" * 19]
    for r in report["results"]:
        t = r["times"]
        agree = "; ".join(
            f"{k}: r={v['corr']:.4f}, max {v['max_abs_diff']:.3g}" for k, v in r["agreement"].items() if v
        )
        closed = [name for name, used in r.get("closed_form", {}).items() if used]
        if closed:
            agree += ("; " if agree else "") + f"closed-form gradients: {', '.join(closed)}"
        if r["errors"]:
            agree += ("; " if agree else "") + "; ".join(f"{k} failed ({v[:60]})" for k, v in r["errors"].items())
        cells = [r["backbone"], r["method"], str(r["batch"]), str(r["k"])]
        cells += [_cell(t, n) for n in ("forward", "forward_fast", "ours", "fast", "pgc", "torchcam", "captum")]
        cells += [
            _ratio(t, "ours", "forward"),
            _ratio(t, "fast", "forward"),
            _ratio(t, "fast", "forward_fast"),
            _ratio(t, "pgc", "ours"),
            _ratio(t, "pgc", "fast"),
            _ratio(t, "torchcam", "fast"),
            _ratio(t, "captum", "fast"),
            agree,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None = None) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--backbones", help="comma-separated backbone names")
    parser.add_argument("--methods", help="comma-separated: gradcam,gradcampp,layercam,scorecam,guided,cam")
    parser.add_argument("--ks", help="comma-separated numbers of classes of one image, e.g. 1,3,6,1000")
    parser.add_argument("--batches", help="comma-separated batch sizes above 1 (each with --batch-k classes)")
    parser.add_argument("--batch-k", type=int)
    parser.add_argument("--impls", help="comma-separated subset of ours,fast,pgc,torchcam,captum")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--max-seconds", type=float)
    parser.add_argument("--scorecam-max-k", type=int)
    parser.add_argument("--scorecam-backbones", help="comma-separated; Score-CAM only on these")
    parser.add_argument("--scorecam-batch", type=int)
    parser.add_argument("--fast-dtype", choices=["auto", "float16", "bfloat16", "float32"])
    parser.add_argument("--no-graphs", action="store_true", help="accelerated path without CUDA graphs")
    parser.add_argument("--no-cudnn-benchmark", action="store_true")
    parser.add_argument("--raw", action="store_true", help="time ours to the raw maps (no upsampling to input size)")
    parser.add_argument("--profile", help="comma-separated implementations (e.g. ours,fast) to profile per case")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--out", type=Path, help="JSON path (a .md table is written beside it)")
    args = parser.parse_args(argv)
    plan = replace(PRESETS[args.preset])
    lists = {
        "backbones": str,
        "methods": str,
        "ks": int,
        "batches": int,
        "impls": str,
        "scorecam_backbones": str,
        "profile": str,
    }
    for name, kind in lists.items():
        value = getattr(args, name)
        if value is not None:
            setattr(plan, name, [kind(v) for v in value.split(",") if v])
    for name in ("batch_k", "repeats", "warmup", "max_seconds", "scorecam_max_k", "scorecam_batch", "fast_dtype"):
        if getattr(args, name) is not None:
            setattr(plan, name, getattr(args, name))
    plan.graphs = not args.no_graphs
    plan.upsample = not args.raw
    return plan, args


def main(argv: list[str] | None = None) -> int:
    plan, args = parse(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    out = args.out or RESULTS / f"{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": shlex.join([Path(sys.executable).name, "-m", "bench.bench_cams", *(argv or sys.argv[1:])]),
        "plan": asdict(plan),
        "machine": machine(device),
        "results": [],
    }

    def record(result: dict[str, Any]) -> None:
        report["results"].append(result)
        out.write_text(json.dumps(report, indent=1))  # after every case: a cut-off run keeps what it measured

    for backbone in plan.backbones:
        bench_backbone(plan, backbone, device, record)
    report["machine"]["loadavg_end"] = os.getloadavg()
    report["machine"]["busy_end"] = busy_processes()
    out.write_text(json.dumps(report, indent=1))
    table = markdown(report)
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
