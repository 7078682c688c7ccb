"""ROS parameters from config dataclasses: the thin ROS binding of the config core.

Each field becomes a parameter named after it (nested dataclasses give dotted names such as
``camera.width``, i.e. nested maps in a params YAML), with a ParameterDescriptor carrying the
field's docstring. Values (from a params file, ``-p`` on the command line or ``ros2 param
set``) only have their ROS form undone here (arrays, "" and [] for unset); conversion and
validation are ``q_grasp.config.build``'s, the same as for YAML files and ``--set`` overrides,
so a bad value gets the same message whichever way it came: at start-up it stops the node, at
run time ``ros2 param set`` is refused with it as reason. Only fields listed as dynamic may
change at run time; the others are read-only parameters.
"""

from __future__ import annotations

import array
import dataclasses
import threading
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from q_grasp.config import (
    Leaf,
    build,
    get_path,
    leaves,
    removed_fields,
    removed_message,
    unwrap_optional,
)

C = TypeVar("C")

_SCALARS = (bool, int, float, str)


@dataclass(frozen=True)
class ParamSpec(Leaf):
    """How one config field (a :class:`q_grasp.config.Leaf`) maps to one ROS parameter."""

    scalar: type
    """Element type: bool, int, float or str."""
    sequence: type | None
    """list or tuple for sequence fields, None for scalars."""
    length: int | None
    """Required length of a fixed-size tuple, e.g. 3 for tuple[float, float, float]."""
    optional: bool
    """The field accepts None, written as "" (strings) or [] (sequences) in ROS."""
    choices: tuple[str, ...] | None
    """Allowed values of a Literal[...] string field."""
    dynamic: bool
    """True if the value may change at run time."""

    @property
    def type_text(self) -> str:
        """Human-readable type for ParameterDescriptor.additional_constraints."""
        text = self.scalar.__name__
        if self.sequence is not None:
            text = f"{self.sequence.__name__}[{text}]"
            if self.length is not None:
                text += f" of length {self.length}"
        if self.choices:
            text += f" in {list(self.choices)}"
        if self.optional:
            text += " (empty = unset)"
        return text

    def to_ros(self, value: Any) -> Any:
        """The field value as a ROS parameter value."""
        if value is None:
            if self.sequence is None and self.scalar is not str:
                raise TypeError(f"{self.name}: None cannot be a ROS {self.type_text} parameter")
            return [] if self.sequence is not None else ""
        if self.sequence is not None:
            return [self.scalar(v) for v in value]
        return self.scalar(value)

    def unwrap(self, value: Any) -> Any:
        """A ROS parameter value in the form the config core reads (ROS's forms undone)."""
        if self.sequence is None:
            return None if self.optional and value == "" else value
        if value is None:
            # rcl's YAML parser turns `[]` into an unset parameter: that is an empty list.
            value = []
        if isinstance(value, array.array):
            value = value.tolist()
        if self.optional and isinstance(value, (list, tuple)) and not value:
            return None
        return value


def _spec_for(leaf: Leaf, dynamic: bool) -> ParamSpec:
    """The ROS typing of one field (which fields can be ROS parameters at all)."""
    name, hint = leaf.name, leaf.hint
    inner, optional = unwrap_optional(hint)
    common = dict(name=name, path=leaf.path, hint=hint, description=leaf.description,
                  optional=optional, dynamic=dynamic)
    origin, args = typing.get_origin(inner), typing.get_args(inner)
    if origin is Literal:
        if not all(isinstance(a, str) for a in args):
            raise TypeError(f"{name}: only Literal[str, ...] fields are supported")
        return ParamSpec(**common, scalar=str, sequence=None, length=None, choices=tuple(args))
    if inner in _SCALARS:
        return ParamSpec(**common, scalar=inner, sequence=None, length=None, choices=None)
    if origin in (list, tuple, Sequence, typing.Sequence):
        sequence = tuple if origin is tuple else list
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            elem, length = args[0], None
        elif origin is tuple and args and all(a == args[0] for a in args):
            elem, length = args[0], len(args)
        elif origin is not tuple and len(args) == 1:
            elem, length = args[0], None
        else:
            raise TypeError(f"{name}: unsupported sequence type {inner!r}")
        if elem in _SCALARS:
            return ParamSpec(**common, scalar=elem, sequence=sequence, length=length,
                             choices=None)
    raise TypeError(f"{name}: a field of type {hint!r} cannot be a ROS parameter")


def config_specs(config_cls: type, *, prefix: str = "",
                 dynamic: Collection[str] = ()) -> list[ParamSpec]:
    """Parameter specs for every field of ``config_cls`` (nested dataclasses flattened).

    ``dynamic``: full parameter names that may change at run time.
    """
    specs = [_spec_for(leaf, leaf.name in dynamic) for leaf in leaves(config_cls, prefix)]
    unknown = set(dynamic) - {s.name for s in specs}
    if unknown:
        raise ValueError(f"dynamic parameters {sorted(unknown)} are not fields of "
                         f"{config_cls.__name__}")
    return specs


def build_config(config_cls: type[C], specs: Sequence[ParamSpec],
                 values: dict[str, Any]) -> C:
    """Build ``config_cls`` from ROS values by parameter name, through the config core;
    ConfigError (a ValueError) names the parameter, e.g. "camera.width: must be >= 16 ..."."""
    tree: dict[str, Any] = {}
    for spec in specs:
        node = tree
        for attr in spec.path[:-1]:
            node = node.setdefault(attr, {})
        node[spec.path[-1]] = spec.unwrap(values[spec.name])
    return build(config_cls, tree)


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


def _yaml_value(value: Any) -> str:
    import yaml

    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text[:-4].strip() if text.endswith("\n...") else text.removesuffix("...").strip()


def params_yaml(node_name: str, specs: Sequence[ParamSpec], config: Any, *,
                commented: Mapping[str, str] | None = None, indent: int = 2) -> str:
    """A ROS params-file section for one node, every parameter preceded by its docstring.

    ``commented``: parameters written commented out, by name, with the text shown as their
    value (e.g. for machine-specific paths whose default is right on every install, so that
    the file is the same wherever it is generated). Keys are nested by the dotted names; the
    node key is ``/**/<node_name>`` so the section applies in any namespace.
    """
    commented = commented or {}
    lines = [f"/**/{node_name}:", " " * indent + "ros__parameters:"]
    opened: list[str] = []
    for spec in specs:
        groups = list(spec.path[:-1])
        common = 0
        while common < min(len(groups), len(opened)) and groups[common] == opened[common]:
            common += 1
        opened = opened[:common]
        for depth in range(common, len(groups)):
            pad = " " * indent * (2 + depth)
            lines.append(f"{pad}{groups[depth]}:")
            opened.append(groups[depth])
        pad = " " * indent * (2 + len(groups))
        for doc_line in (spec.description or "(undocumented)").splitlines():
            lines.append(f"{pad}# {doc_line}".rstrip())
        lines.append(f"{pad}# type: {spec.type_text}"
                     + ("" if spec.dynamic else "; read-only at run time"))
        if spec.name in commented:
            lines.append(f"{pad}# {spec.path[-1]}: {commented[spec.name]}")
        else:
            value = spec.to_ros(get_path(config, spec.path))
            lines.append(f"{pad}{spec.path[-1]}: {_yaml_value(value)}")
    return "\n".join(lines) + "\n"
