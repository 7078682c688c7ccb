"""Parameters of the viewer node (the run shown in Rerun), without ROS."""

from __future__ import annotations

from dataclasses import dataclass

from q_grasp.config import check_each


@dataclass
class ViewerConfig:
    """Parameters of the viewer node."""

    rrd_path: str = "run.rrd"
    """The .rrd file the view is saved to (its folder is created)."""
    web_port: int = 0
    """Serve the web viewer at http://localhost:<web_port> (0: only the file)."""
    grpc_port: int = 9876
    """Port of the gRPC server the web viewer reads the live data from (with web_port)."""
    joint_rate_hz: float = 5.0
    """Joint states are drawn at most this often (wall clock): they arrive at hundreds per
    second, far more than a person sees."""
    image_rate_hz: float = 2.0
    """Camera images (colour and depth, each) are drawn at most this often (wall clock). The
    Q-map comes once per grasp decision and is always drawn."""
    urdf_path: str = ""
    """Robot model; empty: the packaged arm's URDF (sim_arm's default)."""

    def __post_init__(self) -> None:
        if not self.rrd_path.strip():
            raise ValueError("rrd_path: must not be empty")
        check_each(self, ("web_port", "grpc_port"),
                   lambda v: 0 <= v <= 65535, "must be a TCP port in [0, 65535]")
        check_each(self, ("joint_rate_hz", "image_rate_hz"), lambda v: v > 0.0, "must be > 0")
