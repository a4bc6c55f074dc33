"""The prediction audit log: chained records, tamper detection by record, many writers, no raw ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crsrisk.audit.log import AuditLog, prediction_record, resolve_log_path, verify_log
from tests_support import run_in_processes


def fill(path: Path, n: int = 5) -> AuditLog:
    log = AuditLog(path)
    for i in range(n):
        log.append(prediction_record(log, {"name": "m"}, f"PAT-{i}", f"fp{i}", [{"task": "t", "probability": i / 10}]))
    return log


def rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines))


def test_chain_verifies_and_ids_are_salted(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = fill(path)
    result = verify_log(path)
    assert result.ok and result.n_records == 5
    text = path.read_text()
    assert "PAT-3" not in text
    records = list(log.records())
    assert [r["seq"] for r in records] == list(range(5))
    assert records[1]["prev_hash"] == records[0]["hash"]
    assert records[3]["patient_hash"] == log.hash_patient_id("PAT-3") != "PAT-3"
    assert (tmp_path / "log.jsonl.salt").stat().st_mode & 0o777 == 0o600


def test_store_raw_keeps_the_id_when_configured(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "raw.jsonl", store_raw=True)
    record = log.append(prediction_record(log, {}, "PAT-9", "fp", [], {"age": 3}))
    assert record["patient_id"] == "PAT-9" and record["inputs"] == {"age": 3}


@pytest.mark.parametrize("damage, named", [
    ("edit", "line 3 (seq 2): content does not match its hash"),
    ("delete", "line 3 (seq 3): expected seq 2"),
    ("swap", "line 2 (seq 2): expected seq 1"),
    ("truncate", "line 5: incomplete last record"),
])
def test_tampering_is_found_and_named(tmp_path: Path, damage: str, named: str) -> None:
    path = tmp_path / "log.jsonl"
    fill(path)
    lines = path.read_text().splitlines(keepends=True)
    if damage == "edit":
        record = json.loads(lines[2])
        record["outputs"][0]["probability"] = 0.99
        lines[2] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    elif damage == "delete":
        del lines[2]
    elif damage == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    else:
        lines[4] = lines[4][:20]
    rewrite(path, lines)
    result = verify_log(path)
    assert not result.ok and result.problems[0].startswith(named), result.problems
    if damage == "truncate":
        with pytest.raises(RuntimeError, match="incomplete"):
            AuditLog(path).append({"x": 1})


def _writer(path: str, worker: int) -> None:
    log = AuditLog(path)
    for i in range(200):
        log.append({"worker": worker, "i": i})


def test_four_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    run_in_processes(_writer, [(str(path), w) for w in range(4)], timeout=120)
    result = verify_log(path)
    assert result.ok and result.n_records == 800
    seen = {(r["worker"], r["i"]) for r in AuditLog(path).records()}
    assert seen == {(w, i) for w in range(4) for i in range(200)}


def test_location_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRSRISK_AUDIT_LOG", str(tmp_path / "env.jsonl"))
    assert resolve_log_path(None) == tmp_path / "env.jsonl"
    assert resolve_log_path(tmp_path / "x.jsonl") == tmp_path / "x.jsonl"
    monkeypatch.delenv("CRSRISK_AUDIT_LOG")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert resolve_log_path(None) == tmp_path / "xdg" / "crsrisk" / "audit" / "predictions.jsonl"
