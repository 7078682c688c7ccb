"""The one configuration core (q_grasp.config): types, names in messages, YAML and overrides,
and the same message for a bad value whichever way it comes in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from q_grasp.config import (
    ConfigError,
    apply_overrides,
    build,
    field_docs,
    leaves,
    load_yaml,
    parse_override,
    replace,
)
from q_grasp.robot_config import RobotConfig


@dataclass
class InnerConfig:
    """A nested config."""

    width: int = 64
    """Image width in pixels."""
    position: tuple[float, float, float] = (0.1, 0.0, 0.25)
    """Camera position (m)."""

    def __post_init__(self) -> None:
        if self.width < 16:
            raise ValueError(f"width: must be >= 16 pixels, got {self.width}")


@dataclass
class OuterConfig:
    """A node config."""

    task: Literal["grasp", "reacher"] = "grasp"
    """Which task to run."""
    rate_hz: float = 10.0
    """Publishing rate."""
    names: list[str] = field(default_factory=lambda: ["a", "b"])
    """Joint names."""
    gains: list[float] = field(default_factory=list)
    """Optional gains (may be empty)."""
    checkpoint: str | None = None
    """Checkpoint file, unset by default."""
    verbose: bool = False
    """Log more."""
    camera: InnerConfig = field(default_factory=InnerConfig)
    """Camera settings."""

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz: must be > 0 Hz, got {self.rate_hz}")


def test_leaves_flatten_nested_fields_with_their_docs() -> None:
    names = [leaf.name for leaf in leaves(OuterConfig)]
    assert names == ["task", "rate_hz", "names", "gains", "checkpoint", "verbose",
                     "camera.width", "camera.position"]
    docs = {leaf.name: leaf.description for leaf in leaves(OuterConfig)}
    assert docs["camera.width"] == "Image width in pixels."
    assert field_docs(OuterConfig)["rate_hz"] == "Publishing rate."


def test_build_converts_types_and_keeps_defaults() -> None:
    cfg = build(OuterConfig, {"rate_hz": 5, "camera": {"position": [1, 2, 3]},
                              "checkpoint": None})
    assert cfg.rate_hz == 5.0 and isinstance(cfg.rate_hz, float)
    assert cfg.camera == InnerConfig(position=(1.0, 2.0, 3.0))
    assert cfg.names == ["a", "b"] and cfg.checkpoint is None


def test_replace_changes_only_the_given_fields() -> None:
    base = OuterConfig(rate_hz=3.0, camera=InnerConfig(width=32))
    cfg = replace(base, {"camera": {"position": (0, 0, 1)}})
    assert cfg.rate_hz == 3.0
    assert cfg.camera == InnerConfig(width=32, position=(0.0, 0.0, 1.0))


@pytest.mark.parametrize("data, message", [
    ({"rate_hz": -1.0}, "rate_hz: must be > 0 Hz, got -1.0"),
    ({"rate_hz": "fast"}, "rate_hz: expected a number, got 'fast'"),
    ({"rate_hz": True}, "rate_hz: expected a number, got True"),
    ({"rate_hz": float("nan")}, "rate_hz: must be > 0 Hz, got nan"),
    ({"gains": [1.0, float("nan")]}, "gains: must be a number, not NaN, got [1.0, nan]"),
    ({"camera": {"width": 8}}, "camera.width: must be >= 16 pixels, got 8"),
    ({"camera": {"width": 2.5}},
     "camera.width: expected an integer, got 2.5; must be >= 16 pixels"),
    ({"camera": {"position": [1.0, 2.0]}}, "camera.position: expected 3 values, got [1.0, 2.0]"),
    ({"camera": 3}, "camera: expected a mapping of fields, got 3"),
    ({"task": "juggle"}, "task: must be one of ['grasp', 'reacher'], got 'juggle'"),
    ({"names": "a"}, "names: expected a list, got 'a'"),
    ({"names": ["a", 1]}, "names[1]: expected a string, got 1"),
    ({"verbose": 1}, "verbose: expected true or false, got 1"),
    ({"checkpoint": 3}, "checkpoint: expected a string, got 3"),
    ({"camera": {"height": 1}}, "camera.height: unknown field in camera (unknown config fields: "
                                "['height']; known fields: width, position)"),
])
def test_bad_values_name_the_field_the_rule_and_the_value(data, message) -> None:
    with pytest.raises(ConfigError) as info:
        build(OuterConfig, data)
    assert str(info.value) == message


def test_overrides_parse_as_yaml_into_nested_sections() -> None:
    assert parse_override("dqn.gamma=0.5") == ("dqn.gamma", 0.5)
    # Exponents without a dot are numbers, as in YAML 1.2 and ROS params files.
    assert parse_override("dqn.learning_rate=5e-4") == ("dqn.learning_rate", 0.0005)
    assert parse_override("env.id=v1e3") == ("env.id", "v1e3")
    assert parse_override("network.hidden_sizes=[16, 16]") == ("network.hidden_sizes", [16, 16])
    data = apply_overrides({"camera": {"width": 64}}, ["camera.width=32", "rate_hz=2"],
                           nested=False)
    assert build(OuterConfig, data) == OuterConfig(rate_hz=2.0, camera=InnerConfig(width=32))
    for bad, message in [("gamma", "--set: expected section.field=value, got 'gamma'"),
                         ("gamma=2", "--set: expected section.field=value, got 'gamma=2'"),
                         ("a..b=1", "--set: expected section.field=value, got 'a..b=1'"),
                         ("a.b=[1", "--set a.b: cannot parse value '[1'")]:
        with pytest.raises(ConfigError) as info:
            apply_overrides({}, [bad])
        assert str(info.value) == message
    with pytest.raises(ConfigError, match="--set camera.width.x: 'width' is not a section"):
        apply_overrides({"camera": {"width": 64}}, ["camera.width.x=1"])


def test_yaml_files_load_and_their_errors_name_the_file(tmp_path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("rate_hz: 2e1\ncamera:\n  width: 32\n")
    assert load_yaml(OuterConfig, good) == OuterConfig(rate_hz=20.0,
                                                       camera=InnerConfig(width=32))
    bad = tmp_path / "bad.yaml"
    for text, message in [("camera:\n  width: 8\n", "camera.width: must be >= 16 pixels, got 8"),
                          ("- 1\n", "top level must be a mapping of sections, got list"),
                          ("rate_hz: [1\n", "not valid YAML")]:
        bad.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_yaml(OuterConfig, bad)
        assert str(info.value).startswith(f"config file {str(bad)!r}: ")
        assert message in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_yaml(OuterConfig, tmp_path / "missing.yaml")


# ------------------------------------------------ the same message whichever way a value comes


EXPERIMENT_MESSAGE = "exploration.start: must be in [0, 1] for epsilon, got 1.5"


def test_experiment_value_same_message_from_yaml_and_command_line(tmp_path, capsys) -> None:
    from q_grasp.cli import USAGE_ERROR, main
    from q_grasp.learning.config import ExperimentConfig

    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict({"exploration": {"start": 1.5}})
    assert str(info.value) == EXPERIMENT_MESSAGE
    bad = tmp_path / "bad.yaml"
    bad.write_text("env:\n  id: CartPole-v1\nexploration:\n  start: 1.5\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "a")]) == USAGE_ERROR
    from_file = capsys.readouterr().err.strip()
    assert main(["train", "--task", "cartpole", "--set", "exploration.start=1.5",
                 "--out", str(tmp_path / "b")]) == USAGE_ERROR
    from_command_line = capsys.readouterr().err.strip()
    assert from_file == f"q_grasp train: error: config file {str(bad)!r}: {EXPERIMENT_MESSAGE}"
    assert from_command_line == f"q_grasp train: error: {EXPERIMENT_MESSAGE}"


def test_bringup_reads_node_parameters_through_the_core(tmp_path) -> None:
    """bringup validates the sections of a params file as the nodes do, and its command line
    goes through the same builder: one message style for every way a value comes in."""
    from q_grasp.bringup.config import BringupConfig, node_config
    from q_grasp.node_params.sim_arm import SimArmConfig
    from q_grasp.node_params.trainer import TrainerConfig

    params = tmp_path / "params.yaml"
    params.write_text("/**/sim_arm:\n  ros__parameters:\n    use_sim_time: true\n"
                      "    real_time_factor: -2.0\n"
                      "/**/trainer:\n  ros__parameters:\n    replay_ratio: 0.5\n")
    with pytest.raises(ConfigError) as info:
        node_config(params, "sim_arm", SimArmConfig)
    assert str(info.value) == (f"config file {str(params)!r}: sim_arm: real_time_factor: must "
                               f"be >= 0 (0 = unlimited), got -2.0")
    # ROS's own parameters (use_sim_time) are not the config's; overrides win over the file
    sim = node_config(params, "sim_arm", SimArmConfig, {"real_time_factor": 3.0})
    assert sim.real_time_factor == 3.0 and sim.camera.width == SimArmConfig().camera.width
    trainer = node_config(params, "trainer", TrainerConfig, {"task": "reacher"})
    assert (trainer.replay_ratio, trainer.task) == (0.5, "reacher")
    params.write_text("- not a params file\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        node_config(params, "trainer", TrainerConfig)
    with pytest.raises(ConfigError, match="viewer_port: expected an integer, got 'x'"):
        build(BringupConfig, {"viewer_port": "x"}, where="command line")


NODE_CASES = [
    # node, parameter, value as YAML, value, expected message
    ("policy", "epsilon_start", "1.5", 1.5, "epsilon_start: must be in [0, 1], got 1.5"),
    ("policy", "epsilon_start", "high", "high", "epsilon_start: expected a number, got 'high'"),
    ("sim_arm", "real_time_factor", "-2.0", -2.0,
     "real_time_factor: must be >= 0 (0 = unlimited), got -2.0"),
]


def _section(node_name: str):
    from q_grasp.node_params.files import node_sections

    return next(s for s in node_sections() if s.node_name == node_name)


@pytest.mark.ros
@pytest.mark.parametrize("node_name, name, text, value, message", NODE_CASES)
def test_node_parameter_same_message_every_way(ros_context, tmp_path, node_name, name, text,
                                               value, message) -> None:
    """A params file, ``-p`` on the command line, ``ros2 param set`` (the parameter service of
    a running node) and the ROS-free core all give one message for one bad value."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    from q_grasp.nodes.params import declare_config

    section = _section(node_name)
    messages = {}
    with pytest.raises(ConfigError) as info:
        build(section.config_cls, {name: value})
    messages["core"] = str(info.value)

    params_file = tmp_path / "params.yaml"
    params_file.write_text(f"/**/{node_name}:\n  ros__parameters:\n    {name}: {text}\n")
    for way, args in (("params file", ["--params-file", str(params_file)]),
                      ("command line", ["-p", f"{name}:={text}"])):
        node = Node(node_name, context=ros_context, cli_args=["--ros-args", *args])
        try:
            with pytest.raises(ConfigError) as info:
                declare_config(node, section.config_cls, dynamic=section.dynamic)
            messages[way] = str(info.value)
        finally:
            node.destroy_node()

    assert name in section.dynamic  # else ros2 param set answers "read-only" before checking
    node = Node(node_name, context=ros_context)
    caller = Node(f"{node_name}_caller", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    try:
        declare_config(node, section.config_cls, dynamic=section.dynamic)
        executor.add_node(node)
        executor.add_node(caller)
        client = AsyncParameterClient(caller, node.get_fully_qualified_name())
        assert client.wait_for_services(timeout_sec=10.0)
        future = client.set_parameters([Parameter(name, value=value)])
        executor.spin_until_future_complete(future, timeout_sec=10.0)
        result = future.result().results[0]
        assert not result.successful
        messages["ros2 param set"] = result.reason
    finally:
        executor.shutdown()
        caller.destroy_node()
        node.destroy_node()

    assert len(messages) == 4 and messages == dict.fromkeys(messages, message), messages


# ------------------------------------------------------------------------- the ROS binding


def _node(context, name: str, overrides: list | None = None):
    from rclpy.node import Node

    return Node(name, context=context, parameter_overrides=overrides or [])


@pytest.mark.ros
def test_parameters_declared_with_docs_and_types(ros_context) -> None:
    from q_grasp.nodes.params import declare_config

    node = _node(ros_context, "params_docs")
    try:
        params = declare_config(node, OuterConfig, dynamic={"rate_hz"})
        assert params.config == OuterConfig()
        described = {d.name: d for d in node.describe_parameters(
            ["rate_hz", "camera.width", "camera.position", "task", "checkpoint"])}
        assert described["rate_hz"].description == "Publishing rate."
        assert described["camera.width"].description == "Image width in pixels."
        assert described["camera.width"].read_only
        assert not described["rate_hz"].read_only
        assert "['grasp', 'reacher']" in described["task"].additional_constraints
        assert node.get_parameter("camera.position").value == [0.1, 0.0, 0.25]
        assert node.get_parameter("checkpoint").value == ""
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_parameter_overrides_build_config(ros_context) -> None:
    from rclpy.parameter import Parameter

    from q_grasp.nodes.params import declare_config

    overrides = [Parameter("rate_hz", value=5), Parameter("camera.width", value=128),
                 Parameter("camera.position", value=[1, 2, 3]),
                 Parameter("task", value="reacher"), Parameter("checkpoint", value="/x.st"),
                 Parameter("gains", value=[1.0, 2.0])]
    node = _node(ros_context, "params_overrides", overrides)
    try:
        config = declare_config(node, OuterConfig).config
        assert config.rate_hz == 5.0 and isinstance(config.rate_hz, float)
        assert config.camera == InnerConfig(width=128, position=(1.0, 2.0, 3.0))
        assert config.task == "reacher" and config.checkpoint == "/x.st"
        assert config.gains == [1.0, 2.0]
    finally:
        node.destroy_node()


@pytest.mark.ros
@pytest.mark.parametrize("override, message", [
    (("rate_hz", -1.0), "rate_hz: must be > 0"),
    (("rate_hz", "fast"), "rate_hz: expected a number, got 'fast'"),
    (("rate_hz", float("nan")), "rate_hz: must be > 0 Hz, got nan"),
    (("camera.width", 8), "camera.width: must be >= 16 pixels, got 8"),
    (("camera.width", True), "camera.width: expected an integer, got True; must be >= 16"),
    (("camera.position", [1.0, 2.0]), "camera.position: expected 3 values"),
    (("task", "juggle"), "task: must be one of"),
    (("names", [1, 2]), r"names\[0\]: expected a string, got 1"),
])
def test_bad_overrides_stop_the_node_with_a_reason(ros_context, override, message) -> None:
    from rclpy.parameter import Parameter

    from q_grasp.nodes.params import declare_config

    node = _node(ros_context, "params_bad", [Parameter(override[0], value=override[1])])
    try:
        with pytest.raises(ValueError, match=message):
            declare_config(node, OuterConfig)
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_runtime_changes_validated(ros_context) -> None:
    from rclpy.parameter import Parameter

    from q_grasp.nodes.params import declare_config

    node = _node(ros_context, "params_runtime")
    changes = []
    try:
        params = declare_config(node, OuterConfig, dynamic={"rate_hz", "camera.width"},
                                on_change=lambda cfg, names: changes.append((cfg, names)))
        ok = node.set_parameters([Parameter("rate_hz", value=20)])[0]
        assert ok.successful and params.config.rate_hz == 20.0
        assert changes and changes[-1][1] == ["rate_hz"]
        bad = node.set_parameters([Parameter("rate_hz", value=0.0)])[0]
        assert not bad.successful and "rate_hz: must be > 0" in bad.reason
        assert params.config.rate_hz == 20.0
        bad = node.set_parameters([Parameter("camera.width", value=4)])[0]
        assert not bad.successful and "width: must be >= 16" in bad.reason
        ro = node.set_parameters([Parameter("task", value="reacher")])[0]
        assert not ro.successful and params.config.task == "grasp"
        assert node.set_parameters([Parameter("camera.width", value=32)])[0].successful
        assert params.config.camera.width == 32
    finally:
        node.destroy_node()


# ---------------------------------------------------------------------- removed and dead fields


@dataclass
class WithRobot:
    """A config with a nested robot."""

    robot: RobotConfig = field(default_factory=RobotConfig)
    """The arm."""


def test_a_removed_setting_is_ignored_with_a_warning_naming_it() -> None:
    message = ("robot.wrist_rotation_joint: no longer a setting (the grasp yaw comes from the "
               "IK of the whole arm); ignored, remove it from your configuration")

    with pytest.warns(FutureWarning) as caught:
        cfg = build(WithRobot, {"robot": {"wrist_rotation_joint": "x", "base_yaw_rad": 0.5}})
    assert [str(w.message) for w in caught] == [message]
    assert cfg.robot.base_yaw_rad == 0.5


@pytest.mark.ros
def test_a_removed_parameter_is_declared_with_why(ros_context) -> None:
    from rclpy.parameter import Parameter

    from q_grasp.nodes.params import declare_config

    node = _node(ros_context, "params_removed",
                 [Parameter("robot.wrist_rotation_joint", value="wrist_rotation_joint")])
    try:
        assert declare_config(node, WithRobot).config == WithRobot()
        described = node.describe_parameters(["robot.wrist_rotation_joint"])[0]
        assert described.description.startswith("robot.wrist_rotation_joint: no longer a "
                                                 "setting (the grasp yaw")
    finally:
        node.destroy_node()


def _documented_configs() -> list[type]:
    """Every config whose fields users set: the experiment (YAML, --set), the envs' (the
    experiment's env.kwargs) and every node's (ROS parameters: the class each node passes to
    declare_config), found in the source so that a new node is covered too."""
    import ast
    import importlib

    from q_grasp.envs.grasp import GraspConfig
    from q_grasp.envs.reacher import ReacherConfig
    from q_grasp.learning.config import ExperimentConfig

    configs = [ExperimentConfig, GraspConfig, ReacherConfig]
    for path in sorted((PACKAGE / "nodes").glob("*.py")):
        for call in ast.walk(ast.parse(path.read_text())):
            if (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "declare_config"
                    and len(call.args) >= 2 and isinstance(call.args[1], ast.Name)):
                module = importlib.import_module(f"q_grasp.nodes.{path.stem}")
                configs.append(getattr(module, call.args[1].id))
    return configs


def _attributes_read() -> set[str]:
    """Names the package reads as attributes (``x.name``, ``getattr(x, "name")``), outside the
    checks of a config's own values (``__post_init__``, ``validate``)."""
    import ast

    read: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        checks = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                  and f.name in ("__post_init__", "validate") for n in ast.walk(f)}
        for node in ast.walk(tree):
            if id(node) in checks:
                continue
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                read.add(node.attr)
            elif (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "getattr"
                  and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)):
                read.add(node.args[1].value)
    return read


