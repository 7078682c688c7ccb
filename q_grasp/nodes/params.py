"""ROS parameters from config dataclasses: the thin rclpy binding of the config core.

Each field becomes a parameter named after it (nested dataclasses give dotted names such as
``camera.width``, i.e. nested maps in a params YAML), with a ParameterDescriptor carrying the
field's docstring; the typing of fields as parameters is ``q_grasp.node_params.spec``'s.
Conversion and validation are ``q_grasp.config.build``'s, the same as for YAML files and
``--set`` overrides, so a bad value gets the same message whichever way it came: at start-up it
stops the node, at run time ``ros2 param set`` is refused with it as reason. Only fields listed
as dynamic may change at run time; the others are read-only parameters.
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any, Generic, TypeVar

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from q_grasp.config import get_path, removed_fields, removed_message
from q_grasp.node_params.spec import build_config, config_specs

C = TypeVar("C")


class ConfigParameters(Generic[C]):
    """The parameters of one config dataclass on one node, and the validated current config.

    ``on_change(config, changed_names)`` is called (from the parameter service thread) after a
    run-time change of dynamic parameters has been validated and applied.
    """

    def __init__(self, node: Node, config_cls: type[C], *, default: C | None = None,
                 prefix: str = "", dynamic: Collection[str] = (),
                 on_change: Callable[[C, list[str]], None] | None = None) -> None:
        if not dataclasses.is_dataclass(config_cls):
            raise TypeError(f"{config_cls!r} is not a dataclass")
        self._node = node
        self._cls = config_cls
        self._lock = threading.Lock()
        self._on_change = on_change
        self.specs = config_specs(config_cls, prefix=prefix, dynamic=dynamic)
        self._by_name = {s.name: s for s in self.specs}
        base = default if default is not None else config_cls()
        for spec in self.specs:
            descriptor = ParameterDescriptor(
                name=spec.name,
                description=spec.description,
                additional_constraints=spec.type_text
                + ("" if spec.dynamic else "; read-only at run time"),
                read_only=not spec.dynamic,
                # We check types ourselves (accepting 1 for 1.0 and [] for an empty list of
                # any type); rclpy's static typing would reject both.
                dynamic_typing=True,
            )
            node.declare_parameter(spec.name, spec.to_ros(get_path(base, spec.path)),
                                   descriptor)
        # Settings no longer read: declared so that an old params file setting one is told so.
        for name, why in removed_fields(config_cls, prefix).items():
            message = removed_message(name, why)
            node.declare_parameter(name, None, ParameterDescriptor(
                name=name, description=message, read_only=True, dynamic_typing=True))
            if node.get_parameter(name).type_ != Parameter.Type.NOT_SET:
                node.get_logger().warning(message)
        values = {s.name: node.get_parameter(s.name).value for s in self.specs}
        self._config: C = build_config(config_cls, self.specs, values)
        node.add_on_set_parameters_callback(self._validate)
        node.add_post_set_parameters_callback(self._apply)

    @property
    def config(self) -> C:
        """The current validated config (replaced, never mutated, on dynamic changes)."""
        with self._lock:
            return self._config

    def _candidate(self, parameters: Sequence[Parameter]) -> tuple[C, list[str]] | None:
        ours = [p for p in parameters if p.name in self._by_name]
        if not ours:
            return None
        values = {s.name: self._node.get_parameter(s.name).value for s in self.specs}
        for param in ours:
            values[param.name] = param.value
        return build_config(self._cls, self.specs, values), [p.name for p in ours]

    def _validate(self, parameters: list[Parameter]) -> SetParametersResult:
        for param in parameters:
            spec = self._by_name.get(param.name)
            if spec is not None and not spec.dynamic:
                return SetParametersResult(
                    successful=False, reason=f"{param.name}: read-only at run time "
                                             "(set it in the params file and restart)")
        try:
            self._candidate(parameters)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply(self, parameters: list[Parameter]) -> None:
        try:
            result = self._candidate(parameters)
        except ValueError:  # cannot happen after _validate accepted; never raise here
            return
        if result is None:
            return
        with self._lock:
            self._config = result[0]
        if self._on_change is not None:
            self._on_change(result[0], result[1])


def declare_config(node: Node, config_cls: type[C], **kwargs: Any) -> ConfigParameters[C]:
    """Shorthand for :class:`ConfigParameters` (``default``, ``prefix``, ``dynamic``,
    ``on_change`` as keywords)."""
    return ConfigParameters(node, config_cls, **kwargs)
