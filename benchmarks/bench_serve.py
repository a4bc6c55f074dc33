"""crsrisk serve under load: N concurrent clients for a bounded time against a local server it starts.

Run:  python benchmarks/bench_serve.py [--clients 8] [--seconds 20] [--workers W] [--model PATH] [--now-hours 40]

Starts ``crsrisk serve`` (W worker processes, default one per core) on a free 127.0.0.1 port with a fresh audit
log, then loads it with 1 client, with one client per core, and with N clients, each client posting the example
record (``examples/patient.json``) over a kept-alive connection for the given time. The first answer is checked
against in-process ``predict`` (every probability equal); every later answer must be byte-identical to it (a
difference or a failed request counts as an error). Prints requests/s, p50/p99 latency and errors per load, and
whether the audit log holds exactly one verified record per answered request.

CDS Hooks: the same patient exported as FHIR (tests/fhir_export.py), its prefetch filled as an EHR fills it
(tests/ehr_stand_in.py), posted to ``POST /cds-services/{id}`` by one client; the cards' probabilities are checked
against in-process ``predict`` on that FHIR Bundle, and the p50 set against that in-process call (target <= 2x;
the CDS Hooks specification asks for about 500 ms).

Two baselines, measured in the same run: one in-process caller (``predict(...).to_dict()`` with the audit log
on: the server's own work without HTTP), and N in-process callers at once, each its own process appending to one
shared audit log - the best any caller could do at that concurrency on these cores. With more callers than cores
no server can answer faster than callers / cores x the single call (Little's law), so the N-client p50 is set
against both. The server is always stopped; nothing but loopback is contacted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from crsrisk.audit import verify_log
from crsrisk.cohort.record import canonical_record, validate_record
from crsrisk.util.cluster import available_cores
from crsrisk.scoring import load_model, predict
from crsrisk.service.local import free_port, local_server
from crsrisk.service.cds_hooks import SERVICE_ID
from crsrisk.service.predictions import example_record_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the FHIR exporter and the EHR stand-in
from ehr_stand_in import hook_request, prefetched
from fhir_export import patient_bundle


def load(port: int, body: bytes, reference: bytes, clients: int, seconds: float) -> tuple[list[float], int, float]:
    """Latencies (ms) of every answered (200) request, the number of errors (a failed request, or an answer not
    byte-identical to ``reference``) and the clients' own CPU seconds: ``clients`` threads for ``seconds``, each
    on one kept-alive ``http.client`` connection (a light client, so the server under test gets the cores)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    headers = {"Content-Type": "application/json"}
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                try:
                    connection.request("POST", "/predict", body=body, headers=headers)
                    answer = connection.getresponse()
                    content = answer.read()
                    elapsed = (time.perf_counter() - start) * 1000
                    if answer.status == 200:  # answered, so audited: counted for the audit check
                        latencies[k].append(elapsed)
                    if answer.status != 200 or content != reference:
                        errors[k] += 1
                except (OSError, http.client.HTTPException):
                    errors[k] += 1
                    connection.close()
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    cpu = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    return [x for part in latencies for x in part], sum(errors), time.process_time() - cpu


def fhir_export(record: dict, until_hours: float) -> dict:
    """The record up to ``until_hours`` as one patient's FHIR Bundle, written as an EHR export (plain JSON): what
    an EHR holds at that hour, so a patient-view call then scores what ``predict`` scores at that hour."""
    typed = canonical_record(validate_record(record))["patient"]  # the contract's types, not the JSON's text
    measurements = pd.DataFrame(record["measurements"]).query("hours_since_infusion < @until_hours")
    events = pd.DataFrame(record["events"]).query("hours_since_infusion < @until_hours")
    exported = patient_bundle(0, typed, measurements, events.assign(value=pd.to_numeric(events["value"])))
    return json.loads(json.dumps(exported, default=float))


def cds_ms(port: int, body: bytes, expected: dict[str, float], seconds: float) -> tuple[list[float], int]:
    """Milliseconds per CDS Hooks call by one client on a kept-alive connection, and the calls whose cards'
    probabilities differ from ``expected`` (or that failed)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    samples, errors, deadline = [], 0, time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            connection.request(
                "POST", f"/cds-services/{SERVICE_ID}", body=body, headers={"Content-Type": "application/json"}
            )
            answer = connection.getresponse()
            content = answer.read()
            samples.append((time.perf_counter() - start) * 1000)
            cards = json.loads(content).get("cards", []) if answer.status == 200 else []
            shown = {
                c["extension"]["crsrisk"]["task"]: c["extension"]["crsrisk"]["probability"]
                for c in cards
                if "extension" in c
            }
            errors += int(answer.status != 200 or shown != expected)
    finally:
        connection.close()
    return samples, errors


def probabilities(document: dict) -> dict[str, float]:
    """Each task's probability in a ``to_dict()`` document."""
    return {p["task"]: p["probability"] for p in document["predictions"]}


def in_process_ms(
    record: dict, model: str | None, now_hours: float | None, log: Path | None, seconds: float, start: object = None
) -> list[float]:
    """Milliseconds per in-process ``predict(...).to_dict()`` (audit log at ``log``; None: off) for ``seconds``
    after a warm-up; ``start``, a barrier, lines up several such callers."""
    bundle = load_model(model)
    for _ in range(20):
        predict(record, model=bundle, now_hours=now_hours, audit=False).to_dict()
    if start is not None:
        start.wait()
    samples, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        begin = time.perf_counter()
        predict(record, model=bundle, now_hours=now_hours, audit=log is not None, audit_log=log).to_dict()
        samples.append((time.perf_counter() - begin) * 1000)
    return samples