PACKAGE = Path(__file__).resolve().parents[1] / "q_grasp"


def test_every_documented_parameter_is_read_somewhere() -> None:
    configs = _documented_configs()
    assert {c.__name__ for c in configs} >= {"PolicyConfig", "SimArmConfig", "TrainerConfig"}
    read = _attributes_read()
    dead = sorted(f"{cls.__name__}: {leaf.name}" for cls in configs for leaf in leaves(cls)
                  if leaf.path[-1] not in read)
    assert not dead, f"documented but never read (use them or remove them): {dead}"


def test_bringup_builds_the_policys_reach_table_while_the_trainer_starts(tmp_path,
                                                                         monkeypatch) -> None:
    """The composed policy's reachability table is built ahead, in a thread, for the task the
    policy will load: the policy then finds it in the per-process cache."""
    from q_grasp.bringup.config import BringupConfig
    from q_grasp.bringup.run import Bringup
    from q_grasp.skills import reach

    built = []
    monkeypatch.setattr(reach, "_CACHE", {})
    monkeypatch.setattr(reach, "build_reach_table",
                        lambda chain, params, heights: built.append(params) or object())
    run = Bringup(BringupConfig(task="grasp", out=str(tmp_path / "run")))
    run._prebuild_reach_table().join(timeout=60.0)
    assert len(built) == 1 and len(reach._CACHE) == 1
    from q_grasp.tasks.load import load_task, make_task

    setup = load_task("grasp")
    assert make_task("grasp", setup.env_config).reach.table is next(iter(reach._CACHE.values()))
    assert len(built) == 1  # found, not built again


def test_bringup_acts_before_the_trainer_listens_only_when_the_history_holds_the_budget(
        tmp_path) -> None:
    """Transitions are transient local: a budget that fits in the actor's and the trainer's
    history (transitions_queue_depth, transitions_qos_depth) reaches a trainer that subscribes
    late, so acting need not wait for it; a larger one (or a duration) waits."""
    from q_grasp.bringup.config import BringupConfig, default_params_file
    from q_grasp.bringup.run import Bringup

    run = Bringup(BringupConfig(task="grasp", out=str(tmp_path / "run")))
    assert run._history_holds_budget(500) and run._history_holds_budget(1)
    assert not run._history_holds_budget(501) and not run._history_holds_budget(0)
    text = default_params_file("grasp").read_text()
    params = tmp_path / "params.yaml"
    params.write_text(text.replace("transitions_qos_depth: 500", "transitions_qos_depth: 100"))
    small = Bringup(BringupConfig(task="grasp", config=str(params), out=str(tmp_path / "b")))
    assert small._history_holds_budget(100) and not small._history_holds_budget(101)
