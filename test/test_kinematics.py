"""Kinematics from scratch against pybullet: URDF parsing, FK, Jacobian, batched FK and IK."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pybullet
import pytest
from pybullet_utils.bullet_client import BulletClient

from q_grasp.kinematics import (
    KinematicChain,
    parse_urdf,
    parse_urdf_string,
    rotation_vector,
    top_down_rotation,
)
from q_grasp.robot_config import RobotConfig

REACH_JOINTS = ["base_joint", "shoulder_joint", "elbow_joint", "wrist_joint"]

# A made-up arm that exercises what the NURO arm does not: rpy origins, tilted axes, fixed
# joints between movable ones, a prismatic and a continuous joint, a side branch.
SYNTHETIC_URDF = """<?xml version="1.0"?>
<robot name="synthetic">
  <link name="root"/><link name="l1"/><link name="l1b"/><link name="l2"/><link name="l3"/>
  <link name="l4"/><link name="tool"/><link name="branch"/>
  <joint name="j1" type="revolute">
    <origin xyz="0.01 0.02 0.1" rpy="0.1 -0.2 0.3"/>
    <parent link="root"/><child link="l1"/><axis xyz="0 0 1"/>
    <limit lower="-2" upper="2" effort="1" velocity="1"/>
  </joint>
  <joint name="fixed_mid" type="fixed">
    <origin xyz="0 0.03 0.05" rpy="0.5 0 0"/><parent link="l1"/><child link="l1b"/>
  </joint>
  <joint name="j2" type="continuous">
    <origin xyz="0.1 0 0" rpy="0 0.7 0"/><parent link="l1b"/><child link="l2"/>
    <axis xyz="1 1 0"/>
  </joint>
  <joint name="j3" type="prismatic">
    <origin xyz="0 0.08 0.02" rpy="0 0 -0.4"/><parent link="l2"/><child link="l3"/>
    <axis xyz="0 0.6 0.8"/><limit lower="-0.05" upper="0.1" effort="1" velocity="1"/>
  </joint>
  <joint name="j4" type="revolute">
    <origin xyz="0.05 -0.01 0.03" rpy="-0.3 0.2 1.0"/><parent link="l3"/><child link="l4"/>
    <axis xyz="0 1 0"/><limit lower="-1.5" upper="1.5" effort="1" velocity="1"/>
  </joint>
  <joint name="tool_fixed" type="fixed">
    <origin xyz="0.02 0 0.07" rpy="3.1 0.1 -0.2"/><parent link="l4"/><child link="tool"/>
  </joint>
  <joint name="branch_joint" type="revolute">
    <origin xyz="0 0 0.01"/><parent link="l2"/><child link="branch"/><axis xyz="0 0 1"/>
    <limit lower="-1" upper="1" effort="1" velocity="1"/>
  </joint>
</robot>
"""


@pytest.fixture(scope="module")
def cfg() -> RobotConfig:
    return RobotConfig()


@pytest.fixture(scope="module")
def chain(cfg: RobotConfig) -> KinematicChain:
    return KinematicChain.from_robot_config(cfg)


def _pybullet_link_poses(urdf_path: str, base_position, base_yaw: float, joint_names,
                         Q: np.ndarray, links: list[str]) -> dict[str, np.ndarray]:
    """World poses (N, 4, 4) per link, from pybullet's own forward kinematics."""
    client = BulletClient(connection_mode=pybullet.DIRECT)
    try:
        body = client.loadURDF(urdf_path, basePosition=list(base_position),
                               baseOrientation=client.getQuaternionFromEuler([0, 0, base_yaw]),
                               useFixedBase=True)
        joint_index, link_index = {}, {}
        for i in range(client.getNumJoints(body)):
            info = client.getJointInfo(body, i)
            joint_index[info[1].decode()] = i
            link_index[info[12].decode()] = i
        out = {name: np.zeros((len(Q), 4, 4)) for name in links}
        for n, q in enumerate(Q):
            for name, value in zip(joint_names, q):
                client.resetJointState(body, joint_index[name], float(value))
            for name in links:
                state = client.getLinkState(body, link_index[name], computeForwardKinematics=True)
                T = np.eye(4)
                T[:3, :3] = np.reshape(client.getMatrixFromQuaternion(state[5]), (3, 3))
                T[:3, 3] = state[4]
                out[name][n] = T
        return out
    finally:
        client.disconnect()


