"""ament_python packaging for q_grasp (colcon build, or pip install -e . in a virtualenv)."""

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "q_grasp"


def _assets() -> list[str]:
    paths = []
    for root, _dirs, files in os.walk(os.path.join(PACKAGE, "assets")):
        for name in files:
            paths.append(os.path.relpath(os.path.join(root, name), PACKAGE))
    return paths


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "benchmarks"]),
    package_data={PACKAGE: _assets()},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")
         + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="q_grasp maintainers",
    maintainer_email="q_grasp@example.com",
    description="Deep Q-learning for robot arm reaching and top-down grasping over ROS 2.",
    license="MIT",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "q-grasp = q_grasp.cli:main",
            "sim_arm = q_grasp.nodes.sim_arm:main",
            "policy = q_grasp.nodes.policy:main",
            "trainer = q_grasp.nodes.trainer:main",
            "xarm_driver = q_grasp.nodes.xarm_driver:main",
            "usb_camera = q_grasp.nodes.usb_camera:main",
            "recorder = q_grasp.nodes.recorder:main",
            "viewer = q_grasp.nodes.viewer:main",
        ],
    },
)
