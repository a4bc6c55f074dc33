"""The prediction audit log: HMAC-chained records, tamper detection by record, anchored heads, torn-line
recovery, many writers sharing one key, clear errors for unwritable paths, no raw ids; and the regression tests
of the audit campaign's classes (key-creation races, key beside the log, truncation, forged appends, re-chaining,
delete-and-renumber, duplicate keys, non-canonical encodings), caught by plain ``verify`` through the witness."""

from __future__ import annotations

import hashlib
import hmac
import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from crsrisk.audit import AuditLog, log_head, prediction_record, pseudonym, pseudonym_key, resolve_log_path, verify_log
from crsrisk.audit.location import key_path, pseudonym_key_path, witness_path
from crsrisk.audit.verify import _lines
from crsrisk.cli import app
from crsrisk.errors import AuditLogError
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
    assert records[3]["patient_hash"] == pseudonym(pseudonym_key(), "PAT-3")  # what an outcome cohort recomputes
    assert pseudonym_key_path().stat().st_mode & 0o777 == 0o600 and not (tmp_path / "log.jsonl.salt").exists()


def test_store_raw_keeps_the_id_when_configured(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "raw.jsonl", store_raw=True)
    record = log.append(prediction_record(log, {}, "PAT-9", "fp", [], {"age": 3}))
    assert record["patient_id"] == "PAT-9" and record["inputs"] == {"age": 3}


@pytest.mark.parametrize(
    "damage, named",
    [
        ("edit", "line 3 (seq 2): content does not match its HMAC: record edited"),
        ("delete", "line 3 (seq 3): expected seq 2"),
        ("swap", "line 2 (seq 2): expected seq 1"),
        ("torn", "line 6: incomplete last record"),
    ],
)
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
    else:  # a writer killed after 20 bytes of its record (never witnessed)
        lines.append(lines[4][:20])
    rewrite(path, lines)
    result = verify_log(path)
    assert not result.ok and result.problems[0].startswith(named), result.problems
    if damage == "torn":  # the next writer moves the torn line aside and says so; the chain stays whole
        record = AuditLog(path).append({"x": 1})
        after = verify_log(path)
        assert after.ok and after.n_records == 7 and record["seq"] == 6, after.problems
        recoveries = [note for note in after.notes if "torn last line" in note]
        assert len(recoveries) == 1 and "line 6 (seq 5): a torn last line (20 bytes)" in recoveries[0]
        assert "the file holds exactly those bytes" in recoveries[0]
        recovered = list(tmp_path.glob("log.jsonl.recovered-*"))
        assert len(recovered) == 1 and recovered[0].read_text() == lines[5]


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


