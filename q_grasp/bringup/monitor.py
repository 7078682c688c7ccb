"""Progress of a bringup from the nodes' /diagnostics, as an operator would see it."""

from __future__ import annotations

import math
import threading
from typing import Any

from q_grasp.tasks.names import is_grasp_task


def as_number(values: dict[str, str], key: str, default: float = math.nan) -> float:
    try:
        return float(values[key])
    except (KeyError, ValueError):
        return default


class Monitor:
    """Latest /diagnostics of the trainer and of the policy, per status name."""

    def __init__(self, node: Any, namespace: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        from q_grasp.nodes.qos import DEFAULT_QOS

        self.node = node
        self._lock = threading.Lock()
        self.trainer: dict[str, str] = {}
        self.policy: dict[str, str] = {}
        self.sim_arm: dict[str, str] = {}
        self.messages: dict[str, tuple[bytes, str]] = {}
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                 DEFAULT_QOS)

    def _on_diagnostics(self, msg: Any) -> None:
        with self._lock:
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                if status.name == "q_grasp/trainer":
                    self.trainer = values
                elif status.name == "q_grasp/policy":
                    self.policy = values
                elif status.name == "q_grasp/sim_arm":
                    self.sim_arm = values
                else:
                    continue
                self.messages[status.name] = (status.level, status.message)

    def snapshot(self) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """Copies of the trainer's, the policy's and sim_arm's latest values."""
        with self._lock:
            return dict(self.trainer), dict(self.policy), dict(self.sim_arm)

    def forget_policy(self) -> None:
        """Drop the policy's values (a new policy node takes over the name)."""
        with self._lock:
            self.policy = {}
            self.messages.pop("q_grasp/policy", None)

    def errors(self) -> list[str]:
        """Nodes whose status level is ERROR, with their message."""
        from diagnostic_msgs.msg import DiagnosticStatus

        with self._lock:
            return [f"{name}: {message}" for name, (level, message) in self.messages.items()
                    if level == DiagnosticStatus.ERROR]


def elapsed_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:3d}:{secs:02d}"


def progress_line(task: str, elapsed_s: float, budget: str, trainer: dict[str, str],
                  policy: dict[str, str], rate: float) -> str:
    """One human-readable progress line from the nodes' diagnostics."""
    steps = int(as_number(policy, "steps", 0))
    parts = [f"[{elapsed_text(elapsed_s)}] transitions {steps}{budget} ({rate:.1f}/s)"]
    if is_grasp_task(task):
        successes = int(as_number(policy, "grasp_successes", 0))
        recent = as_number(policy, "attempt_success_rate")
        parts.append(f"grasp attempts {steps}, successes {successes}"
                     + ("" if math.isnan(recent) else f" (last 50: {100 * recent:.0f}%)"))
    else:
        episodes = int(as_number(policy, "episodes", 0))
        recent = as_number(policy, "success_rate")
        parts.append(f"episodes {episodes}"
                     + ("" if math.isnan(recent) else f", success (last 50) {100 * recent:.0f}%"))
    if trainer:
        loss = as_number(trainer, "loss")
        parts.append(f"trainer: {int(as_number(trainer, 'transitions', 0))} received, updates "
                     f"{int(as_number(trainer, 'updates', 0))} "
                     f"({as_number(trainer, 'updates_per_s', 0.0):.1f}/s), loss "
                     + ("-" if math.isnan(loss) else f"{loss:.4f}"))
    epsilon = as_number(policy, "epsilon")
    if not math.isnan(epsilon):
        parts.append(f"eps {epsilon:.3f}")
    parts.append(f"weights v{policy.get('weights_version', '-')}")
    return " | ".join(parts)