def _assert_poses_close(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    pos_err = np.linalg.norm(ours[..., :3, 3] - theirs[..., :3, 3], axis=-1)
    assert pos_err.max() < 1e-3, f"{what}: position differs by {pos_err.max() * 1000:.3f} mm"
    rot_err = max(np.linalg.norm(rotation_vector(a[:3, :3] @ b[:3, :3].T))
                  for a, b in zip(ours.reshape(-1, 4, 4), theirs.reshape(-1, 4, 4)))
    assert rot_err < 1e-3, f"{what}: orientation differs by {rot_err:.2e} rad"


# ------------------------------------------------------------------------------ URDF parser
def test_parser_reads_nuro_arm(cfg: RobotConfig) -> None:
    model = parse_urdf(cfg.urdf_path)
    assert model.root_link == "base_link"
    assert model.joints["grasp_joint"].joint_type == "fixed"
    assert model.joints["left_finger_joint"].joint_type == "prismatic"
    shoulder = model.joints["shoulder_joint"]
    assert (shoulder.lower, shoulder.upper) == (-1.58, 1.58)
    np.testing.assert_allclose(shoulder.axis, [0, 1, 0])
    np.testing.assert_allclose(shoulder.origin[:3, 3], [0, 0, 0.0177])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("<sdf version='1.6'><model name='m'/></sdf>", "not a URDF file"),
        ("this is not xml at all", "not valid XML"),
        ("<robot name='r'></robot>", "no <link>"),
        ("<robot name='r'><link name='a'/><link name='b'/><joint name='j' type='revolute'>"
         "<parent link='a'/><child link='b'/></joint></robot>", "needs a <limit>"),
        ("<robot name='r'><link name='a'/><joint name='j' type='fixed'>"
         "<parent link='a'/><child link='zz'/></joint></robot>", "not a <link>"),
        ("<robot name='r'><link name='a'/><link name='b'/><joint name='j' type='hinge'>"
         "<parent link='a'/><child link='b'/></joint></robot>", "type must be one of"),
        ("<robot name='r'><link name='a'/><link name='b'/><joint name='j' type='fixed'>"
         "<origin xyz='0 0'/><parent link='a'/><child link='b'/></joint></robot>",
         "expected 3 finite numbers"),
    ],
)
def test_parser_rejects_bad_files(tmp_path, text: str, match: str) -> None:
    path = tmp_path / "bad.urdf"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        parse_urdf(path)


def test_parser_rejects_missing_and_binary_files(tmp_path) -> None:
    with pytest.raises(ValueError, match="urdf_path: no such file"):
        parse_urdf(tmp_path / "missing.urdf")
    binary = tmp_path / "mesh.stl"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="urdf_path"):
        KinematicChain.from_urdf(binary, "a", "b")


