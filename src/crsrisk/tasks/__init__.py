"""The prediction tasks (as data) and their risk sets and labels."""

from crsrisk.tasks.definitions import (
    DEFAULT_TASKS,
    FIRST_TOCILIZUMAB,
    Task,
    get_task,
    landmark_label,
    task_from_settings,
    tasks_from_config,
)
from crsrisk.tasks.labels import label_table, landmark_times, task_summary

__all__ = ["DEFAULT_TASKS", "FIRST_TOCILIZUMAB", "Task", "get_task", "landmark_label", "task_from_settings", "tasks_from_config", "label_table",
           "landmark_times", "task_summary"]