def rechain(path: Path, key: bytes) -> None:
    """What an attacker without the log's key can do: edit a record and recompute the whole chain."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[1]["outputs"][0]["probability"] = 0.99
    previous = "0" * 64
    for record in records:
        record["prev_hash"] = previous
        body = json.dumps({k: v for k, v in record.items() if k != "hash"}, sort_keys=True, separators=(",", ":"))
        record["hash"] = previous = (
            hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
            if key
            else hashlib.sha256(body.encode()).hexdigest()
        )
    path.write_text("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records))


@pytest.mark.parametrize("key", [b"", b"a guessed key of at least thirty-two characters"])
def test_a_chain_recomputed_without_the_key_is_refused(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "log.jsonl"
    fill(path)
    head = log_head(path)
    rechain(path, key)
    result = verify_log(path)
    assert not result.ok and len(result.problems) == 6
    assert result.problems[0].startswith("line 1 (seq 0): content does not match its HMAC")
    assert result.problems[5].startswith("record seq 4 has hash") and "witnessed head" in result.problems[5]
    anchored = verify_log(path, expect_head=head)
    assert anchored.problems[-1].startswith("record seq 4 has hash") and anchored.problems[-1].endswith("rewritten")


def test_records_dropped_from_the_end_are_found_by_the_witness_or_an_anchored_head(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    fill(path)
    head = log_head(path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert head == (4, records[4]["hash"])
    assert verify_log(path, expect_head=head).ok
    rewrite(path, path.read_text().splitlines(keepends=True)[:3])
    assert verify_log(path, witness=False).ok  # a shorter chain is still a valid chain ...
    result = verify_log(path, expect_head=head, witness=False)  # ... but not one that reaches the anchored head
    assert result.problems == [
        "expected head seq 4 is not in the log, which ends at seq 2: records were dropped "
        "from the end, or the log was replaced"
    ]
    path.write_text("")
    assert "which is empty" in verify_log(path, expect_head=head, witness=False).problems[0]
    assert verify_log(path).problems[0].startswith("witnessed head (in ")


@pytest.mark.parametrize(
    "line",
    [
        b"\x00\xff\xfe garbage \x80\n",
        b"[1, 2, 3]\n",
        b'{"seq": "3", "hash": 5, "prev_hash": null}\n',
        b'{"seq": true, "hash": "x", "prev_hash": "y"}\n',
        b'{"seq": 2, "hash": "\\ud800", "prev_hash": "y", "p": NaN}\n',
        b'{"seq": 2, "hash": "\xc3\xa9", "prev_hash": "y"}\n',
        b"[" * 100000 + b"\n",
    ],
)
def test_verify_reports_a_damaged_line_and_never_crashes(tmp_path: Path, line: bytes) -> None:
    path = tmp_path / "log.jsonl"
    fill(path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2] + [line] + lines[2:]))
    result = verify_log(path)
    assert not result.ok and result.problems[0].startswith("line 3"), result.problems
    assert result.n_records >= 5


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=200), at=st.integers(0, 5))
def test_verify_survives_any_inserted_bytes(tmp_path: Path, garbage: bytes, at: int) -> None:
    path = tmp_path / "fuzz.jsonl"
    if not path.exists():
        fill(path)
    lines = path.read_bytes().splitlines(keepends=True)
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(b"".join(lines[:at] + [garbage + b"\n"] + lines[at:]))
    result = verify_log(damaged, key=AuditLog(path).key())
    assert not result.ok and result.problems


def test_verify_needs_the_key_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log.jsonl"
    fill(path, 2)
    key_path(path).rename(tmp_path / "elsewhere.key")
    with pytest.raises(AuditLogError, match="no audit key"):
        verify_log(path)
    monkeypatch.setenv("CRSRISK_AUDIT_KEY", (tmp_path / "elsewhere.key").read_text())
    assert verify_log(path).ok


def test_files_and_new_folders_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "log.jsonl"
    log = fill(path, 1)
    assert log.hash_patient_id("x")
    for folder in (tmp_path / "new", tmp_path / "new" / "deeper"):
        assert folder.stat().st_mode & 0o777 == 0o700
    for file in (path, key_path(path), pseudonym_key_path(), witness_path(path)):
        assert file.stat().st_mode & 0o777 == 0o600, file
        assert file.parent.stat().st_mode & 0o777 == 0o700, file
    assert len(key_path(path).read_text()) == 64


@pytest.mark.parametrize("where", ["directory", "under_a_file"])
def test_an_unwritable_log_path_is_a_clear_error(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path if where == "directory" else tmp_path / "file" / "log.jsonl"
    with pytest.raises(AuditLogError, match="cannot write the audit log"):
        AuditLog(path).append({"x": 1})
    result = CliRunner().invoke(app, ["audit-log", "head", str(path)])
    assert result.exit_code == 2 and "AuditLogError" in result.output


def test_a_foreign_file_is_not_appended_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRSRISK_AUDIT_KEY", "k" * 40)
    path = tmp_path / "cohort.csv"
    path.write_text("patient_id,age\nP1,3\n")
    with pytest.raises(AuditLogError, match="not an audit record"):
        AuditLog(path).append({"x": 1})
    assert path.read_text() == "patient_id,age\nP1,3\n"


RACES, RACERS = 300, 6


def _first_writer(paths: list[str], worker: int, barrier: Any, failures: str) -> None:
    """Start each fresh log at the same moment as the other racers; count (never raise) failed appends."""
    failed = []
    for path in paths:
        log = AuditLog(path)
        barrier.wait(timeout=60)
        try:
            log.append(prediction_record(log, {}, f"PAT-{worker}", "fp", [{"worker": worker}]))
        except Exception as error:  # noqa: BLE001 - the test counts every kind of failure
            failed.append(f"{path}: {error!r}")
    Path(failures).write_text("\n".join(failed))


@pytest.mark.slow
def test_regression_0_of_300_races_of_6_first_writers_fail(tmp_path: Path) -> None:
    paths = [tmp_path / f"race{round_}" / "log.jsonl" for round_ in range(RACES)]
    barrier = multiprocessing.get_context("spawn").Barrier(RACERS)
    failures = [tmp_path / f"failures{w}.txt" for w in range(RACERS)]
    run_in_processes(
        _first_writer, [([str(p) for p in paths], w, barrier, str(failures[w])) for w in range(RACERS)], timeout=240
    )
    failed = [line for file in failures for line in file.read_text().splitlines()]
    assert failed == [], failed[:5]
    for path in paths:
        result = verify_log(path)
        assert result.ok and result.n_records == RACERS, result.problems
        assert len({r["patient_hash"] for r in AuditLog(path).records()}) == RACERS  # one pseudonym key for all
    keys = key_path(paths[0]).parent
    assert len(list(keys.glob("*.key"))) == RACES and not list(keys.glob(".*"))  # one key each, no staging left


def test_cli_head_and_verify_with_expect_head(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    fill(path)
    runner = CliRunner()
    head = runner.invoke(app, ["audit-log", "head", str(path)])
    assert head.exit_code == 0 and head.output.strip() == "{}:{}".format(*log_head(path))
    anchored = head.output.strip()
    ok = runner.invoke(app, ["audit-log", "verify", str(path), "--expect-head", anchored])
    assert ok.exit_code == 0 and "chain intact; contains the expected head" in ok.output
    rewrite(path, path.read_text().splitlines(keepends=True)[:4])
    dropped = runner.invoke(app, ["audit-log", "verify", str(path), "--expect-head", anchored])
    assert dropped.exit_code == 1 and "records were dropped from the end" in dropped.output
    bad = runner.invoke(app, ["audit-log", "verify", str(path), "--expect-head", "4:xyz"])
    assert bad.exit_code == 2 and "expected SEQ:HASH" in bad.output


def test_a_lost_key_is_not_silently_replaced(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    fill(path, 2)
    key_path(path).unlink()
    with pytest.raises(AuditLogError, match="holds records but its key .* is missing"):
        AuditLog(path).append({"x": 1})
    assert len(path.read_text().splitlines()) == 2 and not key_path(path).exists()


def test_verify_reads_the_log_as_it_was_when_it_started(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = fill(path, 3)
    with open(path, "rb") as handle:
        lines = _lines(handle, path.stat().st_size)
        first = next(lines)
        log.append({"later": True})  # a writer appends while verify reads
        assert [first, *lines] == path.read_bytes().splitlines(keepends=True)[:3]


def test_a_writer_that_loses_the_key_race_uses_the_winners_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log.jsonl"
    winner = "w" * 64
    real_link = os.link

    def link_after_another_writer(source, target):  # another process links its complete key first
        Path(target).write_text(winner)
        return real_link(source, target)

    monkeypatch.setattr(os, "link", link_after_another_writer)
    log = AuditLog(path)
    assert log.key(create=True) == winner.encode()
    log.append({"x": 1})
    assert verify_log(path, key=winner.encode()).ok
    assert sorted(p.name for p in key_path(path).parent.iterdir()) == [key_path(path).name]  # staging removed


def test_a_key_from_the_environment_still_gets_a_private_folder_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRSRISK_AUDIT_KEY", "e" * 40)
    path = tmp_path / "made" / "log.jsonl"
    AuditLog(path).append({"x": 1})
    assert verify_log(path).ok and not (path.parent / "log.jsonl.key").exists() and not key_path(path).exists()
    assert path.parent.stat().st_mode & 0o777 == 0o700


def forge(path: Path, key: bytes, change: Any) -> None:
    """What a writer holding the chain key can do: change the records, then renumber and re-chain them all."""
    records = change([json.loads(line) for line in path.read_text().splitlines()])
    previous = "0" * 64
    for seq, record in enumerate(records):
        record.update(seq=seq, prev_hash=previous)
        body = json.dumps({k: v for k, v in record.items() if k != "hash"}, sort_keys=True, separators=(",", ":"))
        record["hash"] = previous = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    path.write_text("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records))


def test_regression_key_is_not_in_the_log_folder_by_default(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    fill(path, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl"]
    assert key_path(path).is_file() and tmp_path not in key_path(path).parents
    assert witness_path(path).read_text().splitlines() == ["{}:{}".format(*log_head(path))]


def test_regression_truncation_is_caught_by_plain_verify(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    fill(path)
    rewrite(path, path.read_text().splitlines(keepends=True)[:3])
    result = verify_log(path)
    assert result.problems == [
        f"witnessed head (in {witness_path(path)}) seq 4 is not in the log, which ends at "
        "seq 2: records were dropped from the end, or the log was replaced"
    ]


def test_regression_forged_append_and_rechain_are_caught(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    key = fill(path).key()
    forge(path, key, lambda records: [*records, {**records[-1], "outputs": [{"forged": True}]}])
    appended = verify_log(path)
    assert len(appended.problems) == 1 and "ends at seq 5 but the latest witnessed head" in appended.problems[0]

    def edit(records: list[dict]) -> list[dict]:
        records[1]["outputs"][0]["probability"] = 0.99
        return records[:5]

    forge(path, key, edit)
    rechained = verify_log(path)
    assert len(rechained.problems) == 1 and rechained.problems[0].startswith("record seq 4 has hash")
    assert rechained.problems[0].endswith("the log was rewritten")


def test_regression_delete_and_renumber_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    key = fill(path).key()
    forge(path, key, lambda records: records[:2] + records[3:])
    result = verify_log(path)
    assert verify_log(path, witness=False).ok  # the chain alone cannot see it
    assert len(result.problems) == 1 and "seq 4 is not in the log, which ends at seq 3" in result.problems[0]


def test_regression_a_duplicate_key_record_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    fill(path)
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('{"hash"', '{"band":"low","band":"high","hash"', 1)
    rewrite(path, lines)
    result = verify_log(path)
    assert result.problems[0] == (
        "line 3: names the key 'band' twice: a record with a duplicate key (the writer "
        "never makes one; readers would disagree on its value)"
    )


@pytest.mark.parametrize(
    "encode",
    [
        lambda r: json.dumps(r, sort_keys=True),  # spaces after separators
        lambda r: json.dumps(dict(reversed(list(r.items()))), separators=(",", ":")),  # keys not sorted
        lambda r: json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False),  # non-ASCII kept raw
    ],
)
def test_regression_a_non_canonical_encoding_is_caught(tmp_path: Path, encode: Any) -> None:
    path = tmp_path / "log.jsonl"
    log = fill(path, 2)
    log.append({"note": "é"})
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = encode(json.loads(lines[2])) + "\n"
    rewrite(path, lines)
    result = verify_log(path)
    assert result.problems == [
        "line 3 (seq 2): not the canonical encoding (keys sorted, no spaces, ASCII) the "
        "writer produces: record re-encoded or hand-edited"
    ]


def test_regression_a_legacy_key_beside_the_log_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    fill(path)
    key_path(path).rename(tmp_path / "old.jsonl.key")  # where crsrisk kept it before
    witness_path(path).unlink()  # and an old log had no witness
    result = verify_log(path)
    assert result.ok and result.n_records == 5, result.problems
    assert any("read from" in n and "old.jsonl.key beside the log" in n for n in result.notes)
    assert any(n.startswith("no witnessed head") for n in result.notes)
    AuditLog(path).append({"x": 1})  # later appends keep using the legacy key
    assert verify_log(path).ok and not key_path(path).exists()


def test_the_witness_can_be_syslog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRSRISK_AUDIT_WITNESS", "syslog")
    path = tmp_path / "log.jsonl"
    fill(path, 2)
    result = verify_log(path)
    assert result.ok and "the witness is syslog: compare its latest head with --expect-head" in result.notes


def test_a_prediction_record_carries_what_monitoring_needs(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "log.jsonl")
    output = {
        "task": "crs_grade2plus",
        "landmark_hours": 24.0,
        "horizon_hours": 48.0,
        "probability": 0.3,
        "band": "intermediate",
    }
    record = log.append(prediction_record(log, {"bundle_sha256": "ab" * 32}, "PAT-1", "fp", [output], now_hours=30.5))
    assert record["model_sha256"] == "ab" * 32 and record["now_hours"] == 30.5 and record["outputs"] == [output]
    assert record["patient_hash"] == pseudonym(pseudonym_key(), "PAT-1") and "PAT-1" not in json.dumps(record)