def test_synthetic_chain_matches_pybullet(tmp_path) -> None:
    path = tmp_path / "synthetic.urdf"
    path.write_text(SYNTHETIC_URDF)
    base_position, base_yaw = (0.1, -0.2, 0.05), 0.7
    chain = KinematicChain.from_urdf(path, "root", "tool", base_position=base_position,
                                     base_yaw_rad=base_yaw)
    assert chain.joint_names == ["j1", "j2", "j3", "j4"]  # the side branch is not in the chain
    assert np.isinf(chain.lower[1]) and np.isinf(chain.upper[1])  # continuous
    rng = np.random.default_rng(7)
    Q = chain.random_q(rng, 60)
    links = ["tool", "l1b", "l3"]
    theirs = _pybullet_link_poses(str(path), base_position, base_yaw, chain.joint_names, Q,
                                  links)
    for name in links:
        ours = chain.fk_batch(Q, link_name=name)
        _assert_poses_close(ours, theirs[name], f"synthetic {name}")
    _assert_poses_close(np.array([chain.fk(q) for q in Q]), theirs["tool"], "synthetic fk")
    with pytest.raises(ValueError, match="branch_joint"):
        chain.link_pose(Q[0], "branch")
    # A permuted joint order is honoured everywhere.
    permuted = KinematicChain.from_urdf(path, "root", "tool", joint_names=["j4", "j2", "j3", "j1"],
                                        base_position=base_position, base_yaw_rad=base_yaw)
    np.testing.assert_allclose(permuted.fk(Q[3][[3, 1, 2, 0]]), chain.fk(Q[3]), atol=1e-12)
    J, Jp = chain.jacobian(Q[3]), permuted.jacobian(Q[3][[3, 1, 2, 0]])
    np.testing.assert_allclose(Jp, J[:, [3, 1, 2, 0]], atol=1e-12)


def test_synthetic_chain_parses_from_string() -> None:
    model = parse_urdf_string(SYNTHETIC_URDF)
    assert model.joints["j2"].joint_type == "continuous"
    np.testing.assert_allclose(model.joints["j2"].axis, [math.sqrt(0.5), math.sqrt(0.5), 0])


# ----------------------------------------------------------------------------- NURO arm FK
@pytest.mark.parametrize("base_yaw", [0.0, 0.6])
def test_fk_matches_pybullet(cfg: RobotConfig, base_yaw: float) -> None:
    robot = RobotConfig(base_yaw_rad=base_yaw)
    chain = KinematicChain.from_robot_config(robot)
    assert chain.joint_names == robot.arm_joint_names
    rng = np.random.default_rng(0)
    Q = chain.random_q(rng, 200)
    links = ["grasp_link", "forearm_link", "wrist_link", "hand_link"]
    theirs = _pybullet_link_poses(robot.urdf_path, robot.base_position, base_yaw,
                                  chain.joint_names, Q, links)
    ours_fk = np.array([chain.fk(q) for q in Q])
    _assert_poses_close(ours_fk, theirs["grasp_link"], "grasp_link")
    for name in links[1:]:
        ours = np.array([chain.link_pose(q, name) for q in Q])
        _assert_poses_close(ours, theirs[name], name)


def test_fk_batch_equals_fk_loop(chain: KinematicChain) -> None:
    rng = np.random.default_rng(1)
    Q = chain.random_q(rng, 500)
    batch = chain.fk_batch(Q)
    assert batch.shape == (500, 4, 4)
    np.testing.assert_allclose(batch, np.array([chain.fk(q) for q in Q]), atol=1e-12)
    wrist = chain.fk_batch(Q[:20], link_name="wrist_link")
    np.testing.assert_allclose(wrist, [chain.link_pose(q, "wrist_link") for q in Q[:20]],
                               atol=1e-12)
    base = chain.fk_batch(Q[:3], link_name="base_link")
    np.testing.assert_allclose(base[:, :3, 3], np.tile(RobotConfig().base_position, (3, 1)))
    assert chain.fk_batch(np.zeros((0, chain.n_joints))).shape == (0, 4, 4)


def test_jacobian_matches_finite_differences(chain: KinematicChain) -> None:
    rng = np.random.default_rng(2)
    eps = 1e-6
    for q in chain.random_q(rng, 20):
        J = chain.jacobian(q)
        assert J.shape == (6, chain.n_joints)
        T0 = chain.fk(q)
        for i in range(chain.n_joints):
            dq = np.zeros(chain.n_joints)
            dq[i] = eps
            T1 = chain.fk(q + dq)
            np.testing.assert_allclose(J[:3, i], (T1[:3, 3] - T0[:3, 3]) / eps, atol=1e-5)
            omega = rotation_vector(T1[:3, :3] @ T0[:3, :3].T) / eps
            np.testing.assert_allclose(J[3:, i], omega, atol=1e-5)


