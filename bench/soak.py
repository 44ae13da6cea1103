"""Soak test of the app (not a pytest test): N clients for a while, mixing normal photos, the bad-input corpus and
the amplifying shapes of bench/corpus.py, against `app.build_demo()` on 127.0.0.1.

    .venv/bin/python -m bench.soak --clients 8 --seconds 180

Each client uploads a file through `gradio_client` to /explore (and every fifth request to /compare with one fast
method). Counted: server errors (anything but the file's expected one-line answer: a crash, a generic "Error", a
timeout), normal photos whose top-1 changed from the first answer, and the server's resident set sampled every
5 s (first sample after the first 30 s, last, and the peak).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.corpus import CASES, write_corpus
from bench.load_app import REPO, RESULTS, SERVER, free_port, memory, wait_until_up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args(argv)
    from gradio_client import Client, handle_file

    files = write_corpus(Path(tempfile.mkdtemp(prefix="soak-")))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TEACHING_NO_DOWNLOAD": "1"}
    log = (Path(tempfile.gettempdir()) / f"soak_server_{port}.log").open("wb")
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), "0"], cwd=REPO, env=env, stdout=log, stderr=log)
    counts: dict[str, int] = {"requests": 0, "normal": 0, "refused_right": 0, "server_errors": 0, "unstable": 0}
    first_top: dict[str, str] = {}
    problems: list[str] = []
    lock = threading.Lock()
    rss: list[tuple[float, float]] = []
    try:
        wait_until_up(url.rstrip("/"), server, 300)
        start = time.monotonic()
        stop = start + args.seconds

        def client(i: int) -> None:
            c = Client(url, verbose=False)
            for n in itertools.count(i):
                if time.monotonic() > stop:
                    return
                case = CASES[n % len(CASES)]
                try:
                    if n % 5 == 0:
                        photo = handle_file(files[case.name])
                        c.predict(photo, ["gradcam"], ["efficientnet_lite0"], api_name="/compare")
                        top = "compare"
                    else:
                        _, labels, _ = c.predict(handle_file(files[case.name]), "elephants", api_name="/explore")
                        top = str(labels.get("label"))
                    outcome = "normal" if case.expected is None else "server_errors"
                except Exception as exc:  # noqa: BLE001  (every failure is counted)
                    ok = case.expected is not None and case.expected in str(exc)
                    outcome, top = ("refused_right" if ok else "server_errors"), ""
                    if not ok:
                        with lock:
                            problems.append(f"{case.name}: {str(exc)[:160]}")
                with lock:
                    counts["requests"] += 1
                    counts[outcome] += 1
                    stable = outcome != "normal" or top == "compare" or first_top.setdefault(case.name, top) == top
                    counts["unstable"] += not stable

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            rss.append((round(time.monotonic() - start, 1), memory(server.pid)["VmRSS"]))
            time.sleep(5)
        for t in threads:
            t.join()
        after_30 = [m for t, m in rss if t >= 30] or [m for _, m in rss]
        report: dict[str, Any] = {
            "command": " ".join(["python", "-m", "bench.soak", *(argv or sys.argv[1:])]),
            **counts,
            "rss_mb_after_30s": round(after_30[0]),
            "rss_mb_last": round(rss[-1][1]),
            "rss_mb_peak": round(memory(server.pid)["VmHWM"]),
            "problems": problems[:20],
            "rss_samples": rss,
        }
    finally:
        server.terminate()
        server.wait(30)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rss_samples"}, indent=1))
    return 0 if counts["server_errors"] == 0 and counts["unstable"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
