"""Constructor plumbing shared by the q_grasp envs: a config object, keyword overrides, or both."""

from __future__ import annotations

from typing import Any, TypeVar

from q_grasp.config import replace

C = TypeVar("C")


def resolve_env_config(config_cls: type[C], config: C | None, overrides: dict[str, Any],
                       owner: str) -> C:
    """Return ``config`` (or the defaults) with ``overrides`` applied, through the one config
    loader (types checked, unknown keys and out-of-range values are errors naming the field)."""
    if config is None:
        config = config_cls()
    elif not isinstance(config, config_cls):
        raise ValueError(f"config: must be a {config_cls.__name__} or None, got {type(config)}")
    return replace(config, overrides, where=owner) if overrides else config


def check_render_mode(render_mode: str | None, metadata: dict[str, Any]) -> None:
    """Reject a render mode the env does not offer, listing the ones it does."""
    if render_mode is not None and render_mode not in metadata["render_modes"]:
        raise ValueError(f"render_mode: must be None or one of {metadata['render_modes']}, "
                         f"got {render_mode!r}")