def test_rotation_vector_round_trip() -> None:
    rng = np.random.default_rng(3)
    for angle in [0.0, 1e-8, 0.3, 2.0, math.pi - 1e-4, math.pi]:
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        R = np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K
        v = rotation_vector(R)
        assert abs(np.linalg.norm(v) - angle) < 1e-6
        if angle > 1e-6:
            assert abs(abs(v @ axis) - angle) < 1e-6


# ----------------------------------------------------------------------------- IK
def test_ik_reaches_random_reachable_targets(chain: KinematicChain) -> None:
    rng = np.random.default_rng(4)
    Q = chain.random_q(rng, 1000)
    targets = chain.fk_batch(Q)[:, :3, 3]
    errors = []
    for target in targets:
        result = chain.ik(target)
        reached = chain.fk(result.q)[:3, 3]
        err = float(np.linalg.norm(reached - target))
        assert np.all(result.q >= chain.lower) and np.all(result.q <= chain.upper)
        if result.success:
            assert err <= 1e-3 + 1e-12, "success reported with an error above tolerance"
            assert abs(err - result.pos_error_m) < 1e-9
        errors.append(err if result.success else np.inf)
    rate = float(np.mean(np.array(errors) < 2e-3))
    print(f"position IK: {rate:.1%} of 1000 random reachable targets within 2 mm")
    assert rate >= 0.99


def test_ik_active_joints_hold_others(chain: KinematicChain) -> None:
    rng = np.random.default_rng(5)
    q0 = np.array([0.1, -0.5, 1.0, 1.0, 0.7])
    for q in chain.random_q(rng, 30):
        q[4] = 0.7  # wrist rotation does not move grasp_link, so targets stay reachable
        result = chain.ik(chain.fk(q)[:3, 3], q0=q0, active_joints=REACH_JOINTS)
        assert result.success, result.message
        assert result.q[4] == q0[4]


def _check_top_down(chain: KinematicChain, result, target, yaw: float,
                    tol: float = 1e-3) -> None:
    T = chain.fk(result.q)
    assert np.linalg.norm(T[:3, 3] - target) <= tol + 1e-12
    np.testing.assert_allclose(T[:3, 2], [0, 0, -1], atol=2 * tol + 0.009)  # z axis down
    finger = T[:3, 1]
    assert abs(abs(finger @ [math.cos(yaw), math.sin(yaw), 0.0]) - 1.0) < 1e-3  # yaw or yaw+pi


def test_ik_top_down_over_grasp_workspace(chain: KinematicChain) -> None:
    """Top-down grasps over x 0.09..0.17, y +-0.05, z 0.01..0.05 m (table at z = 0).

    Reachable everywhere except close to the base at low heights, where the elbow limit
    (2.0 rad) stops the arm folding enough: radial distance from the base axis must be at
    least ~0.097 m at z = 0.01, ~0.094 m at 0.02, ~0.088 m at 0.03, ~0.073 m at 0.05.
    """
    reachable, total, failures = 0, 0, []
    yaws = np.linspace(-math.pi / 2, math.pi / 2, 4, endpoint=False)
    for x in np.linspace(0.09, 0.17, 5):
        for y in np.linspace(-0.05, 0.05, 5):
            for z in (0.01, 0.03, 0.05):
                for yaw in yaws:
                    target = np.array([x, y, z])
                    result = chain.ik(target, yaw_rad=float(yaw))
                    total += 1
                    if result.success:
                        reachable += 1
                        _check_top_down(chain, result, target, float(yaw))
                    else:
                        assert result.pos_error_m > 1e-3 or result.rot_error_rad > 1e-2
                        failures.append((round(float(x), 3), round(float(y), 3), z))
    print(f"top-down IK: {reachable}/{total} grid targets reachable; unreachable at "
          f"{sorted(set(failures))}")
    for x, y, z in failures:
        assert math.hypot(x, y) < 0.1, f"({x}, {y}, {z}) should be reachable top-down"
    assert reachable / total > 0.95
    # The documented hole: straight in front of the base, low, 9 cm out.
    assert not chain.ik([0.09, 0.0, 0.01], yaw_rad=0.0).success


