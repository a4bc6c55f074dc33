"""crsrisk serve under load: N concurrent clients for a bounded time against a local server it starts.

Run:  python benchmarks/bench_serve.py [--clients 8] [--seconds 20] [--model PATH] [--now-hours 40]

Starts ``crsrisk serve`` on a free 127.0.0.1 port with a fresh audit log, first times one client alone (the
latency a single caller sees), then N clients at once for the given time, each posting the example record
(``examples/patient.json``) over a kept-alive connection, and checks every answer's probabilities against
in-process ``predict`` (a mismatch counts as an error). Prints requests/s, p50/p99 latency, errors, the
in-process ``predict`` (audit log on, ``to_dict()`` rendered: the server's own work without HTTP) p50 and the
ratio, and whether the audit log holds exactly one verified record per answered request. The server is always
stopped; nothing but loopback is contacted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from crsrisk.audit.log import verify_log
from crsrisk.scoring import load_model, predict
from crsrisk.service.local import free_port, local_server
from crsrisk.service.predictions import example_record_text


def load(url: str, body: bytes, expected: dict[str, float], clients: int, seconds: float) -> tuple[list[float], int]:
    """Latencies (ms) of every answered (200) request and the number of errors (a failed request, or an answer
    whose probabilities differ from ``expected``), ``clients`` threads for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=30, headers={"content-type": "application/json"}) as session:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                try:
                    answer = session.post("/predict", content=body)
                    elapsed = (time.perf_counter() - start) * 1000
                    if answer.status_code == 200:  # answered, so audited: counted for the audit check
                        latencies[k].append(elapsed)
                    if answer.status_code != 200 or probabilities(answer.json()) != expected:
                        errors[k] += 1
                except (httpx.HTTPError, ValueError):
                    errors[k] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    return [x for part in latencies for x in part], sum(errors)


def probabilities(document: dict) -> dict[str, float]:
    """Each task's probability in a ``to_dict()`` document."""
    return {p["task"]: p["probability"] for p in document["predictions"]}


def in_process_ms(record: dict, model: str | None, now_hours: float, log: Path | None, calls: int = 200) -> np.ndarray:
    """Milliseconds per in-process ``predict(...).to_dict()`` with the audit log at ``log`` (None: off)."""
    bundle = load_model(model)
    samples = []
    for i in range(-20, calls):
        start = time.perf_counter()
        predict(record, model=bundle, now_hours=now_hours, audit=log is not None, audit_log=log).to_dict()
        if i >= 0:
            samples.append((time.perf_counter() - start) * 1000)
    return np.array(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--model", default=None, help="bundle folder (default: the shipped synthetic model)")
    parser.add_argument("--now-hours", type=float, default=40.0)
    args = parser.parse_args()
    record = json.loads(example_record_text())
    body = json.dumps({**record, "now_hours": args.now_hours}).encode()
    expected = probabilities(predict(record, model=args.model, now_hours=args.now_hours, audit=False).to_dict())
    with tempfile.TemporaryDirectory(prefix="crsrisk-bench-serve-") as scratch:
        audit, port = Path(scratch) / "audit.jsonl", free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "crsrisk.cli", "serve", "--port", str(port), "--audit-log", str(audit)]
        command += ["--model", args.model] if args.model else []
        with local_server(command, f"{url}/health", timeout=120):
            single, single_errors = load(url, body, expected, 1, min(5.0, args.seconds))
            many, errors = load(url, body, expected, args.clients, args.seconds)
        answered, errors = len(single) + len(many), errors + single_errors
        check = verify_log(audit)
        local = np.median(in_process_ms(record, args.model, args.now_hours, Path(scratch) / "local.jsonl"))
        unaudited = np.median(in_process_ms(record, args.model, args.now_hours, None))
    p50_one, p50, p99 = np.median(single), np.median(many), np.percentile(many, 99)
    print(f"clients {args.clients}, {args.seconds:g} s: {len(many) / args.seconds:.0f} requests/s, "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, errors {errors} (failed or answers differing from in-process predict)")
    print(f"one client alone: p50 {p50_one:.1f} ms ({len(single)} requests)")
    print(f"in-process predict + to_dict (audit on): p50 {local:.2f} ms; server p50 / in-process: "
          f"{p50_one / local:.1f}x with one client, {p50 / local:.1f}x with {args.clients} (target <= 3x)")
    print(f"in-process predict + to_dict without the audit log: p50 {unaudited:.2f} ms (the audit append, fsync'd "
          f"under a file lock, is the rest: one at a time, it caps the server's rate)")
    lost = answered - check.n_records
    print(f"audit log: {check.n_records} record(s) for {answered} answered request(s), chain "
          f"{'intact' if check.ok else 'BROKEN'}; lost {lost}")


if __name__ == "__main__":
    main()
