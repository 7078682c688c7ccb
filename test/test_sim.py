"""BulletSim and SimRobot: own clients, joints by name, teleport and physics moves counted in
steps, gripper aperture, agreement with the project's FK, determinism for a seed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from q_grasp.kinematics import KinematicChain
from q_grasp.robot_config import RobotConfig
from q_grasp.sim import BulletSim, Scene, SceneConfig, SimRobot, SimRobotConfig
from q_grasp.skills.arm_interface import ArmInterface
from q_grasp.skills.grasp import execute_grasp

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world():
    sim = BulletSim(seed=0)
    robot = SimRobot(sim)
    yield sim, robot
    sim.close()


def test_sims_are_independent():
    with BulletSim(seed=0) as a, BulletSim(seed=0) as b:
        assert a.client._client != b.client._client
        SimRobot(a)
        assert a.client.getNumBodies() == 2  # table + robot
        assert b.client.getNumBodies() == 1  # table only
        a.reset()
        assert a.client.getNumBodies() == 1


def test_robot_implements_arm_interface(world):
    _, robot = world
    assert isinstance(robot, ArmInterface)
    assert robot.arm_joint_names == RobotConfig().arm_joint_names
    names, pos, vel, eff = robot.joint_states()
    assert "left_finger_joint" in names and "base_joint" in names
    assert len(names) == len(pos) == len(vel) == len(eff)


def test_home_pose_and_open_gripper(world):
    _, robot = world
    robot.home()
    np.testing.assert_allclose(robot.read_arm_joints(), RobotConfig().home_positions, atol=1e-9)
    assert robot.gripper_aperture() == pytest.approx(0.06, abs=1e-6)


def test_link_pose_matches_project_fk(world):
    """The simulated tool centre point is where the project's own kinematics says."""
    _, robot = world
    chain = KinematicChain.from_robot_config(robot.robot_config)
    rng = np.random.default_rng(0)
    for _ in range(10):
        q = rng.uniform(robot.arm_lower * 0.8, robot.arm_upper * 0.8)
        robot.teleport_arm(q)
        pos, _ = robot.ee_pose()
        np.testing.assert_allclose(pos, chain.fk(q)[:3, 3], atol=1e-6)
    robot.home()


def test_physics_move_reaches_target_and_counts_steps(world):
    sim, robot = world
    robot.home()
    target = np.array([0.3, -0.6, 1.2, 1.0, 0.5])
    before = sim.step_count
    assert robot.move_arm(target) is True
    taken = sim.step_count - before
    assert 0 < taken <= robot.config.max_move_steps
    np.testing.assert_allclose(robot.read_arm_joints(), target,
                               atol=robot.config.joint_tolerance_rad)
    # A step budget too small to arrive reports a timeout, after exactly that many steps.
    before = sim.step_count
    assert robot.move_arm(RobotConfig().home_positions, max_steps=8) is False
    assert sim.step_count - before == 8
    robot.home()


def test_set_arm_targets_moves_as_with_keyword_arguments():
    # set_arm_targets passes pybullet its motor settings positionally (cheaper, every control
    # tick in sim_arm): the physics must be exactly that of the keyword call -- slow setpoints,
    # and far jumps that the speed limit and the motors' force hold back.
    import pybullet

    home = np.asarray(RobotConfig().home_positions, float)
    targets = [home + 0.6 * np.sin(0.05 * k + np.arange(5)) for k in range(120)]
    targets += [home + np.array([1.5, 0.8, -1.0, 1.0, -1.5])] * 60
    runs = []
    for keywords in (False, True):
        with BulletSim(seed=0) as sim:
            robot = SimRobot(sim)
            cfg, rc = robot.config, robot.robot_config
            trace = []
            for q in targets:
                if keywords:
                    for name, target in zip(rc.arm_joint_names, q):
                        sim.client.setJointMotorControl2(
                            robot.body_id, robot.joint_index(name), pybullet.POSITION_CONTROL,
                            targetPosition=float(target), force=rc.max_joint_force,
                            positionGain=cfg.position_gain, velocityGain=cfg.velocity_gain,
                            maxVelocity=cfg.max_joint_velocity_rad_s)
                else:
                    robot.set_arm_targets(q)
                sim.step(4)
                trace.append(robot.joint_states()[1:3])
            runs.append(np.array(trace))
            arm = [robot.movable_joint_names.index(n) for n in robot.arm_joint_names]
    np.testing.assert_array_equal(runs[0], runs[1])
    positions, velocities = runs[0][:, 0], runs[0][:, 1]
    assert np.ptp(positions[:, arm], axis=0).max() > 1.0  # it moved
    limit = SimRobotConfig().max_joint_velocity_rad_s
    assert 0.5 * limit < np.abs(velocities[:, arm]).max() < 1.2 * limit  # the speed limit held


