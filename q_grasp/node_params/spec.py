"""ROS parameters of config dataclasses, without ROS: how each field maps to one parameter
(name, ROS type, read-only or dynamic), how ROS values go back through the config core
(``q_grasp.config.build``), and the documented params-file section of a node. The rclpy
binding that declares them on a node is ``q_grasp.nodes.params``.
"""

from __future__ import annotations

import array
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from q_grasp.config import Leaf, build, get_path, leaves, unwrap_optional

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
    """Build ``config_cls`` from ROS values by parameter name (fields without one keep their
    defaults), through the config core; ConfigError (a ValueError) names the parameter, e.g.
    "camera.width: must be >= 16 ..."."""
    tree: dict[str, Any] = {}
    for spec in specs:
        if spec.name not in values:
            continue
        node = tree
        for attr in spec.path[:-1]:
            node = node.setdefault(attr, {})
        node[spec.path[-1]] = spec.unwrap(values[spec.name])
    return build(config_cls, tree)



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
