"""Shared test set-up: a reserved ROS domain per use, set through monkeypatch, and a check that
no test module leaks an environment change to the next one."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

ROS_ENVIRONMENT = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY",
                   "FASTRTPS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION")
"""Variables that DDS tests point at their own reserved domain and transport."""


@pytest.fixture(scope="module", autouse=True)
def _no_leaked_ros_environment(request: pytest.FixtureRequest) -> Iterator[None]:
    # Tests change the environment through monkeypatch (or ros_domain_env), which undoes it;
    # a direct os.environ write would point the next module's nodes at another domain.
    before = {name: os.environ.get(name) for name in ROS_ENVIRONMENT}
    yield
    leaked = {name: (before[name], os.environ.get(name)) for name in ROS_ENVIRONMENT
              if os.environ.get(name) != before[name]}
    assert not leaked, (f"{request.node.nodeid} left the environment changed {leaked} "
                        f"(before, after): change it through monkeypatch")


@pytest.fixture(scope="module")
def ros_domain_env() -> Iterator[Callable[..., int]]:
    """Call it to reserve a fresh ROS domain and point this process at it (loopback discovery;
    keyword arguments set more variables); undone when the module's tests are done."""
    from q_grasp.node_processes import unique_domain_id

    with pytest.MonkeyPatch.context() as mp:
        def use_fresh_domain(**extra: str) -> int:
            domain = unique_domain_id()
            mp.setenv("ROS_DOMAIN_ID", str(domain))
            mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
            for name, value in extra.items():
                mp.setenv(name, value)
            return domain

        yield use_fresh_domain


@pytest.fixture(scope="module")
def ros_context(ros_domain_env):
    """An rclpy context of this module's own, in a fresh reserved domain."""
    rclpy = pytest.importorskip("rclpy")
    ros_domain_env()
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)