def test_ik_top_down_random_targets(chain: KinematicChain) -> None:
    rng = np.random.default_rng(6)
    for _ in range(100):
        target = rng.uniform([0.10, -0.05, 0.01], [0.17, 0.05, 0.05])
        yaw = float(rng.uniform(-math.pi, math.pi))
        result = chain.ik(target, yaw_rad=yaw)
        assert result.success, result.message
        assert result.yaw_rad is not None
        assert math.isclose(math.cos(2 * result.yaw_rad), math.cos(2 * yaw), abs_tol=1e-9)
        _check_top_down(chain, result, target, yaw)


def test_top_down_rotation_convention() -> None:
    for yaw in (0.0, 0.5, -2.0):
        R = top_down_rotation(yaw)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        np.testing.assert_allclose(R[:, 1], [math.cos(yaw), math.sin(yaw), 0.0], atol=1e-12)
        np.testing.assert_allclose(R[:, 2], [0.0, 0.0, -1.0])


def test_ik_is_deterministic(chain: KinematicChain) -> None:
    a = chain.ik([0.12, 0.03, 0.02], yaw_rad=0.4, q0=np.zeros(5))
    b = chain.ik([0.12, 0.03, 0.02], yaw_rad=0.4, q0=np.zeros(5))
    np.testing.assert_array_equal(a.q, b.q)


def test_top_down_ik_starts_from_the_closed_form_pose(cfg: RobotConfig) -> None:
    """The NURO arm (swing, three pitches, roll) is recognised, wherever its base stands: a
    top-down solve starts at the exact pose, so it needs no iteration, and from a nearby
    solution (the grasp skill's waypoints) it stays on that solution's branch."""
    rng = np.random.default_rng(21)
    for base, base_yaw in (((0.0, 0.0, 0.03), 0.0), ((0.1, -0.05, 0.02), 0.8)):
        chain = KinematicChain.from_urdf(cfg.urdf_path, cfg.base_link, cfg.ee_link,
                                         joint_names=cfg.arm_joint_names, base_position=base,
                                         base_yaw_rad=base_yaw, default_q=cfg.home_positions)
        assert chain._seeder.planar is not None and chain._seeder.roll is not None
        R = np.array([[math.cos(base_yaw), -math.sin(base_yaw)],
                      [math.sin(base_yaw), math.cos(base_yaw)]])
        for _ in range(40):
            local = rng.uniform([0.11, -0.05, 0.01], [0.17, 0.05, 0.05])
            target = np.array([*(np.asarray(base[:2]) + R @ local[:2]), local[2]])
            yaw = float(rng.uniform(-math.pi, math.pi))
            result = chain.ik(target, yaw_rad=yaw, pos_tol_m=0.002, rot_tol_rad=0.02)
            assert result.success and result.iterations == 0, result.message
            _check_top_down(chain, result, target, yaw, tol=1e-6)
            up = chain.ik(target + [0.0, 0.0, 0.02], yaw_rad=result.yaw_rad, q0=result.q,
                          pos_tol_m=0.002, rot_tol_rad=0.02)
            assert up.success and up.yaw_rad == result.yaw_rad
            assert np.abs(up.q - result.q).max() < 0.5


def test_top_down_ik_on_an_arm_without_the_closed_form(cfg: RobotConfig) -> None:
    """An elbow offset sideways takes the arm out of one plane: no closed-form start, the
    solver iterates from q0 (the roll is still set from the yaw) and still reaches the
    grasp poses."""
    text = Path(cfg.urdf_path).read_text()
    elbow = '<origin xyz="0 0 0.0988" rpy="0 0 0"/>'
    assert text.count(elbow) == 1
    model = parse_urdf_string(text.replace(elbow, '<origin xyz="0 0.01 0.0988" rpy="0 0 0"/>'))
    chain = KinematicChain(model, cfg.base_link, cfg.ee_link, joint_names=cfg.arm_joint_names,
                           base_position=cfg.base_position, default_q=cfg.home_positions)
    assert chain._seeder.planar is None and chain._seeder.roll is not None
    rng = np.random.default_rng(22)
    iterations = []
    for _ in range(30):
        target = rng.uniform([0.11, -0.05, 0.01], [0.17, 0.05, 0.05])
        yaw = float(rng.uniform(-math.pi, math.pi))
        result = chain.ik(target, yaw_rad=yaw, pos_tol_m=0.002, rot_tol_rad=0.02)
        assert result.success, result.message
        _check_top_down(chain, result, target, yaw, tol=2e-3)
        iterations.append(result.iterations)
    assert min(iterations) > 0


