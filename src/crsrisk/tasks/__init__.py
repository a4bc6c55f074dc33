"""The prediction tasks: each owns its risk set, its labels and ``dataset(cohort, landmark)``."""

from typing import Any

import pandas as pd

from crsrisk.cohort.validated import Cohort
from crsrisk.landmarks import FirstEvent, Grid, Hours, Landmark, parse_landmark
from crsrisk.tasks.base import Dataset, Task, TaskBase
from crsrisk.tasks.definitions import DEFAULT_TASKS, get_task, task_from_settings, tasks_from_config
from crsrisk.tasks.transformer import LandmarkFeatures


def label_table(cohort: Cohort, task: TaskBase | str, landmark: Any, label: str = "primary") -> pd.DataFrame:
    """``get_task(task).label_table(cohort, landmark, label)``: labels of the risk set at the landmark."""
    return get_task(task).label_table(cohort, landmark, label)


__all__ = [
    "DEFAULT_TASKS",
    "Dataset",
    "FirstEvent",
    "Grid",
    "Hours",
    "Landmark",
    "LandmarkFeatures",
    "Task",
    "TaskBase",
    "get_task",
    "label_table",
    "parse_landmark",
    "task_from_settings",
    "tasks_from_config",
]
