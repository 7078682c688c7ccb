"""A regular (non-symlink) install holds every module, console script and data file.

The package is built and installed into a scratch prefix the two ways users install it -- as
colcon's ament_python build does (setup.py egg_info/build/install with
--single-version-externally-managed; setup.cfg puts scripts in lib/q_grasp) and as pip does
(a wheel) -- and then every module is imported and every console script run *from that prefix*,
in a process that does not see the checkout. A subpackage that setuptools leaves out (a folder
without __init__.py) fails here, as it fails every node under ``ros2 launch``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "q_grasp"
NODE_SCRIPTS = ("sim_arm", "policy", "trainer", "recorder", "viewer")
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "runs", "build", "install", "log",
                                     "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache")


def _source_modules() -> set[str]:
    """Dotted names of every module of the package in the checkout."""
    names = set()
    for path in (ROOT / PACKAGE).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _clean_env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(site)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _site_packages(prefix: Path) -> Path:
    rel = Path(sysconfig.get_path("purelib")).relative_to(sysconfig.get_path("data"))
    return prefix / rel


# Run in the installed tree: import every module found there, report where each came from,
# and load every console-script entry point the installed metadata declares.
PROBE = r"""
import importlib, importlib.metadata as md, json, pkgutil, sys
import q_grasp
found = {"package": q_grasp.__file__, "modules": {}, "errors": {}, "entry_points": {}}
for info in [None] + list(pkgutil.walk_packages(q_grasp.__path__, "q_grasp.")):
    name = "q_grasp" if info is None else info.name
    if name.endswith("__main__"):
        continue
    try:
        found["modules"][name] = importlib.import_module(name).__file__
    except Exception as exc:
        found["errors"][name] = f"{type(exc).__name__}: {exc}"
dist = md.distribution("q_grasp")
for ep in dist.entry_points:
    if ep.group == "console_scripts":
        try:
            found["entry_points"][ep.name] = callable(ep.load())
        except Exception as exc:
            found["entry_points"][ep.name] = f"{type(exc).__name__}: {exc}"
from q_grasp.learning.tasks import DEFAULT_CONFIG_FILES
from q_grasp.paths import config_file
names = set(DEFAULT_CONFIG_FILES.values()) | {"sim_train_grasp.yaml", "sim_train_reacher.yaml"}
found["configs"] = {name: str(config_file(name)) for name in sorted(names)}
print(json.dumps(found))
"""


def _probe(site: Path, cwd: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=_clean_env(site),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _check_installed_tree(prefix: Path, site: Path, cwd: Path) -> dict:
    found = _probe(site, cwd)
    assert Path(found["package"]).is_relative_to(site), found["package"]
    assert not found["errors"], found["errors"]
    missing = _source_modules() - set(found["modules"]) - {f"{PACKAGE}.__main__"}
    assert not missing, f"modules of the checkout missing from the install: {sorted(missing)}"
    outside = {n: f for n, f in found["modules"].items() if not Path(f).is_relative_to(site)}
    assert not outside, f"imported from outside the install: {outside}"
    assert found["entry_points"] and all(v is True for v in found["entry_points"].values()), (
        found["entry_points"])
    assert set(NODE_SCRIPTS) <= set(found["entry_points"])
    # Package data: the URDF sim_arm loads (through the installed package, not the checkout).
    assert (site / PACKAGE / "assets" / "nuro_arm" / "nuro_arm.urdf").is_file()
    # The experiment and node configs the package looks up are the install's own.
    share = prefix / "share" / PACKAGE / "config"
    assert found["configs"] and all(Path(p).parent == share for p in found["configs"].values()), (
        found["configs"])
    return found


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    """The checkout's files in a scratch folder (builds write there, never in the checkout)."""
    dest = tmp_path_factory.mktemp("src") / PACKAGE
    shutil.copytree(ROOT, dest, ignore=COPY_IGNORE)
    return dest


def test_colcon_style_install_has_every_module_script_and_data_file(source_copy,
                                                                     tmp_path) -> None:
    build, prefix = tmp_path / "build", tmp_path / "install" / PACKAGE
    build.mkdir()
    # The commands of colcon's ament_python build without --symlink-install.
    cmd = [sys.executable, "setup.py", "egg_info", "--egg-base", str(build), "build",
           "--build-base", str(build / "build"), "install", "--prefix", str(prefix),
           "--record", str(build / "install.log"), "--single-version-externally-managed",
           "install_data"]
    result = subprocess.run(cmd, cwd=source_copy, capture_output=True, text=True, timeout=300,
                            env=_clean_env(source_copy))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Unknown distribution option" not in result.stderr, result.stderr
    site = _site_packages(prefix)
    _check_installed_tree(prefix, site, tmp_path)

    # Executables where `ros2 run` / launch_ros look for them (setup.cfg's install_scripts).
    for script in (*NODE_SCRIPTS, "q-grasp"):
        path = prefix / "lib" / PACKAGE / script
        assert path.is_file() and os.access(path, os.X_OK), path
    # Share folder: the ament index marker, package.xml, launch file, every config file.
    share = prefix / "share"
    assert (share / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    assert (share / PACKAGE / "package.xml").is_file()
    assert (share / PACKAGE / "launch" / "sim_train.launch.py").is_file()
    for config in (ROOT / "config").iterdir():
        if config.suffix in (".yaml", ".rviz", ".xml"):
            assert (share / PACKAGE / "config" / config.name).is_file(), config.name

    # The console scripts run from the prefix: the CLI answers --help; a node refuses a bad
    # parameter with its own one-line reason (so it was imported and started).
    env = _clean_env(site)
    result = subprocess.run([str(prefix / "lib" / PACKAGE / "q-grasp"), "--help"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage" in result.stdout.lower(), result.stderr[-2000:]
    env["ROS_DOMAIN_ID"] = "87"
    result = subprocess.run([str(prefix / "lib" / PACKAGE / "trainer"), "--ros-args", "-p",
                             "task:=juggling"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "task" in result.stderr and "juggling" in result.stderr, result.stderr[-2000:]
    assert "ModuleNotFoundError" not in result.stderr


def test_pip_wheel_install_has_every_module(source_copy, tmp_path) -> None:
    prefix = tmp_path / "prefix"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                             "--no-build-isolation", "--no-index", "--prefix", str(prefix),
                             str(source_copy)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env=_clean_env(source_copy))
    assert result.returncode == 0, result.stderr[-3000:]
    site = _site_packages(prefix)
    _check_installed_tree(prefix, site, tmp_path)
    for script in (*NODE_SCRIPTS, "q-grasp"):
        assert (prefix / "bin" / script).is_file(), script