@pytest.mark.parametrize(
    ("target", "kwargs", "match"),
    [
        ([1.0, 0.0, 0.1], {}, "unreachable"),
        ([0.0, 0.0, -0.3], {}, "unreachable"),  # far below the table
        ([0.12, 0.0, -0.01], {"min_z_m": 0.0}, "below min_z_m"),  # just below the table
        ([0.3, 0.0, 0.05], {"yaw_rad": 0.0}, "did not converge"),  # too far to point down
        ([0.05, 0.0, 0.01], {"yaw_rad": 0.3}, "did not converge"),  # too close to the base
    ],
)
def test_ik_reports_unreachable(chain: KinematicChain, target, kwargs, match: str) -> None:
    result = chain.ik(target, **kwargs)
    assert not result.success
    assert match in result.message
    reached = chain.fk(result.q)[:3, 3]
    assert np.linalg.norm(reached - np.asarray(target)) > 1e-3 or result.rot_error_rad > 1e-2


# ----------------------------------------------------------------------------- batched IK
def _within_limits(chain: KinematicChain, Q: np.ndarray) -> bool:
    return bool(np.all(Q >= chain.lower) and np.all(Q <= chain.upper))


def test_ik_batch_agrees_with_ik(chain: KinematicChain) -> None:
    rng = np.random.default_rng(11)
    targets = chain.fk_batch(chain.random_q(rng, 120))[:, :3, 3]
    targets[:5] += [0.3, 0.0, 0.0]  # some unreachable ones too
    batch = chain.ik_batch(targets)
    assert len(batch) == 120 and batch.q.shape == (120, chain.n_joints)
    assert batch.yaw_rad is None and _within_limits(chain, batch.q)
    assert batch.success[5:].all() and not batch.success[:5].any()
    for i, target in enumerate(targets):
        single = chain.ik(target)
        assert single.success == batch.success[i]
        assert single.attempts == batch.attempts[i]
        np.testing.assert_allclose(batch.q[i], single.q, atol=1e-9)
        assert batch.result(i).message == single.message
    # Top-down, one yaw per target, starts per target, only the reach joints moving.
    td = rng.uniform([0.06, -0.08, 0.0], [0.2, 0.08, 0.08], size=(60, 3))
    yaws = rng.uniform(-math.pi, math.pi, size=60)
    Q0 = chain.random_q(rng, 60)
    batch = chain.ik_batch(td, yaw_rad=yaws, q0=Q0, pos_tol_m=0.002, rot_tol_rad=0.02)
    assert 0.2 < batch.success.mean() < 1.0 and _within_limits(chain, batch.q)
    assert np.isnan(batch.yaw_rad[~batch.success]).all()
    for i in range(60):
        single = chain.ik(td[i], yaw_rad=float(yaws[i]), q0=Q0[i], pos_tol_m=0.002,
                          rot_tol_rad=0.02)
        assert single.success == batch.success[i], i
        if single.success:
            assert single.yaw_rad == batch.yaw_rad[i]
            np.testing.assert_allclose(batch.q[i], single.q, atol=1e-9)
            _check_top_down(chain, single, td[i], float(yaws[i]), tol=2e-3)


