"""The tasks the ROS nodes, the bringup and the launch file run (no heavy imports: the bringup
and the parameter-file generator read these before anything starts)."""

from __future__ import annotations

GRASP_TASKS = ("grasp", "grasp_clutter")
"""Top-down grasping: one object per scene, or clutter (several objects, more attempts)."""
TASKS = (*GRASP_TASKS, "reacher")
"""Every task with a shipped parameters file (config/sim_train_<task>.yaml)."""


def is_grasp_task(task: str) -> bool:
    """Whether ``task`` is a grasping task (camera images, Q-maps, grasp attempts)."""
    return task in GRASP_TASKS