def concurrent_in_process_ms(
    record: dict, model: str | None, now_hours: float, log: Path, callers: int, seconds: float
) -> list[float]:
    """``in_process_ms`` in ``callers`` processes at once (fresh interpreters), all appending to ``log``."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(callers) as pool:
        start = manager.Barrier(callers)
        parts = pool.starmap(in_process_ms, [(record, model, now_hours, log, seconds, start)] * callers)
    return [x for part in parts for x in part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=None, help="server processes (default: one per core)")
    parser.add_argument("--model", default=None, help="bundle folder (default: the shipped synthetic model)")
    parser.add_argument("--now-hours", type=float, default=40.0)
    args = parser.parse_args()
    cores = available_cores()
    record = json.loads(example_record_text())
    body = json.dumps({**record, "now_hours": args.now_hours}).encode()
    expected = probabilities(predict(record, model=args.model, now_hours=args.now_hours, audit=False).to_dict())
    loads = sorted({1, cores, args.clients})
    results: dict[int, tuple[list[float], int, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="crsrisk-bench-serve-") as scratch:
        audit, port = Path(scratch) / "audit.jsonl", free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "crsrisk.cli", "serve", "--port", str(port), "--audit-log", str(audit)]
        command += ["--model", args.model] if args.model else []
        command += ["--workers", str(args.workers)] if args.workers else []
        with local_server(command, f"{url}/health", timeout=120):
            first = urllib.request.urlopen(
                urllib.request.Request(f"{url}/predict", data=body, headers={"Content-Type": "application/json"}),
                timeout=60,
            ).read()
            errors = int(probabilities(json.loads(first)) != expected)
            for clients in loads:
                seconds = min(5.0, args.seconds) if clients == 1 else args.seconds
                results[clients] = (*load(port, body, first, clients, seconds), seconds)
            export = fhir_export(record, args.now_hours)
            fhir_expected = probabilities(predict(export, model=args.model, audit=False).to_dict())
            hook = json.dumps(hook_request(export, prefetch=prefetched(export))).encode()
            cds, cds_errors = cds_ms(port, hook, fhir_expected, min(5.0, args.seconds))
        answered = 1 + sum(len(latencies) for latencies, *_ in results.values()) + len(cds)
        errors += sum(failed for _, failed, *_ in results.values())
        check = verify_log(audit)
        single = float(
            np.median(
                in_process_ms(record, args.model, args.now_hours, Path(scratch) / "one.jsonl", min(5.0, args.seconds))
            )
        )
        together = float(
            np.median(
                concurrent_in_process_ms(
                    record,
                    args.model,
                    args.now_hours,
                    Path(scratch) / "many.jsonl",
                    args.clients,
                    min(10.0, args.seconds),
                )
            )
        )
        unaudited = float(np.median(in_process_ms(record, args.model, args.now_hours, None, 3.0)))
        fhir_single = float(
            np.median(in_process_ms(export, args.model, None, Path(scratch) / "fhir.jsonl", min(5.0, args.seconds)))
        )
    print(
        f"{cores} core(s); server: {args.workers or cores} worker process(es); audit log on; example record at "
        f"hour {args.now_hours:g}"
    )
    print(f"in-process predict + to_dict, one caller: p50 {single:.2f} ms ({unaudited:.2f} ms without the audit log)")
    print(
        f"in-process, {args.clients} callers at once (one process each, one shared audit log): p50 {together:.2f} ms"
        f" (Little's law floor on {cores} core(s): {max(1.0, args.clients / cores) * single:.2f} ms)"
    )
    for clients in loads:
        latencies, failed, client_cpu, seconds = results[clients]
        p50 = float(np.median(latencies))
        against = f"{p50 / single:.1f}x one in-process caller"
        if clients == args.clients and clients > 1:
            against += f", {p50 / together:.1f}x {clients} in-process callers"
        print(
            f"{clients} client(s), {seconds:g} s: {len(latencies) / seconds:.0f} requests/s, p50 {p50:.1f} ms "
            f"({against}; target <= 3x), p99 {np.percentile(latencies, 99):.1f} ms, errors {failed}; the "
            f"clients' own CPU {1000 * client_cpu / max(1, len(latencies)):.2f} ms per request"
        )
    cds_p50 = float(np.median(cds))
    print(
        f"CDS Hooks patient-view (prefetch, the same patient as FHIR), 1 client: p50 {cds_p50:.1f} ms, p99 "
        f"{np.percentile(cds, 99):.1f} ms over {len(cds)} calls, errors {cds_errors}; in-process predict on that "
        f"FHIR Bundle p50 {fhir_single:.1f} ms: {cds_p50 / fhir_single:.2f}x (target <= 2x: "
        f"{'met' if cds_p50 <= 2 * fhir_single else 'not met'})"
    )
    errors += cds_errors
    lost = answered - check.n_records
    print(
        f"errors in all: {errors} (failed, or an answer differing from in-process predict); audit log: "
        f"{check.n_records} record(s) for {answered} answered request(s), chain "
        f"{'intact' if check.ok else 'BROKEN'}; lost {lost}"
    )
    floor = max(1.0, args.clients / cores)
    p50 = float(np.median(results[args.clients][0]))
    verdict = (
        "met"
        if p50 <= 3 * single
        else (
            f"not met; no server can meet it here: {args.clients} callers on {cores} core(s) wait at least {floor:g}x "
            f"one call (Little's law), and the server's p50 is {p50 / together:.1f}x that of {args.clients} in-process "
            "callers"
            if floor > 3
            else "not met"
        )
    )
    print(f"target p50 <= 3x one in-process call with {args.clients} clients: {verdict}")


if __name__ == "__main__":
    main()
