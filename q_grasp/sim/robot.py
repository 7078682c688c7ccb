"""A simulated arm in a BulletSim, driven by joint names from a RobotConfig (an ArmInterface)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from q_grasp.motion import MotionTolerances
from q_grasp.robot_config import RobotConfig
from q_grasp.sim.bullet import BulletSim
from q_grasp.sim.quiet import pybullet


@dataclass
class SimRobotConfig(MotionTolerances):
    """How the simulator drives the arm's motors and decides that a motion is finished (the
    speed limit and tolerances of MotionTolerances)."""

    position_gain: float = 0.3
    """Position gain of pybullet's joint PD controller (POSITION_CONTROL)."""
    velocity_gain: float = 1.0
    """Velocity gain of pybullet's joint PD controller."""
    max_move_steps: int = 480
    """Physics steps a move may take before it reports a timeout (2 s at 240 Hz)."""
    gripper_max_velocity_m_s: float = 0.1
    """Finger speed limit (m/s) when opening or closing."""
    gripper_min_steps: int = 24
    """Steps the gripper is given before it may be judged settled (lets the fingers start)."""
    gripper_max_steps: int = 240
    """Steps after which opening/closing stops waiting for the fingers to settle."""
    check_every_steps: int = 4
    """Arrival is checked every this many physics steps (fewer joint-state reads)."""
    couple_gripper_joints: bool = True
    """Tie every gripper joint to the first with a gear constraint so that the fingers move
    as one, like the NURO gripper's single servo and linkage. Independent fingers let the
    first finger to touch push the object around until the other one arrives."""
    gripper_coupling_force: float = 100.0
    """Largest force (N) the finger coupling constraint may apply."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("max_move_steps", "gripper_max_steps", "check_every_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.gripper_min_steps < 0 or self.gripper_min_steps > self.gripper_max_steps:
            raise ValueError(
                f"gripper_min_steps: must be in [0, gripper_max_steps={self.gripper_max_steps}],"
                f" got {self.gripper_min_steps}"
            )


class SimRobot:
    """The robot of a ``RobotConfig`` loaded into a ``BulletSim``.

    Joint indices are looked up by name, so any URDF described by a RobotConfig works. Motions
    count physics steps (never wall-clock time). Implements ``q_grasp.skills.ArmInterface``.
    """

    def __init__(
        self,
        sim: BulletSim,
        robot_config: RobotConfig | None = None,
        config: SimRobotConfig | None = None,
    ) -> None:
        self.sim = sim
        self.robot_config = robot_config if robot_config is not None else RobotConfig()
        self.config = config if config is not None else SimRobotConfig()
        self.arm_joint_names: list[str] = list(self.robot_config.arm_joint_names)
        self.body_id = -1
        self.load()

    # ----------------------------------------------------------------------------- loading
    def load(self) -> None:
        """Load the URDF into the simulator (again after ``BulletSim.reset``) at the home pose."""
        c = self.sim.client
        rc = self.robot_config
        quat = c.getQuaternionFromEuler([0.0, 0.0, rc.base_yaw_rad])
        self.body_id = c.loadURDF(
            rc.urdf_path,
            basePosition=list(rc.base_position),
            baseOrientation=quat,
            useFixedBase=True,
            flags=pybullet.URDF_USE_INERTIA_FROM_FILE,
        )
        self._joint_index: dict[str, int] = {}
        self._link_index: dict[str, int] = {}
        self.movable_joint_names: list[str] = []
        self._limits: dict[str, tuple[float, float]] = {}
        for j in range(c.getNumJoints(self.body_id)):
            info = c.getJointInfo(self.body_id, j)
            name, jtype, link = info[1].decode(), info[2], info[12].decode()
            self._joint_index[name] = j
            self._link_index[link] = j
            if jtype != pybullet.JOINT_FIXED:
                self.movable_joint_names.append(name)
                self._limits[name] = (float(info[8]), float(info[9]))
        base_name = c.getBodyInfo(self.body_id)[0].decode()
        self._link_index[base_name] = -1
        self._link_index[rc.base_link] = -1
        for key in ("arm_joint_names", "gripper_joint_names"):
            for name in getattr(rc, key):
                if name not in self._joint_index:
                    raise ValueError(
                        f"robot {key}: joint {name!r} is not in {rc.urdf_path}; "
                        f"joints there: {sorted(self._joint_index)}"
                    )
        if rc.ee_link not in self._link_index:
            raise ValueError(
                f"robot ee_link: link {rc.ee_link!r} is not in {rc.urdf_path}; "
                f"links there: {sorted(self._link_index)}"
            )
        self._movable_idx = [self._joint_index[n] for n in self.movable_joint_names]
        self._arm_idx = [self._joint_index[n] for n in self.arm_joint_names]
        self._arm_lower = np.array([self._limits[n][0] for n in self.arm_joint_names])
        self._arm_upper = np.array([self._limits[n][1] for n in self.arm_joint_names])
        self._grip_idx = [self._joint_index[n] for n in rc.gripper_joint_names]
        self._grip_open = np.asarray(rc.gripper_open_positions, dtype=float)
        self._grip_closed = np.asarray(rc.gripper_closed_positions, dtype=float)
        # Joints that are neither arm nor gripper (passive linkages) get zero motor force so
        # they move freely; pybullet otherwise locks every joint with a velocity motor.
        driven = set(self._arm_idx) | set(self._grip_idx)
        for name in self.movable_joint_names:
            j = self._joint_index[name]
            if j not in driven:
                c.setJointMotorControl2(self.body_id, j, pybullet.VELOCITY_CONTROL, force=0.0)
        if self.config.couple_gripper_joints:
            self._couple_gripper()
        self._arm_targets = np.asarray(rc.home_positions, dtype=float)
        self._gripper_closed_cmd = False
        self.home()

    def _couple_gripper(self) -> None:
        c = self.sim.client
        travel = self._grip_open - self._grip_closed
        lead = self._grip_idx[0]
        for j, t in zip(self._grip_idx[1:], travel[1:]):
            cid = c.createConstraint(
                self.body_id, lead, self.body_id, j, jointType=pybullet.JOINT_GEAR,
                jointAxis=[0, 1, 0], parentFramePosition=[0, 0, 0], childFramePosition=[0, 0, 0],
            )
            # A gear constraint holds q_lead + ratio * q_j constant: ratio -t_lead/t_j makes
            # both travel from closed to open together.
            c.changeConstraint(cid, gearRatio=float(-travel[0] / t),
                               maxForce=self.config.gripper_coupling_force)

    # ----------------------------------------------------------------------------- queries
    @property
    def arm_lower(self) -> np.ndarray:
        """Lower joint limits (rad) of the arm joints, from the URDF."""
        return self._arm_lower.copy()

    @property
    def arm_upper(self) -> np.ndarray:
        """Upper joint limits (rad) of the arm joints, from the URDF."""
        return self._arm_upper.copy()

    def joint_index(self, name: str) -> int:
        """pybullet joint index of a joint name."""
        return self._joint_index[name]

    def joint_limits(self, names: list[str]) -> tuple[dict[str, float], dict[str, float]]:
        """Lower and upper limits (rad or m) of movable joints by name, from the URDF."""
        return ({n: self._limits[n][0] for n in names}, {n: self._limits[n][1] for n in names})

    def link_index(self, link_name: str) -> int:
        """pybullet link index of a link name (-1 for the base link)."""
        if link_name not in self._link_index:
            raise ValueError(
                f"link_name: {link_name!r} is not a link of the robot; "
                f"links: {sorted(self._link_index)}"
            )
        return self._link_index[link_name]

    @property
    def finger_link_indices(self) -> list[int]:
        """pybullet link indices moved by the gripper joints (the finger links)."""
        return list(self._grip_idx)

    def read_arm_joints(self) -> np.ndarray:
        """Current arm joint positions (rad), in ``arm_joint_names`` order."""
        states = self.sim.client.getJointStates(self.body_id, self._arm_idx)
        return np.array([s[0] for s in states])

    def _arm_velocities(self) -> np.ndarray:
        states = self.sim.client.getJointStates(self.body_id, self._arm_idx)
        return np.array([s[1] for s in states])

    def _gripper_states(self) -> tuple[np.ndarray, np.ndarray]:
        states = self.sim.client.getJointStates(self.body_id, self._grip_idx)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def gripper_aperture(self) -> float:
        """Distance between the finger pads (m), from the gripper joint positions."""
        q, _ = self._gripper_states()
        return float(
            self.robot_config.gripper_aperture_scale_m * np.mean(q - self._grip_closed)
        )

    def link_pose(self, link_name: str) -> tuple[np.ndarray, np.ndarray]:
        """World pose of a link frame: position (3,) in m and quaternion (x, y, z, w)."""
        c = self.sim.client
        idx = self.link_index(link_name)
        if idx == -1:
            pos, quat = c.getBasePositionAndOrientation(self.body_id)
        else:
            state = c.getLinkState(self.body_id, idx, computeForwardKinematics=True)
            pos, quat = state[4], state[5]
        return np.asarray(pos, dtype=float), np.asarray(quat, dtype=float)

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """World pose of the end-effector link (the tool centre point)."""
        return self.link_pose(self.robot_config.ee_link)

    def joint_states(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Names, positions, velocities and efforts of every movable joint (a JointState)."""
        pos, vel, _, eff = zip(*self.sim.client.getJointStates(self.body_id, self._movable_idx))
        return list(self.movable_joint_names), np.array(pos), np.array(vel), np.array(eff)

    # ----------------------------------------------------------------------------- commands
    def _check_arm_vector(self, q: np.ndarray | list[float]) -> np.ndarray:
        q = np.asarray(q, dtype=float).reshape(-1)
        if q.shape[0] != len(self._arm_idx):
            raise ValueError(
                f"joint_targets: expected {len(self._arm_idx)} values "
                f"({self.arm_joint_names}), got {q.shape[0]}"
            )
        if not all(map(math.isfinite, q.tolist())):
            raise ValueError("joint_targets: values must be finite")
        # (np.clip costs twice as much as this on a vector this short, every control tick)
        return np.minimum(np.maximum(q, self._arm_lower), self._arm_upper)

    def set_arm_targets(self, q: np.ndarray | list[float]) -> None:
        """Command arm position targets (clamped to the joint limits); physics moves there."""
        q = self._check_arm_vector(q)
        self._arm_targets = q
        cfg = self.config
        force = self.robot_config.max_joint_force
        motor, body, mode = self.sim.client.setJointMotorControl2, self.body_id, \
            pybullet.POSITION_CONTROL
        # Positional arguments (bodyUniqueId, jointIndex, controlMode, targetPosition,
        # targetVelocity, force, positionGain, velocityGain, maxVelocity): keywords cost pybullet
        # twice the time, and sim_arm sends setpoints every control tick. targetVelocity 0 is
        # pybullet's default (test_set_arm_targets_moves_as_with_keyword_arguments).
        for j, target in zip(self._arm_idx, q.tolist()):
            motor(body, j, mode, target, 0.0, force, cfg.position_gain, cfg.velocity_gain,
                  cfg.max_joint_velocity_rad_s)

    def teleport_arm(self, q: np.ndarray | list[float]) -> None:
        """Jump the arm to ``q`` without physics (velocities zero) and hold it there."""
        q = self._check_arm_vector(q)
        for j, target in zip(self._arm_idx, q):
            self.sim.client.resetJointState(self.body_id, j, float(target), 0.0)
        self.set_arm_targets(q)

    def move_arm(
        self,
        joint_targets: np.ndarray | list[float],
        *,
        teleport: bool = False,
        max_steps: int | None = None,
    ) -> bool:
        """Drive the arm to ``joint_targets``; True when it arrived within tolerance.

        ``teleport`` jumps without physics (free-space moves only). Otherwise physics runs until
        the joints are within ``joint_tolerance_rad`` and nearly still, or ``max_steps``
        physics steps have passed (then False).
        """
        if teleport:
            self.teleport_arm(joint_targets)
            return True
        self.set_arm_targets(joint_targets)
        cfg = self.config
        limit = cfg.max_move_steps if max_steps is None else int(max_steps)
        steps = 0
        while steps < limit:
            n = min(cfg.check_every_steps, limit - steps)
            self.sim.step(n)
            steps += n
            if self._arm_arrived():
                return True
        return False

    def move_arm_through(self, waypoints: Sequence[np.ndarray | list[float]]) -> bool:
        """Move to each of ``waypoints`` in turn, stopping at each (physics); True when the
        arm arrived at the last (True for none). Stop-and-go, as the env's grasp motion has
        always been measured; a ROS controller blends the waypoints instead."""
        reached = True
        for q in waypoints:
            reached = self.move_arm(q)
        return reached

    def _arm_arrived(self) -> bool:
        return self.config.arm_arrived(self.read_arm_joints(), self._arm_velocities(),
                                       self._arm_targets)

    def _command_gripper(self, closed: bool) -> None:
        target = self._grip_closed if closed else self._grip_open
        for j, t in zip(self._grip_idx, target):
            self.sim.client.setJointMotorControl2(
                self.body_id,
                j,
                pybullet.POSITION_CONTROL,
                targetPosition=float(t),
                force=self.robot_config.max_gripper_force,
                maxVelocity=self.config.gripper_max_velocity_m_s,
            )
        self._gripper_closed_cmd = bool(closed)

    def set_gripper(self, closed: bool) -> float:
        """Close (True) or open (False) the gripper with physics; return the aperture (m).

        Waits until the fingers stop (on an object or at their limit), counted in steps.
        """
        self._command_gripper(closed)
        cfg = self.config
        steps = 0
        while steps < cfg.gripper_max_steps:
            n = min(cfg.check_every_steps, cfg.gripper_max_steps - steps)
            self.sim.step(n)
            steps += n
            if steps >= cfg.gripper_min_steps:
                if cfg.fingers_settled(self._gripper_states()[1]):
                    break
        return self.gripper_aperture()

    def teleport_gripper(self, closed: bool) -> None:
        """Jump the fingers open or closed without physics and hold them there."""
        target = self._grip_closed if closed else self._grip_open
        for j, t in zip(self._grip_idx, target):
            self.sim.client.resetJointState(self.body_id, j, float(t), 0.0)
        self._command_gripper(closed)

    def home(self) -> None:
        """Teleport to the configured home pose with the gripper open."""
        self.teleport_arm(self.robot_config.home_positions)
        self.teleport_gripper(False)

    @property
    def home_positions(self) -> np.ndarray:
        """Home arm joint positions (rad)."""
        return np.asarray(self.robot_config.home_positions, dtype=float)
