"""Parameters of the sim_arm node, without ROS: pace, message rates, the still-world shortcuts
and the simulated arm, camera and scene (nested configs become dotted parameter names)."""

from __future__ import annotations

from dataclasses import dataclass, field

from q_grasp.config import check_each
from q_grasp.robot_config import RobotConfig
from q_grasp.sim.bullet import BulletSimConfig
from q_grasp.sim.camera import CameraConfig
from q_grasp.sim.robot import SimRobotConfig
from q_grasp.sim.scene import SceneConfig


@dataclass
class SimArmConfig:
    """Parameters of the sim_arm node (nested configs become dotted parameter names)."""

    seed: int = 0
    """Seed of the simulator's random stream (object shapes, sizes and poses)."""
    real_time_factor: float = 1.0
    """Simulated seconds per wall-clock second while physics runs; 0 runs as fast as the CPU
    allows (a still world: still_real_time_factor). Faster than real time needs every node on
    use_sim_time (publish_clock true)."""
    publish_clock: bool = True
    """Publish /clock with the simulated time and stamp every message with it."""
    sim_time_stamps: bool = False
    """Stamp every message with this simulator's own simulated time also when it does not
    publish /clock: a second simulator beside one that owns /clock (several arms feeding one
    trainer, each its own world at its own pace). Its policy times motions, settling and
    timeouts by its arm's stamps, which then follow this arm's physics; stamped with the node's
    clock (the other simulator's /clock on use_sim_time), they jumped with that one's 20 Hz
    /clock and its pace. False with publish_clock false: the node's clock (wall time without
    use_sim_time)."""
    tick_rate_hz: float = 120.0
    """Control loop rate in simulated time: trajectory setpoints are updated this often
    (rounded to whole physics steps)."""
    clock_rate_hz: float = 0.0
    """Rate (simulated time) of /clock; 0 publishes it every control tick. Every node on
    use_sim_time handles each /clock message in Python, so a lower rate saves CPU; sim-time
    timers of other nodes then fire with this granularity."""
    joint_state_rate_hz: float = 60.0
    """Rate (simulated time) of /joint_states."""
    camera_rate_hz: float = 10.0
    """Rate (simulated time) of camera images; 0 stops the camera."""
    publish_depth: bool = True
    """Publish the depth image and its camera_info."""
    camera_reuse_static_frames: bool = True
    """While nothing the camera sees has moved since the last rendered frame (every robot joint
    and every object's pose within 1e-5 m or rad, far below a pixel), publish that frame again
    with the new stamp instead of rendering the same image (most frames while the arm waits at
    home). False renders every frame."""
    skip_physics_when_still: bool = True
    """While no trajectory runs and nothing moves (every joint and object slower than
    still_velocity for still_time_s), let simulated time pass without stepping physics: with
    constant motor targets a world at rest stays as it is, so nothing observable changes, and
    the time a policy spends deciding or waiting for a camera frame costs no physics. A
    trajectory, a scene reset or a spawn wakes it at the next tick. False steps every tick."""
    still_velocity: float = 1e-3
    """Speed (m/s and rad/s, linear and angular) below which a joint or object counts as still."""
    still_time_s: float = 0.1
    """Simulated time everything must have been still before physics steps are skipped."""
    still_real_time_factor: float = 0.0
    """Real-time factor while physics is skipped (a still world, no trajectory); 0 = the same
    as real_time_factor. Simulated time then costs no physics, so a high value lets the waits a
    policy measures in simulated time (settling, frame waits, timeouts of blocked moves) pass
    quickly. In that state the loop sleeps until the next message is due (their rates at this
    factor, capped by max_publish_rate_hz) and then lets all the ticks in between pass at
    once; a command, reset or spawn wakes it at once."""
    max_publish_rate_hz: float = 0.0
    """Most messages per wall-clock second on each stream (/clock, /joint_states, camera
    images); 0 = no cap. The streams' rates are per simulated second, so without a cap a high
    real-time factor multiplies the messages every subscriber handles in Python."""
    clock_max_rate_hz: float = 0.0
    """Most /clock messages per wall-clock second; 0 = max_publish_rate_hz. A node on
    use_sim_time needs /clock only for its own clock (message stamps, log throttling; q_grasp's
    policy times motions by joint-state stamps and every q_grasp timer runs on wall-clock time),
    and each message costs every such node a callback, sim_arm's own included."""
    joint_states_on_events: bool = True
    """Also publish joint states at once, whatever the rate and the cap (a few per command), on
    the tick a trajectory is taken up, the tick the arm reaches its goal (every joint within
    the motors' joint and velocity tolerances) and the tick the fingers settle, as the
    single-process SimRobot judges arrival: a policy waiting on joint states hears of it without
    waiting for the next message of the stream (up to 1/max_publish_rate_hz of wall time, while
    physics runs on). False: only at joint_state_rate_hz (and when the world comes to rest)."""
    goal_hold_wall_s: float = 0.0
    """After the joint state of an arm goal reached or fingers settled (joint_states_on_events)
    with no other trajectory running, wait up to this much wall-clock time for the next command
    before simulated time goes on; 0 = do not wait. A command that comes meanwhile is taken up
    on the next tick as if it had come at once: the policy's reaction then costs no simulated
    time and no physics, as in the single-process env (whose next move starts on the step its
    last one arrived), and the physics thread leaves the GIL and the cores to the nodes that
    react. A world still settling stands still for that moment and then goes on as it would
    have. At most 1 s; a few milliseconds cover a policy that answers at once."""
    goal_hold_at_home: bool = False
    """Hold (goal_hold_wall_s) also after the arm reaches the robot's home pose
    (robot.home_positions). A grasping policy sends the arm home to clear the camera's view and
    then waits for a frame of the world at rest, not for a command: a hold there only costs its
    whole goal_hold_wall_s, once per grasp attempt."""
    camera_moving_max_rate_hz: float = 0.0
    """Most camera frames per wall-clock second while physics runs (something moves); 0 = only
    max_publish_rate_hz. Frames of a moving arm are for people watching (rviz): a policy decides
    on frames of a world at rest, which still go out at camera_rate_hz (capped by
    max_publish_rate_hz). Each rendered frame of a moving world costs the physics thread about
    as much as a control tick, so a low cap (e.g. 10) speeds up fast simulation."""
    camera_still_max_rate_hz: float = 0.0
    """Most camera frames per wall-clock second while physics is skipped (a still world), after
    the frame of the tick the world comes to rest, which always goes out; 0 = only
    max_publish_rate_hz. A still world's frames all show the same image with a later stamp: a
    policy waiting for a frame taken a given (simulated) time after its last motion gets the
    rest frame at once when that time has passed by then (settle_time_s <= still_time_s), and
    the ones after it only prove that time has passed, each costing every camera subscriber
    a callback per image and camera_info."""
    publish_ground_truth: bool = True
    """Publish object poses (simulator ground truth, for evaluation) on ~/object_poses."""
    spawn_on_start: bool = True
    """Spawn a scene of objects at start-up."""
    world_frame: str = "world"
    """Fixed frame (REP-105) of object poses and static transforms."""
    max_trajectory_points: int = 10000
    """Longest trajectory accepted."""
    limit_tolerance: float = 1e-6
    """Slack (rad or m) on joint limits when validating trajectories."""
    robot: RobotConfig = field(default_factory=RobotConfig)
    """The arm (URDF, joint names, home pose)."""
    sim: BulletSimConfig = field(default_factory=BulletSimConfig)
    """Physics settings."""
    motors: SimRobotConfig = field(default_factory=SimRobotConfig)
    """How the simulator drives the joints."""
    camera: CameraConfig = field(default_factory=CameraConfig)
    """The RGB-D camera (size, field of view, pose)."""
    scene: SceneConfig = field(default_factory=SceneConfig)
    """Objects spawned on the table."""

    def __post_init__(self) -> None:
        if not self.real_time_factor >= 0.0:
            raise ValueError(f"real_time_factor: must be >= 0 (0 = unlimited), got "
                             f"{self.real_time_factor}")
        check_each(self, ("tick_rate_hz", "joint_state_rate_hz"),
                   lambda v: v > 0.0, "must be > 0 Hz")
        if not self.clock_rate_hz >= 0.0:
            raise ValueError(f"clock_rate_hz: must be >= 0 Hz (0 = every control tick), got "
                             f"{self.clock_rate_hz}")
        if not self.camera_rate_hz >= 0.0:
            raise ValueError(f"camera_rate_hz: must be >= 0 Hz (0 = off), got "
                             f"{self.camera_rate_hz}")
        if self.max_trajectory_points < 1:
            raise ValueError(f"max_trajectory_points: must be >= 1, got "
                             f"{self.max_trajectory_points}")
        if not 0.0 <= self.limit_tolerance <= 0.1:
            raise ValueError(f"limit_tolerance: must be in [0, 0.1], got {self.limit_tolerance}")
        if not self.still_velocity > 0.0:
            raise ValueError(f"still_velocity: must be > 0, got {self.still_velocity}")
        if not 0.0 <= self.goal_hold_wall_s <= 1.0:
            raise ValueError(f"goal_hold_wall_s: must be in [0, 1] s, got {self.goal_hold_wall_s}")
        check_each(self, ("still_real_time_factor", "max_publish_rate_hz",
                          "camera_moving_max_rate_hz", "clock_max_rate_hz",
                          "camera_still_max_rate_hz"),
                   lambda v: v >= 0.0, "must be >= 0 (0 = off)")
        if not self.still_time_s >= 0.0:
            raise ValueError(f"still_time_s: must be >= 0 s, got {self.still_time_s}")
        if not self.world_frame:
            raise ValueError("world_frame: must not be empty")

    def uncapped_warning(self) -> str:
        """Why these settings may flood subscribers ("" when they do not): fast (or
        unlimited) simulated time without a cap multiplies every stream's messages per wall
        second, and subscribers then spend their CPU on callbacks (bench_ros_system)."""
        fastest = max(self.real_time_factor, self.still_real_time_factor)
        if self.max_publish_rate_hz > 0.0 or (self.real_time_factor > 0.0 and fastest <= 50.0):
            return ""
        return (f"max_publish_rate_hz is 0 (no cap) with real_time_factor "
                f"{self.real_time_factor or 'unlimited'} and still_real_time_factor "
                f"{self.still_real_time_factor or 'the same'}: joint states at "
                f"{self.joint_state_rate_hz} Hz of simulated time may reach thousands of "
                f"messages per second; set max_publish_rate_hz (e.g. 100)")


DYNAMIC_PARAMETERS = frozenset({"real_time_factor", "camera_rate_hz",
                                "skip_physics_when_still", "still_real_time_factor",
                                "max_publish_rate_hz", "camera_moving_max_rate_hz",
                                "clock_max_rate_hz", "camera_still_max_rate_hz",
                                "joint_states_on_events", "goal_hold_wall_s",
                                "goal_hold_at_home"})
"""Parameters that may change while the node runs (ros2 param set)."""
