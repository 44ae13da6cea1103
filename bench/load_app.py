"""Load generator for the app's `explore` endpoint: N concurrent gradio_client clients on 127.0.0.1.

    .venv/bin/python -m bench.load_app --clients 4 --requests 500 --max-seconds 1800

Starts `app.build_demo()` in a subprocess on a free port (no gallery downloads: nothing leaves the machine), waits
until it answers, then N threads, each with its own `gradio_client.Client`, send `explore(photo, group_id)` until
`--requests` have completed or `--max-seconds` have passed. Reported: latency percentiles as each client sees them
(upload, queue, compute and download of the outputs), throughput, failed requests, and the server process's memory
(VmHWM, the peak resident set, and VmRSS from /proc/<pid>/status) after `--first` requests and after the last.
Targets (CPU, efficientnet_lite0, a group of 3 species, 4 clients): p50 < 300 ms, p95 < 600 ms, and the resident set
after 500 requests within 50 MB of the one after 10.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SERVER = """
import sys
import torch
import app
from teaching import server
server.single_malloc_arena()  # as `python app.py` does
if int(sys.argv[2]) > 0:
    torch.set_num_threads(int(sys.argv[2]))
else:
    server.configure_threads()  # as `python app.py` does
from teaching import service
service.warm_up()
app.build_demo().launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), **app.launch_options())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory(pid: int) -> dict[str, float]:
    """VmHWM (peak resident set) and VmRSS of a process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) / 1024  # kB -> MB
    return out


def tree_memory(pid: int) -> dict[str, float]:
    """The server's memory; its children (if Gradio starts any) are added to VmRSS as `VmRSS_tree`."""
    mem = memory(pid)
    total = mem.get("VmRSS", 0.0)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            try:
                total += memory(int(child)).get("VmRSS", 0.0)
            except OSError:
                continue
    mem["VmRSS_tree"] = total
    return mem


