"""Gymnasium environments of q_grasp; importing this package registers their ids.

Registration only records entry-point strings, so importing ``q_grasp.envs`` loads neither
pybullet nor torch; ``gymnasium.make`` imports the env module when it is first needed.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

ENV_SPECS: dict[str, tuple[str, dict]] = {
    "q_grasp/Reacher-v0": ("q_grasp.envs.reacher:ReacherEnv", {}),
    # One primitive object per scene: the task the scripted baseline is measured on.
    "q_grasp/TopDownGrasp-v0": ("q_grasp.envs.grasp:TopDownGraspEnv", {}),
    # Clutter: 1-5 objects, an episode lasts until the table is cleared or 10 attempts.
    "q_grasp/TopDownGraspClutter-v0": (
        "q_grasp.envs.grasp:TopDownGraspEnv",
        {"min_objects": 1, "max_objects": 5, "max_attempts": 10},
    ),
}
"""Registered id -> (entry point, default keyword arguments)."""

for _env_id, (_entry_point, _kwargs) in ENV_SPECS.items():
    if _env_id not in registry:  # importing twice (e.g. reload) must not warn
        register(id=_env_id, entry_point=_entry_point, kwargs=dict(_kwargs))

__all__ = ["ENV_SPECS"]