def test_ik_batch_respects_limits_and_active_joints(chain: KinematicChain) -> None:
    rng = np.random.default_rng(12)
    Q = chain.random_q(rng, 80)
    Q[:, 4] = 0.7
    targets = chain.fk_batch(Q)[:, :3, 3]
    q0 = np.array([0.1, -0.5, 1.0, 1.0, 0.7])
    outside = q0 + [0.0, 0.0, 5.0, 0.0, 0.0]  # elbow far beyond its limit: clipped first
    for start in (q0, outside):
        batch = chain.ik_batch(targets, q0=start, active_joints=REACH_JOINTS)
        assert batch.success.all()
        assert _within_limits(chain, batch.q)
        assert np.all(batch.q[:, 4] == 0.7)
        reached = chain.fk_batch(batch.q)[:, :3, 3]
        assert np.all(np.linalg.norm(reached - targets, axis=1) <= 1e-3 + 1e-12)
        np.testing.assert_allclose(batch.pos_error_m,
                                   np.linalg.norm(reached - targets, axis=1), atol=1e-12)


def test_ik_batch_reports_unreachable_targets(chain: KinematicChain) -> None:
    targets = np.array([[1.0, 0.0, 0.1], [0.12, 0.0, -0.01], [0.3, 0.0, 0.05],
                        [0.05, 0.0, 0.01], [0.12, 0.02, 0.03]])
    batch = chain.ik_batch(targets, yaw_rad=0.3, min_z_m=0.0, restarts=3)
    assert batch.success.tolist() == [False, False, False, False, True]
    messages = [batch.result(i).message for i in range(5)]
    assert "unreachable" in messages[0] and "below min_z_m" in messages[1]
    assert "did not converge" in messages[2] and "did not converge" in messages[3]
    assert batch.attempts.tolist()[:4] == [0, 0, 4, 4]
    assert _within_limits(chain, batch.q)
    T = chain.fk_batch(batch.q)
    for i in range(4):
        assert (np.linalg.norm(T[i, :3, 3] - targets[i]) > 1e-3
                or batch.result(i).rot_error_rad > 1e-2)
    assert len(chain.ik_batch(np.zeros((0, 3)))) == 0


def test_float_rotation_error_matches_rotation_vector() -> None:
    from q_grasp.kinematics._scalar import _rotation_vector_cols

    rng = np.random.default_rng(14)
    for angle in (0.0, 1e-8, 0.3, 2.0, math.pi - 1e-4, math.pi):
        for _ in range(5):
            axis = rng.normal(size=3)
            axis /= np.linalg.norm(axis)
            K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]],
                          [-axis[1], axis[0], 0]])
            E = np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K
            R = top_down_rotation(float(rng.uniform(-3, 3)))
            R_t = E @ R  # so that R_t @ R^T = E
            ours = _rotation_vector_cols(list(R_t.T.reshape(-1)), list(R.T.reshape(-1)))
            np.testing.assert_allclose(ours, rotation_vector(R_t @ R.T), atol=1e-9)


def test_ik_batch_rejects_bad_input(chain: KinematicChain) -> None:
    good = np.array([[0.12, 0.0, 0.05], [0.1, 0.05, 0.05]])
    for bad in (np.array([0.1, 0.0, 0.1]), np.zeros((2, 2)), np.zeros((2, 3, 1))):
        with pytest.raises(ValueError, match=r"target_pos: expected shape \(N, 3\)"):
            chain.ik_batch(bad)
    with pytest.raises(ValueError, match="target_pos: targets must be finite"):
        chain.ik_batch(np.array([[0.1, np.nan, 0.1]]))
    with pytest.raises(ValueError, match="yaw_rad"):
        chain.ik_batch(good, yaw_rad=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="yaw_rad"):
        chain.ik_batch(good, yaw_rad=[0.1, np.inf])
    with pytest.raises(ValueError, match="q0: expected shape"):
        chain.ik_batch(good, q0=np.zeros((3, chain.n_joints)))
    with pytest.raises(ValueError, match="q0: expected shape"):
        chain.ik_batch(good, q0=np.zeros(3))
    with pytest.raises(ValueError, match="q0: joint positions must be finite"):
        chain.ik_batch(good, q0=np.full((2, chain.n_joints), np.nan))
    with pytest.raises(ValueError, match="pos_tol_m"):
        chain.ik_batch(good, pos_tol_m=-1.0)
    with pytest.raises(ValueError, match="restarts"):
        chain.ik_batch(good, restarts=-1)
    with pytest.raises(ValueError, match="active_joints"):
        chain.ik_batch(good, active_joints=["nope"])


