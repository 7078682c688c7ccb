"""Constructor plumbing shared by the q_grasp envs: a config object, keyword overrides, or both."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

C = TypeVar("C")


def resolve_env_config(config_cls: type[C], config: C | None, overrides: dict[str, Any],
                       owner: str) -> C:
    """Return ``config`` (or the defaults) with ``overrides`` applied; unknown keys are errors."""
    if config is None:
        config = config_cls()
    elif not isinstance(config, config_cls):
        raise ValueError(f"config: must be a {config_cls.__name__} or None, got {type(config)}")
    if overrides:
        known = {f.name for f in dataclasses.fields(config_cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"{owner}: unknown config fields {unknown}; known fields: "
                             f"{sorted(known)}")
        config = dataclasses.replace(config, **overrides)
    return config


def check_render_mode(render_mode: str | None, metadata: dict[str, Any]) -> None:
    """Reject a render mode the env does not offer, listing the ones it does."""
    if render_mode is not None and render_mode not in metadata["render_modes"]:
        raise ValueError(f"render_mode: must be None or one of {metadata['render_modes']}, "
                         f"got {render_mode!r}")
