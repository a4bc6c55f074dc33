"""Shared, session-scoped fixtures: a small synthetic cohort and a quickly fitted model bundle."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, settings
from xgboost import XGBClassifier

# Every default location (the audit log, its keys and witness, the user's signing key) points into a folder of this
# test session, set before anything is imported, so no test writes into the real home and subprocesses agree.
_HOME = tempfile.mkdtemp(prefix="crsrisk-test-home-")
for _variable in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
    os.environ[_variable] = os.path.join(_HOME, _variable.lower())

from crsrisk.bundle.calibration import Calibrator, fit_calibrator  # noqa: E402
from crsrisk.bundle.keyring import user_key_path, user_signing_key
from crsrisk.cohort.validated import Cohort
from crsrisk.cohort.io import load_cohort
from crsrisk.simulate import simulate_cohort, write_simulated
from crsrisk.tasks import DEFAULT_TASKS
from crsrisk.training.config import BootstrapConfig, CVConfig, TrainConfig, TuningConfig
from crsrisk.training.run import train
from tests_support import fitted_bundle

# Fuzz budgets as hypothesis profiles, chosen by CRSRISK_FUZZ_PROFILE: "ci" (the default; its budget can still be
# set with CRSRISK_FUZZ_EXAMPLES, 150 unless said) or "long" (20,000 examples per fuzz test, for a campaign:
# CRSRISK_FUZZ_PROFILE=long pytest -q -p no:cacheprovider tests/test_fuzz_predict.py tests/test_fuzz_cli.py).
_FUZZ_SETTINGS = {
    "deadline": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
}
settings.register_profile("ci", max_examples=int(os.environ.get("CRSRISK_FUZZ_EXAMPLES", "150")), **_FUZZ_SETTINGS)
settings.register_profile("long", max_examples=20_000, **_FUZZ_SETTINGS)
settings.load_profile(os.environ.get("CRSRISK_FUZZ_PROFILE", "ci"))

# The session's signing key: the session home's own user key. Session- and module-scoped fixtures run before any
# test's private homes are set (pytest sets up higher-scoped fixtures first), so the bundles they save are signed
# with it; every test trusts it through $CRSRISK_TRUSTED_KEYS, as a site trusts another team's key. The default
# stays strict: nothing sets CRSRISK_ALLOW_UNVERIFIED, and a bundle a test trains itself is signed with that
# test's own key.
user_signing_key()
SESSION_SIGNING_KEY = user_key_path().with_suffix(".pub")


@pytest.fixture(autouse=True)
def private_audit_homes(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default audit log, its keys and its witness live in the user's data, config and state folders: point
    those into a temporary folder per test, so no test writes the real home or sees another test's log or keys.
    The session's bundles stay trusted (``SESSION_SIGNING_KEY``); unverified bundles stay refused."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    for name in (
        "CRSRISK_AUDIT_KEY",
        "CRSRISK_AUDIT_KEY_FILE",
        "CRSRISK_AUDIT_SALT",
        "CRSRISK_AUDIT_PSEUDONYM_KEY_FILE",
        "CRSRISK_AUDIT_WITNESS",
        "CRSRISK_ALLOW_UNVERIFIED",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CRSRISK_TRUSTED_KEYS", str(SESSION_SIGNING_KEY))


@pytest.fixture(scope="session")
def small_cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 400-infusion synthetic cohort written in the contract."""
    out = tmp_path_factory.mktemp("cohort") / "small"
    write_simulated(simulate_cohort(n=400, seed=5), out)
    return out


@pytest.fixture(scope="session")
def small_cohort(small_cohort_dir: Path) -> Cohort:
    """The same cohort, loaded and validated."""
    return load_cohort(small_cohort_dir)


@pytest.fixture(scope="session")
def small_bundle(small_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle with every task and landmark, fitted directly (no tuning) so tests stay fast."""

    def fit(X: pd.DataFrame, y: np.ndarray) -> tuple[Any, Calibrator]:
        fitted = XGBClassifier(n_estimators=40, max_depth=3, n_jobs=1, random_state=0).fit(X, y)
        return fitted.get_booster(), fit_calibrator(fitted.predict(X, output_margin=True), y, "platt")

    return fitted_bundle(small_cohort, tmp_path_factory.mktemp("bundle") / "model", DEFAULT_TASKS.values(), fit, "test")


TINY = TrainConfig(
    seed=3,
    cv=CVConfig(n_splits=3, n_repeats=1),
    tuning=TuningConfig(n_iter=2, inner_splits=2),
    bootstrap=BootstrapConfig(n_boot=50),
    xgboost_threads=1,
)


# Which tests use `trained`: written by each xdist worker at collection, read by the controller's scheduler (below).
# The controller imports this file first and its workers inherit the variable, so all agree on the path.
_TRAINED_TESTS = Path(os.environ.setdefault("CRSRISK_TEST_TRAINED_NODEIDS", os.path.join(_HOME, "trained-tests.json")))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        ids = [item.nodeid for item in items if "trained" in getattr(item, "fixturenames", ())]
        partial = _TRAINED_TESTS.with_name(f"{_TRAINED_TESTS.name}.{os.getpid()}")
        partial.write_text(json.dumps(ids))
        os.replace(partial, _TRAINED_TESTS)  # whole or absent: each worker writes the same list


class _TrainedTestsTogether:
    """``--dist load``, except that the tests using ``trained`` are one unit of work, handed out first.

    A session fixture is set up once per xdist worker, and ``trained`` (a real training run) is the suite's costliest
    setup: under plain ``load`` both workers trained it. xdist's own ``xdist_group``/``--dist loadgroup`` would do
    this but silently stops grouping on pytest 9.2 (pytest-dev/pytest-xdist#1386), so the scheduler is made here:
    xdist's LoadScopeScheduling with one scope for those tests and one per test for the rest (larger scopes go
    first)."""

    @staticmethod
    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
        if config.getoption("dist") != "load":
            return None  # another --dist the caller asked for: xdist's own
        from xdist.scheduler import LoadScopeScheduling

        class Scheduling(LoadScopeScheduling):
            together: set[str] | None = None

            def _split_scope(self, nodeid: str) -> str:
                if self.together is None:  # first called once every worker has collected (and written the list)
                    self.together = set(json.loads(_TRAINED_TESTS.read_text())) if _TRAINED_TESTS.exists() else set()
                return "trained" if nodeid in self.together else nodeid

        return Scheduling(config, log)


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist") and not os.environ.get("PYTEST_XDIST_WORKER"):
        config.pluginmanager.register(_TrainedTestsTogether(), "crsrisk-trained-tests-together")


@pytest.fixture(scope="session")
def trained(small_cohort_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, object]:
    """A real training run (tiny budget) into a SQLite MLflow store, shared by training and serving tests."""
    work = tmp_path_factory.mktemp("train")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    result = train(small_cohort_dir, config=TINY, tracking_uri=uri, out=work / "run", show_progress=False)
    return work, uri, result