def busy_processes(n: int = 8) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pcpu,rss,etime,args", "--sort=-pcpu"], capture_output=True, text=True)
    return [" ".join(line.split())[:160] for line in ps.stdout.splitlines()[1 : n + 1]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (its threads included), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def reuse_tls_context() -> None:
    """Build httpx's default TLS context once instead of for every request.

    gradio_client opens a new httpx client for each upload, event stream and download, and each one loads the
    CA bundle into a fresh TLS context (about 10 ms of CPU), although the app is plain HTTP on 127.0.0.1: 80% of
    the load generator's CPU, taken from the same two cores as the server it measures. A browser keeps its
    connections and TLS state; so does this load generator with the cache (`--fresh-tls` turns it off).
    """
    import httpx._transports.default as transport

    make = transport.create_ssl_context
    cache: dict[tuple[object, ...], object] = {}
    lock = threading.Lock()

    def cached(verify: object = True, cert: object = None, trust_env: bool = True) -> object:
        if not isinstance(verify, bool) or cert is not None:
            return make(verify=verify, cert=cert, trust_env=trust_env)  # type: ignore[arg-type]
        with lock:
            key = (verify, trust_env)
            if key not in cache:
                cache[key] = make(verify=verify, cert=cert, trust_env=trust_env)
            return cache[key]

    transport.create_ssl_context = cached  # type: ignore[assignment]


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{url}/config", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"the app did not answer at {url} within {timeout:.0f} s")


@dataclass
class Tally:
    """Shared between the client threads under `lock`."""

    target: int
    first: int
    server_pid: int
    deadline: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    issued: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    failures: list[str] = field(default_factory=list)
    memory_first: dict[str, float] = field(default_factory=dict)
    every: int = 50  # the server's VmRSS is also read every this many requests (0: never)
    trace: list[tuple[int, float]] = field(default_factory=list)  # (requests done, VmRSS MB)

    def claim(self) -> int | None:
        """The next request number, or None when the count or the time is up."""
        with self.lock:
            if self.issued >= self.target or time.monotonic() > self.deadline:
                return None
            self.issued += 1
            return self.issued

    def done(self, latency: float | None, error: str | None) -> None:
        with self.lock:
            if error is None and latency is not None:
                self.latencies.append(latency)
            else:
                self.failures.append(error or "unknown")
            done = len(self.latencies) + len(self.failures)
            if done == self.first:
                self.memory_first = tree_memory(self.server_pid)
            if self.every and done % self.every == 0:
                self.trace.append((done, round(tree_memory(self.server_pid)["VmRSS"], 1)))


def client_loop(url: str, photos: list[Path], group: str, tally: Tally, seed: int) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    cycle = itertools.islice(itertools.cycle(photos), seed, None)
    while tally.claim() is not None:
        photo = next(cycle)
        t0 = time.perf_counter()
        try:
            client.predict(handle_file(str(photo)), group, api_name="/explore")
        except Exception as exc:  # counted and reported: a failed request is a result here
            tally.done(None, f"{type(exc).__name__}: {str(exc)[:120]}")
            continue
        tally.done(time.perf_counter() - t0, None)


def default_photos() -> list[Path]:
    root = Path(os.environ.get("TEACHING_FIXTURES", REPO.parent / "shared" / "fixtures")) / "species"
    folders = ("African_elephant", "Indian_elephant", "tusker")
    return sorted(p for f in folders for p in (root / f).glob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--first", type=int, default=10, help="memory is read after this many requests too")
    parser.add_argument("--memory-every", type=int, default=50, help="and every this many requests (0: never)")
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument("--group", default="elephants", help="a gallery id (its species are the classes)")
    parser.add_argument("--photos", type=Path, nargs="*", help="default: the elephant photos of TEACHING_FIXTURES")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the server (0: what app.py sets)")
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--fresh-tls", action="store_true", help="let gradio_client build a TLS context per request")
    parser.add_argument("--out", type=Path, default=RESULTS / "load_app.json")
    args = parser.parse_args(argv)
    photos = args.photos or default_photos()
    if not photos:
        parser.error("no photos: pass --photos or set TEACHING_FIXTURES")
    if not args.fresh_tls:
        reuse_tls_context()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    log_path = Path(tempfile.gettempdir()) / f"load_app_server_{port}.log"
    with log_path.open("wb") as log:
        command = [sys.executable, "-c", SERVER, str(port), str(args.threads)]
        server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log)
    report: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "bench.load_app", *(argv or sys.argv[1:])]),
        "server_log": str(log_path),
    }
    try:
        t0 = time.perf_counter()
        wait_until_up(url, server, args.startup_timeout)
        report["startup_s"] = round(time.perf_counter() - t0, 1)
        report["memory_idle_MB"] = tree_memory(server.pid)
        report["loadavg_start"] = os.getloadavg()
        report["busy_start"] = busy_processes()
        deadline = time.monotonic() + args.max_seconds
        tally = Tally(args.requests, args.first, server.pid, deadline, every=args.memory_every)
        threads = [
            threading.Thread(target=client_loop, args=(url, photos, args.group, tally, i), daemon=True)
            for i in range(args.clients)
        ]
        start, server_cpu, client_cpu = time.perf_counter(), cpu_seconds(server.pid), time.process_time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        server_cpu, client_cpu = cpu_seconds(server.pid) - server_cpu, time.process_time() - client_cpu
        report["memory_last_MB"] = tree_memory(server.pid)
        report["loadavg_end"] = os.getloadavg()
        report["busy_end"] = busy_processes()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    ms = np.asarray(tally.latencies) * 1000
    completed = len(tally.latencies) + len(tally.failures)
    report.update(
        clients=args.clients,
        group=args.group,
        photos=len(photos),
        completed=completed,
        succeeded=len(tally.latencies),
        failed=len(tally.failures),
        failures=sorted(set(tally.failures))[:10],
        elapsed_s=round(elapsed, 1),
        throughput_rps=round(len(tally.latencies) / elapsed, 3) if elapsed else 0.0,
        cpu_ms_per_request={
            "server": round(1000 * server_cpu / max(completed, 1), 1),
            "load_generator": round(1000 * client_cpu / max(completed, 1), 1),
        },
        tls_context="fresh per request" if args.fresh_tls else "reused",
        latency_ms={q: round(float(np.percentile(ms, p)), 1) for q, p in (("p50", 50), ("p95", 95), ("max", 100))}
        if len(ms)
        else {},
        memory_first_MB=tally.memory_first,
        memory_trace_MB=tally.trace,
        first=args.first,
    )
    rss_growth = report["memory_last_MB"].get("VmRSS", 0.0) - tally.memory_first.get("VmRSS", 0.0)
    report["rss_growth_MB"] = round(rss_growth, 1)
    report["targets"] = {
        "p50 < 300 ms": bool(len(ms)) and report["latency_ms"]["p50"] < 300,
        "p95 < 600 ms": bool(len(ms)) and report["latency_ms"]["p95"] < 600,
        "RSS growth < 50 MB": rss_growth < 50,
        "no failures": not tally.failures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