def test_move_arm_through_stops_at_every_waypoint(world):
    sim, robot = world
    robot.home()
    home = RobotConfig().home_positions
    out = np.array([0.3, -0.6, 1.2, 1.0, 0.5])
    before = sim.step_count
    assert robot.move_arm_through([out, home]) is True
    both = sim.step_count - before
    np.testing.assert_allclose(robot.read_arm_joints(), home,
                               atol=robot.config.joint_tolerance_rad)
    # Stop-and-go: the same physics steps as the two moves one after the other.
    before = sim.step_count
    assert robot.move_arm(out) and robot.move_arm(home)
    assert abs((sim.step_count - before) - both) <= 2 * robot.config.check_every_steps
    before = sim.step_count
    assert robot.move_arm_through([]) is True
    assert sim.step_count == before
    robot.home()


def test_gripper_closes_and_opens(world):
    _, robot = world
    robot.home()
    assert robot.set_gripper(True) == pytest.approx(0.0, abs=1e-3)
    assert robot.set_gripper(False) == pytest.approx(0.06, abs=1e-3)
    left, right = robot._gripper_states()[0]
    assert left == pytest.approx(right, abs=1e-4)  # coupled fingers move as one


def test_bad_joint_vector(world):
    _, robot = world
    with pytest.raises(ValueError, match="joint_targets"):
        robot.move_arm([0.0, 0.0])
    with pytest.raises(ValueError, match="joint_targets"):
        robot.teleport_arm([0.0, np.nan, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="link_name"):
        robot.link_pose("no_such_link")


def test_bad_configs():
    with pytest.raises(ValueError, match="time_step_s"):
        BulletSim(time_step_s=0.0)
    with pytest.raises(ValueError, match="max_move_steps"):
        SimRobotConfig(max_move_steps=0)
    with BulletSim() as sim, pytest.raises(ValueError, match="gripper_joint_names"):
        SimRobot(sim, RobotConfig(gripper_joint_names=["nope", "right_finger_joint"]))


def _grasp_run(seed: int) -> tuple[list, bool, float, list]:
    with BulletSim(seed=seed) as sim:
        robot = SimRobot(sim)
        scene = Scene(sim, SceneConfig(num_objects=(2, 2)))
        objects = scene.spawn(sim.rng)
        poses = [tuple(np.concatenate(p)) for p in scene.object_poses().values()]
        chain = KinematicChain.from_robot_config(robot.robot_config)
        target = objects[0]
        top = target.position + np.array([0.0, 0.0, target.size_m[2] / 2])
        outcome = execute_grasp(robot, chain, top, target.yaw_rad + np.pi / 2,
                                home_joints=robot.home_positions)
        after = [tuple(np.concatenate(p)) for p in scene.object_poses().values()]
        return poses, outcome.success, outcome.aperture_m, after


@pytest.mark.parametrize("end_lifted", [False, True])
def test_after_lift_true_ends_the_grasp_holding(end_lifted: bool) -> None:
    """after_lift returning True ends the motion lifted with the object held (a scene reset
    follows); otherwise the gripper opens and the arm goes home."""
    with BulletSim(seed=3) as sim:
        robot = SimRobot(sim)
        scene = Scene(sim, SceneConfig(num_objects=(1, 1), shapes=("cube",)))
        target = scene.spawn(sim.rng)[0]
        chain = KinematicChain.from_robot_config(robot.robot_config)
        top = target.position + np.array([0.0, 0.0, target.size_m[2] / 2])
        seen = []

        def after_lift(outcome):
            seen.append(outcome.success)
            return end_lifted

        outcome = execute_grasp(robot, chain, top, target.yaw_rad + np.pi / 2,
                                home_joints=robot.home_positions, after_lift=after_lift)
        assert outcome.success and seen == [True], outcome.message
        away = np.abs(robot.read_arm_joints() - robot.home_positions).max()
        lifted = scene.object_poses()[target.body_id][0][2] > target.position[2] + 0.03
        if end_lifted:
            assert away > 0.1 and robot.gripper_aperture() > 0.006 and lifted
        else:
            assert away < 0.03 and robot.gripper_aperture() > 0.05 and not lifted


def test_same_seed_same_physics():
    """Same seed -> identical object poses and grasp outcome, bit for bit."""
    first = _grasp_run(7)
    second = _grasp_run(7)
    assert first == second
    assert _grasp_run(8)[0] != first[0]


def test_pybullet_prints_no_banner(tmp_path) -> None:
    """Importing and connecting pybullet writes nothing to the console (a node's log starts
    with its own lines, not pybullet's build time and argv[0])."""
    code = ("from q_grasp.sim import BulletSim\n"
            "sim = BulletSim()\nsim.step(1)\nsim.close()\nprint('done')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert "pybullet build time" not in result.stderr and "argv[0]" not in result.stderr
