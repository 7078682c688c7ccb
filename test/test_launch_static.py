"""The launch file, params files and rviz layout, checked without a ROS 2 install.

`launch`/`launch_ros` are not on PyPI, so the launch file is read with ast: every executable it
starts must be installed (a console script of setup.py, or an exec_depend in package.xml),
every file it names must exist and be installed by setup.py's data_files. Where the real
launch library is importable, the launch description is also built with it.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from q_grasp.tasks.names import TASKS

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "sim_train.launch.py"
PACKAGE = "q_grasp"
REQUIRED_ARGUMENTS = {"task", "config", "use_sim_time", "namespace", "rviz", "use_sim",
                      "checkpoint"}


def _literal(node: ast.AST, constants: dict[str, object]) -> object:
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and ((isinstance(n.func, ast.Name) and n.func.id == name)
                 or (isinstance(n.func, ast.Attribute) and n.func.attr == name))]


def _kwargs(call: ast.Call, constants: dict[str, object]) -> dict[str, object]:
    return {k.arg: _literal(k.value, constants) for k in call.keywords if k.arg}


@pytest.fixture(scope="module")
def launch_tree() -> tuple[ast.Module, dict[str, object]]:
    tree = ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))
    constants = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(
                stmt.targets[0], ast.Name):
            value = _literal(stmt.value, {})
            if value is not None:
                constants[stmt.targets[0].id] = value
    return tree, constants


@pytest.fixture(scope="module")
def setup_info() -> dict[str, object]:
    """Console scripts and data_files patterns, read from setup.py's AST."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    constants = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            value = _literal(stmt.value, {})
            if value is not None:
                constants[stmt.targets[0].id] = value
    (setup_call,) = _calls(tree, "setup")
    keywords = {k.arg: k.value for k in setup_call.keywords}

    def text(node: ast.AST) -> str:
        if isinstance(node, ast.JoinedStr):
            return "".join(str(v.value) if isinstance(v, ast.Constant)
                           else str(constants[v.value.id]) for v in node.values)
        value = _literal(node, constants)
        assert isinstance(value, str), ast.dump(node)
        return value

    def patterns(node: ast.AST) -> list[str]:
        if isinstance(node, ast.BinOp):
            return patterns(node.left) + patterns(node.right)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "glob":
            return [text(node.args[0])]
        if isinstance(node, ast.List):
            return [text(e) for e in node.elts]
        raise AssertionError(f"unsupported data_files entry {ast.dump(node)}")

    data_files = [(text(entry.elts[0]), patterns(entry.elts[1]))
                  for entry in keywords["data_files"].elts]
    scripts: dict[str, str] = {}
    entry_points = keywords["entry_points"]
    for key, value in zip(entry_points.keys, entry_points.values):
        if _literal(key, constants) == "console_scripts":
            for line in _literal(value, constants):
                name, target = (s.strip() for s in line.split("=", 1))
                scripts[name] = target
    return {"scripts": scripts, "data_files": data_files}


def _installed(path: str, data_files: list[tuple[str, list[str]]]) -> str | None:
    """The share folder a repo-relative file is installed to, or None."""
    for destination, pats in data_files:
        if any(fnmatch.fnmatch(path, p) for p in pats):
            return destination
    return None


def test_launch_arguments_documented(launch_tree) -> None:
    tree, constants = launch_tree
    declared = {}
    for call in _calls(tree, "DeclareLaunchArgument"):
        name = _literal(call.args[0], constants)
        kwargs = _kwargs(call, constants)
        assert isinstance(kwargs.get("description"), str) and len(kwargs["description"]) > 20, (
            f"launch argument {name!r} needs a description")
        assert any(k.arg == "default_value" for k in call.keywords), name
        declared[name] = kwargs
    assert REQUIRED_ARGUMENTS <= set(declared), REQUIRED_ARGUMENTS - set(declared)
    assert declared["task"]["choices"] == list(TASKS)
    used = {_literal(c.args[0], constants) for c in _calls(tree, "LaunchConfiguration")}
    assert set(declared) <= used, f"declared but unused: {set(declared) - used}"
    assert used <= set(declared), f"used but undeclared: {used - set(declared)}"


