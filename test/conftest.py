"""Shared test set-up: no test module leaks the ROS environment it chose to the next one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

ROS_ENVIRONMENT = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY",
                   "FASTRTPS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION")
"""Variables that DDS tests point at their own reserved domain and transport."""


def _remember(mp: pytest.MonkeyPatch) -> None:
    # Setting a variable to its own value makes MonkeyPatch restore it afterwards, whatever a
    # fixture or test then writes to os.environ directly.
    for name in ROS_ENVIRONMENT:
        if name in os.environ:
            mp.setenv(name, os.environ[name])
        else:
            mp.delenv(name, raising=False)


@pytest.fixture(scope="module", autouse=True)
def _module_ros_environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        _remember(mp)
        yield


@pytest.fixture(autouse=True)
def _test_ros_environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        _remember(mp)
        yield
