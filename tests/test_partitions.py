"""Partitioned Parquet cohorts and streaming batch scoring: same scores as in memory, errors that name the file."""

from __future__ import annotations

import hashlib
import pickle
import shutil
import subprocess
import sys
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crsrisk.scoring.batch import BATCH_COLUMNS, score_partitioned
from crsrisk.cohort.io import load_cohort
from crsrisk.cohort.partitions import bucket_of, is_partitioned, iter_chunks, write_partitioned
from crsrisk.errors import CohortValidationError, Problem
from crsrisk.scoring import load_model, predict_cohort
from crsrisk.simulate import simulate_cohort, write_simulated

KEY = ["patient_id", "task", "landmark_hours"]


@pytest.fixture(scope="module")
def sim():
    """120 synthetic infusions, as the generator writes them (raw contract tables)."""
    return simulate_cohort(n=120, seed=11)


@pytest.fixture(scope="module")
def expected(sim, small_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The in-memory scores of the whole cohort, through the ordinary folder loader."""
    folder = write_simulated(sim, tmp_path_factory.mktemp("flat") / "cohort")
    return sorted_scores(predict_cohort(load_cohort(folder), small_bundle)[BATCH_COLUMNS])


def sorted_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """In key order, with a blank reason read from CSV (NaN) as the empty text it was written from."""
    plain = scores.assign(reason=scores["reason"].fillna(""))
    plain = plain.astype({c: object for c in ("task", "band", "status", "reason")})
    plain["band"] = plain["band"].where(plain["band"].notna(), None)  # an unscored row: None in memory, NaN from CSV
    return plain.astype({"patient_id": str}).sort_values(KEY).reset_index(drop=True)


def scored(folder: Path, out: Path, bundle: Path, **options) -> pd.DataFrame:
    score_partitioned(folder, out, bundle, **options)
    return sorted_scores(pd.read_csv(out, dtype={"patient_id": str}))


def test_buckets_are_stable_and_spread_ids() -> None:
    assert bucket_of(["SIM00000", "P-1"], 16).tolist() == bucket_of(["SIM00000", "P-1"], 16).tolist()
    spread = np.bincount(bucket_of([f"P{i}" for i in range(4000)], 8), minlength=8)
    assert spread.min() > 400  # about 500 each
    assert int(bucket_of(["abc"], 1000)[0]) == int.from_bytes(hashlib.sha256(b"abc").digest()[:8], "big") % 1000


def test_bucketed_layout_streams_to_the_same_scores_as_in_memory(sim, expected, small_bundle, tmp_path) -> None:
    folder = write_partitioned(sim, tmp_path / "parts", buckets=4)
    assert is_partitioned(folder) and not is_partitioned(tmp_path)
    assert sorted(p.name for p in (folder / "measurements").iterdir()) == [f"bucket={k}" for k in range(4)]
    chunks = list(iter_chunks(folder, chunk_size=25))
    assert sum(len(c.patients) for c in chunks) == 120 and max(len(c.patients) for c in chunks) <= 25
    assert all(c.synthetic for c in chunks)
    pd.testing.assert_frame_equal(scored(folder, tmp_path / "s.csv", small_bundle, chunk_size=25), expected)


def test_any_files_with_a_patients_rows_split_across_them_give_the_same_scores(
    sim, expected, small_bundle, tmp_path
) -> None:
    folder = tmp_path / "loose"
    rng = np.random.default_rng(0)
    for name in ("patients", "measurements", "events"):
        table = getattr(sim, name)
        (folder / name / "nested").mkdir(parents=True)
        shuffled = table.sample(frac=1, random_state=1)  # so each patient's rows spread over the files
        cuts = [0, *np.sort(rng.choice(np.arange(1, len(table)), 2, replace=False)).tolist(), len(table)]
        for i in range(3):
            file = folder / name / ("nested" if i == 2 else ".") / f"part{i}.parquet"
            shuffled.iloc[cuts[i] : cuts[i + 1]].to_parquet(file, index=False)
    measurements = pd.concat(pd.read_parquet(f) for f in (folder / "measurements").rglob("*.parquet"))
    assert measurements.groupby("patient_id").size().max() > 1
    pd.testing.assert_frame_equal(scored(folder, tmp_path / "s.csv", small_bundle, chunk_size=50), expected)


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(buckets=st.integers(1, 9), chunk_size=st.integers(15, 130))
def test_every_bucket_count_and_chunk_size_give_the_same_scores(
    sim, expected, small_bundle, tmp_path, buckets: int, chunk_size: int
) -> None:
    folder = write_partitioned(sim, tmp_path / "parts", buckets=buckets, overwrite=True)
    got = scored(folder, tmp_path / "s.csv", small_bundle, chunk_size=chunk_size)
    pd.testing.assert_frame_equal(got, expected)


def test_chunks_written_one_at_a_time_form_one_cohort(small_bundle, tmp_path) -> None:
    parts = []
    for seed in (1, 2):  # the generator numbers every cohort's ids from 0: prefix them to keep them distinct
        part = simulate_cohort(n=30, seed=seed)
        parts.append(
            SimpleNamespace(
                **{
                    name: getattr(part, name).assign(patient_id=f"S{seed}-" + getattr(part, name)["patient_id"])
                    for name in ("patients", "measurements", "events")
                }
            )
        )
    folder = write_partitioned(iter(parts), tmp_path / "parts", buckets=3)
    assert len(list((folder / "patients").rglob("*.parquet"))) == 6  # a file per chunk and bucket
    summary = score_partitioned(folder, tmp_path / "s.csv", small_bundle, chunk_size=7)
    assert summary.infusions == 60 and summary.rows == len(pd.read_csv(tmp_path / "s.csv"))
    with pytest.raises(FileExistsError):
        write_partitioned(parts[0], folder)


def move_row(folder: Path, table: str, source: str, target: str, row: int = 0) -> str:
    """Move one row of a table from one bucket's file to another's; returns its patient_id."""
    src, dst = folder / table / source / "part-00000.parquet", folder / table / target / "part-00000.parquet"
    a, b = pd.read_parquet(src), pd.read_parquet(dst)
    moved = a.iloc[[row]]
    a.drop(index=a.index[row]).to_parquet(src, index=False)
    pd.concat([b, moved]).to_parquet(dst, index=False)
    return str(moved["patient_id"].iloc[0])


def test_a_row_in_the_wrong_bucket_is_named_never_silently_dropped(sim, small_bundle, tmp_path) -> None:
    folder = write_partitioned(sim, tmp_path / "parts", buckets=2)
    patient = move_row(folder, "measurements", "bucket=0", "bucket=1")
    (tmp_path / "s.csv").write_text("earlier scores\n")
    with pytest.raises(CohortValidationError) as caught:
        score_partitioned(folder, tmp_path / "s.csv", small_bundle)
    [problem] = caught.value.problems
    assert str(problem) == (
        f"measurements (measurements/bucket=1/part-00000.parquet), patient_id={patient!r}, "
        "field 'patient_id': no such patient_id in the patients table of bucket=1 "
        "(a row must sit in its patient's bucket)"
    )
    assert (tmp_path / "s.csv").read_text() == "earlier scores\n"  # kept, and no staging file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts", "s.csv"]


def test_duplicate_ids_across_files_and_bad_values_name_file_patient_and_field(sim, small_bundle, tmp_path) -> None:
    folder = write_partitioned(sim, tmp_path / "parts", buckets=3)
    patients = folder / "patients" / "bucket=2" / "part-00000.parquet"
    pd.read_parquet(patients).iloc[:1].to_parquet(folder / "patients" / "bucket=2" / "copy.parquet", index=False)
    with pytest.raises(
        CohortValidationError,
        match=r"patients \(patients/bucket=2/(copy|part-00000)\.parquet\), "
        r"patient_id='\w+', field 'patient_id': duplicate patient_id",
    ):
        score_partitioned(folder, tmp_path / "s.csv", small_bundle)
    (folder / "patients" / "bucket=2" / "copy.parquet").unlink()
    for bucket in (0, 2):  # a bad value in two chunks: both are reported, nothing is written
        file = folder / "measurements" / f"bucket={bucket}" / "part-00000.parquet"
        table = pd.read_parquet(file)
        table.loc[table.index[3], ["analyte", "unit", "value"]] = ["temperature", "degC", 60.0]
        table.to_parquet(file, index=False)
    with pytest.raises(CohortValidationError) as caught:
        score_partitioned(folder, tmp_path / "s.csv", small_bundle, chunk_size=10)
    shown = [str(p) for p in caught.value.problems]
    assert [s.split(",")[0] for s in shown] == [
        "measurements (measurements/bucket=0/part-00000.parquet)",
        "measurements (measurements/bucket=2/part-00000.parquet)",
    ]
    assert all("field 'value': value 60.0" in s and "patient_id=" in s for s in shown)
    assert not (tmp_path / "s.csv").exists()


def test_missing_or_unreadable_tables_are_named(sim, small_bundle, tmp_path) -> None:
    folder = write_partitioned(sim, tmp_path / "parts", buckets=2)
    (folder / "measurements" / "bucket=1" / "part-00000.parquet").write_text("not parquet")
    with pytest.raises(CohortValidationError, match=r"measurements.*cannot read"):
        score_partitioned(folder, tmp_path / "s.csv", small_bundle)
    shutil.rmtree(folder / "events")
    with pytest.raises(CohortValidationError, match=r"events, field '<folder>': missing table folder"):
        score_partitioned(folder, tmp_path / "s.csv", small_bundle)


def test_a_validation_error_survives_pickling_as_a_dask_worker_sends_it() -> None:
    error = CohortValidationError(
        [Problem("measurements (x.parquet)", "value", "out of range", None, "P1", 60.0, csv=False)], truncated=3
    )
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.problems == error.problems and again.truncated == 3


@pytest.mark.slow
def test_cli_streams_a_partitioned_cohort_in_process_and_on_a_local_dask_cluster(
    sim, expected, small_bundle, tmp_path
) -> None:
    folder = write_partitioned(sim, tmp_path / "parts", buckets=4)
    outputs = []
    for extra in ([], ["--dask", "local"]):
        out = tmp_path / f"scores{len(extra)}.csv"
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "crsrisk.cli",
                "predict",
                str(folder),
                "--model",
                str(small_bundle),
                "--out",
                str(out),
                "--chunk-size",
                "30",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert f"scored 120 infusions ({len(expected)} rows" in run.stdout
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]  # same rows in the same order
    pd.testing.assert_frame_equal(
        sorted_scores(pd.read_csv(tmp_path / "scores0.csv", dtype={"patient_id": str})), expected
    )
    bad = subprocess.run(
        [sys.executable, "-m", "crsrisk.cli", "predict", str(folder / "patients"), "--out", str(tmp_path / "x.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_a_loaded_bundle_scores_a_partitioned_cohort_in_even_chunks(sim, small_bundle, tmp_path) -> None:
    folder = write_partitioned(sim, tmp_path / "parts", buckets=2)
    summary = score_partitioned(folder, tmp_path / "s.csv", load_model(small_bundle), chunk_size=60)
    assert summary.infusions == 120 and summary.chunks == 3  # 60 at most per chunk, within each of 2 buckets
    scores = pd.read_csv(tmp_path / "s.csv")
    assert list(scores.columns) == BATCH_COLUMNS and scores["probability"].between(0, 1).all()


def test_keyword_arguments_reach_predict_cohort_untouched(sim, small_bundle, tmp_path) -> None:
    flat = load_cohort(write_simulated(sim, tmp_path / "flat"))
    at_40 = sorted_scores(predict_cohort(flat, small_bundle, at_hours=40.0)[BATCH_COLUMNS])
    folder = write_partitioned(sim, tmp_path / "parts", buckets=3)
    got = scored(folder, tmp_path / "s.csv", small_bundle, chunk_size=50, at_hours=40.0)
    assert len(got) < len(sorted_scores(predict_cohort(flat, small_bundle)))  # one hour, not every landmark
    pd.testing.assert_frame_equal(got, at_40)