def test_single_and_batched_ik_on_a_chain_with_tilted_prismatic_and_fixed_joints(tmp_path) -> None:
    """The float path of ik (joint axes not along x, y or z, origins with rotations, a
    prismatic joint) against fk and against ik_batch."""
    path = tmp_path / "synthetic.urdf"
    path.write_text(SYNTHETIC_URDF)
    chain = KinematicChain.from_urdf(path, "root", "tool", base_position=(0.1, -0.2, 0.05),
                                     base_yaw_rad=0.7)
    rng = np.random.default_rng(13)
    Q = chain.random_q(rng, 40)
    for q in Q[:10]:
        p, R, _ = chain._scalar.forward(q.tolist(), [True] * chain.n_joints)
        T = chain.fk(q)
        np.testing.assert_allclose(p, T[:3, 3], atol=1e-12)
        np.testing.assert_allclose(np.array(R).reshape(3, 3).T, T[:3, :3], atol=1e-12)
    targets = chain.fk_batch(Q)[:, :3, 3]
    batch = chain.ik_batch(targets)
    assert batch.success.mean() >= 0.95 and _within_limits(chain, batch.q)
    for i, target in enumerate(targets):
        single = chain.ik(target)
        assert single.success == batch.success[i]
        np.testing.assert_allclose(batch.q[i], single.q, atol=1e-8)
        if single.success:
            assert np.linalg.norm(chain.fk(single.q)[:3, 3] - target) <= 1e-3 + 1e-12


# ----------------------------------------------------------------------------- bad input
def test_bad_input_raises(chain: KinematicChain, cfg: RobotConfig) -> None:
    q = np.zeros(chain.n_joints)
    with pytest.raises(ValueError, match=r"q: expected shape \(5,\)"):
        chain.fk(np.zeros(4))
    with pytest.raises(ValueError, match="q: expected shape"):
        chain.jacobian(np.zeros((5, 1)))
    with pytest.raises(ValueError, match="finite"):
        chain.fk([0, np.nan, 0, 0, 0])
    with pytest.raises(ValueError, match="Q: expected shape"):
        chain.fk_batch(np.zeros(5))
    with pytest.raises(ValueError, match="link_name: unknown link 'nope'"):
        chain.link_pose(q, "nope")
    with pytest.raises(ValueError, match="link_name: cannot compute"):
        chain.link_pose(q, "left_finger_link")  # moves with a finger joint, not in the chain
    with pytest.raises(ValueError, match="target_pos"):
        chain.ik([0.1, np.nan, 0.1])
    with pytest.raises(ValueError, match="target_pos"):
        chain.ik([0.1, 0.1])
    with pytest.raises(ValueError, match="yaw_rad"):
        chain.ik([0.1, 0.0, 0.1], yaw_rad=float("inf"))
    with pytest.raises(ValueError, match="q0: expected shape"):
        chain.ik([0.1, 0.0, 0.1], q0=np.zeros(3))
    with pytest.raises(ValueError, match="active_joints"):
        chain.ik([0.1, 0.0, 0.1], active_joints=["elbow", "wrist"])
    with pytest.raises(ValueError, match="pos_tol_m"):
        chain.ik([0.1, 0.0, 0.1], pos_tol_m=0.0)
    with pytest.raises(ValueError, match="ee_link: unknown link 'tcp'"):
        KinematicChain.from_urdf(cfg.urdf_path, "base_link", "tcp")
    with pytest.raises(ValueError, match="ee_link: 'base_link' is not below"):
        KinematicChain.from_urdf(cfg.urdf_path, "grasp_link", "base_link")
    with pytest.raises(ValueError, match="joint_names"):
        KinematicChain.from_urdf(cfg.urdf_path, "base_link", "grasp_link",
                                 joint_names=REACH_JOINTS)