def test_launch_executables_are_installed(launch_tree, setup_info) -> None:
    tree, constants = launch_tree
    nodes = [_kwargs(call, constants) for call in _calls(tree, "Node")]
    assert {n["executable"] for n in nodes if n["package"] == PACKAGE} == {
        "sim_arm", "xarm_driver", "policy", "trainer", "recorder", "viewer"}
    package_xml = (ROOT / "package.xml").read_text()
    scripts = setup_info["scripts"]
    not_written = []
    for node in nodes:
        package, executable = node["package"], node["executable"]
        if package != PACKAGE:
            assert f"<exec_depend>{package}</exec_depend>" in package_xml, (
                f"{package}/{executable} is started but {package} is not an exec_depend")
            continue
        module_name = f"{PACKAGE}.nodes.{executable}"
        if importlib.util.find_spec(module_name) is None:
            not_written.append(module_name)  # policy/trainer arrive after sim_arm
            continue
        assert executable in scripts, (
            f"setup.py needs the console script '{executable} = {module_name}:main'")
        module, _, function = scripts[executable].partition(":")
        source = Path(importlib.util.find_spec(module).origin).read_text()
        assert re.search(rf"^def {function}\(", source, re.M), scripts[executable]
    if not_written:
        pytest.skip(f"nodes not written yet: {not_written}")


def test_launch_files_exist_and_are_installed(launch_tree, setup_info) -> None:
    tree, constants = launch_tree
    data_files = setup_info["data_files"]
    assert _installed("launch/sim_train.launch.py", data_files) == f"share/{PACKAGE}/launch"
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
               and isinstance(n.value, str)]
    named = {f"config/{s}" for s in strings if re.fullmatch(r"\w[\w.-]*\.(rviz|yaml)", s)}
    # Params files composed from the task argument: "/config/sim_train_" + task + ".yaml".
    (task_arg,) = [c for c in _calls(tree, "DeclareLaunchArgument")
                   if _literal(c.args[0], constants) == "task"]
    assert "/config/sim_train_" in strings and ".yaml" in strings
    named |= {f"config/sim_train_{task}.yaml"
              for task in _kwargs(task_arg, constants)["choices"]}
    assert "config/q_grasp.rviz" in named
    for path in sorted(named):
        assert (ROOT / path).is_file(), f"{path} is named by the launch file but missing"
        assert _installed(path, data_files) == f"share/{PACKAGE}/config", (
            f"{path} is not installed by setup.py data_files")


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("task", TASKS)
def test_params_files_cover_every_parameter(task: str) -> None:
    from q_grasp.node_params.files import COMMENTED, node_sections
    from q_grasp.node_params.spec import build_config, config_specs

    text = (ROOT / "config" / f"sim_train_{task}.yaml").read_text()
    data = yaml.safe_load(text)
    for section in node_sections():
        key = f"/**/{section.node_name}"
        assert key in data, f"sim_train_{task}.yaml lacks the {key} section"
        values = _flatten(data[key]["ros__parameters"])
        specs = config_specs(section.config_cls, dynamic=section.dynamic)
        names = {s.name for s in specs}
        assert set(values) <= names, f"unknown parameters {set(values) - names}"
        missing = names - set(values) - set(COMMENTED)
        assert not missing, f"{key}: parameters not in the file: {sorted(missing)}"
        for name in set(COMMENTED) & names:
            assert f"# {name.rsplit('.', 1)[-1]}:" in text, f"{name} should appear commented"
        # Values must build a valid config (defaults for the commented ones).
        defaults = section.config_cls()
        for spec in specs:
            if spec.name not in values:
                value = defaults
                for attr in spec.path:
                    value = getattr(value, attr)
                values[spec.name] = spec.to_ros(value)
        build_config(section.config_cls, specs, values)


@pytest.mark.parametrize("task", TASKS)
def test_params_files_are_generated_from_the_node_configs(task: str) -> None:
    from q_grasp.node_params.files import render

    shipped = (ROOT / "config" / f"sim_train_{task}.yaml").read_text()
    assert shipped == render(task), "regenerate: python -m q_grasp.node_params.files"


def test_rviz_layout_shows_the_documented_topics() -> None:
    layout = yaml.safe_load((ROOT / "config" / "q_grasp.rviz").read_text())
    manager = layout["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "world"
    displays = {}
    for display in manager["Displays"]:
        topic = display.get("Topic", display.get("Description Topic", {}))
        displays.setdefault(display["Class"], set()).add(topic.get("Value"))
    assert "/robot_description" in displays["rviz_default_plugins/RobotModel"]
    assert {"/camera/color/image_raw", "/q_grasp/q_map"} <= displays[
        "rviz_default_plugins/Image"]
    assert "/q_grasp/markers" in displays["rviz_default_plugins/MarkerArray"]
    assert "/q_grasp/goal" in displays["rviz_default_plugins/PointStamped"]


def test_launch_description_with_real_launch_library() -> None:
    # "launch" alone would import the repository's launch/ folder as a namespace package.
    pytest.importorskip("launch.actions")
    pytest.importorskip("launch_ros.actions")
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location("sim_train_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert REQUIRED_ARGUMENTS <= names
    assert names == {a.name for a in description.get_launch_arguments()}
