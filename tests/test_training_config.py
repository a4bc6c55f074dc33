"""Experiment files are validated field by field; every shipped experiment file loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from crsrisk.training.config import TrainConfig, load_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_experiment_loads(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, TrainConfig) and config.tasks


def test_defaults_and_overrides() -> None:
    config = load_config(None, seed=5)
    assert config.seed == 5 and config.cv.scheme == "repeated_kfold" and config.calibration == "platt"


@pytest.mark.parametrize(
    "text, field",
    [
        ("cv: {n_splits: 1}", "cv.n_splits"),
        ("calibration: beta", "calibration"),
        ("models: [forest]", "models.0"),
        ("tuning: {budget: 3}", "tuning.budget"),
    ],
)
def test_bad_setting_names_the_field_and_value(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        load_config(path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(path)


def test_an_earlier_run_folder_is_kept_not_deleted(tmp_path: Path) -> None:
    from crsrisk.training.artifacts import prepare_out_dir

    out = prepare_out_dir(tmp_path / "run")
    (out / "metrics.json").write_text("first")
    prepare_out_dir(tmp_path / "run")
    (out / "metrics.json").write_text("second")
    prepare_out_dir(tmp_path / "run")
    kept = sorted(p.read_text() for p in tmp_path.glob("run.previous-*/metrics.json"))
    assert kept == ["first", "second"] and not any((tmp_path / "run").iterdir())
