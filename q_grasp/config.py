"""One configuration system: dataclasses with a docstring per field, filled from YAML files,
command-line overrides (``section.field=value``) and ROS parameters, converted and validated here.

Every way a value comes in ends in :func:`build`, so a bad value gets the same message, naming
the field, the accepted range and the value, whichever way it came. Types are checked here;
ranges by the dataclass itself (``__post_init__`` or a ``validate()`` method raising
ValueError ``"<field>: must be ..., got <value>"``). No ROS here: ``q_grasp.nodes.params``
binds these dataclasses to ROS parameters.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import numbers
import re
import textwrap
import types
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


# ------------------------------------------------------------------------------- field docs


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Docstrings of a dataclass's fields (the string literal under each field, MRO included)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # no source (frozen app, REPL): descriptions stay empty
            continue
        body = ast.parse(source).body[0]
        if not isinstance(body, ast.ClassDef):
            continue
        statements = body.body
        for stmt, following in zip(statements, statements[1:] + [None]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(following, ast.Expr)
                    and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)):
                docs[stmt.target.id] = inspect.cleandoc(following.value.value)
    return docs


@dataclass(frozen=True)
class Leaf:
    """One settable value of a config: a field that is not itself a dataclass."""

    name: str
    """Dotted name from the root, e.g. "camera.width" (a YAML key path, a ROS parameter)."""
    path: tuple[str, ...]
    """Attribute path from the root config, e.g. ("camera", "width")."""
    hint: Any
    """The field's type annotation."""
    description: str
    """The field's docstring."""


def unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``(T, True)`` for ``T | None``, else ``(hint, False)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return rest[0], True
    return hint, False


def leaves(cls: type, prefix: str = "") -> list[Leaf]:
    """Every settable field of ``cls``, nested dataclasses flattened into dotted names."""
    out: list[Leaf] = []

    def walk(klass: type, name_prefix: str, path: tuple[str, ...]) -> None:
        hints = typing.get_type_hints(klass)
        docs = field_docs(klass)
        for f in dataclasses.fields(klass):
            if not f.init:
                continue
            inner, _ = unwrap_optional(hints[f.name])
            if dataclasses.is_dataclass(inner):
                walk(inner, f"{name_prefix}{f.name}.", (*path, f.name))
            else:
                out.append(Leaf(f"{name_prefix}{f.name}", (*path, f.name), hints[f.name],
                                docs.get(f.name, "")))

    walk(cls, f"{prefix}." if prefix else "", ())
    return out


def removed_fields(cls: type, prefix: str = "") -> dict[str, str]:
    """Settings that ``cls`` (and its nested configs) no longer has, by dotted name, each with
    why; a class lists its own in a ``REMOVED_FIELDS`` class attribute."""
    out = {f"{prefix}.{name}" if prefix else name: why
           for name, why in getattr(cls, "REMOVED_FIELDS", {}).items()}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner, _ = unwrap_optional(hints[f.name])
        if f.init and dataclasses.is_dataclass(inner):
            out.update(removed_fields(inner, f"{prefix}.{f.name}" if prefix else f.name))
    return out


def removed_message(name: str, why: str) -> str:
    """The warning for a setting that is no longer read (the same for every way it comes)."""
    return f"{name}: no longer a setting ({why}); ignored, remove it from your configuration"


def check_each(config: Any, names: Sequence[str], ok: Callable[[Any], bool],
               rule: str) -> None:
    """The range check of a config's own fields, for its ``__post_init__``: ValueError
    ``"<name>: <rule>, got <value>"`` for the first of ``names`` whose value fails ``ok`` (NaN
    fails every comparison, so it is refused as out of range)."""
    for name in names:
        value = getattr(config, name)
        if not ok(value):
            raise ValueError(f"{name}: {rule}, got {value}")


def get_path(config: Any, path: Sequence[str]) -> Any:
    """The value at an attribute path such as ("camera", "width")."""
    for attr in path:
        config = getattr(config, attr)
    return config


# ------------------------------------------------------------------------------ conversion


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert(hint: Any, value: Any, name: str) -> Any:
    """``value`` checked against the annotation ``hint`` and converted (ints where floats are
    expected, lists where tuples are); ConfigError naming ``name`` otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(arg, value, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else
                          f"{name}: expected {_type_name(hint)}, got {value!r}")
    if origin is Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool)
                                                               for a in args):
            raise ConfigError(f"{name}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple, Sequence, typing.Sequence):
        # Lists, tuples and what ROS gives for arrays (array.array); never a lone string.
        if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__len__"):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        items = list(value)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis) and args:
            if len(items) != len(args):
                raise ConfigError(f"{name}: expected {len(args)} values, got {items!r}")
            return tuple(convert(a, v, f"{name}[{i}]") for i, (a, v) in
                         enumerate(zip(args, items)))
        elem = args[0] if args else Any
        converted = [convert(elem, v, f"{name}[{i}]") for i, v in enumerate(items)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        if len(args) == 2:  # each value as its type says (a dataclass per key: its fields)
            return {k: convert(args[1], v, f"{name}.{k}") for k, v in value.items()}
        return dict(value)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}: expected a mapping of fields, got {value!r}")
        return build(hint, value, prefix=name)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    if hint is float:  # NaN is a float here; build() refuses it after the class's checks
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value  # a type this module does not check (arrays, callables): the class does


# ---------------------------------------------------------------------------- construction


def _qualify(message: str, prefix: str, cls: type) -> str:
    """``"width: must be ..."`` raised by the nested ``camera`` becomes ``"camera.width: ..."``."""
    if not prefix:
        return message
    head, sep, rest = message.partition(":")
    names = {f.name for f in dataclasses.fields(cls)}
    words = head.split()
    # "width: ..." or "robot width: ..." (a class naming itself) become "camera.width: ..."
    if sep and "," not in head and 1 <= len(words) <= 2 and words[-1] in names:
        return f"{prefix}.{words[-1]}:{rest}"
    return f"{prefix}: {message}"


def _is_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, (list, tuple)) and any(_is_nan(v) for v in value)


def _with_own_rule(type_error: ConfigError, cls: type, base: Any, key: str,
                   value: Any) -> ConfigError:
    """A type error with the class's own rule for ``key`` added where it has one (it states
    the accepted range, which the type alone does not)."""
    try:
        if base is None:
            cls(**{key: value})
        else:
            dataclasses.replace(base, **{key: value})
    except ValueError as exc:
        head, _, rest = str(exc).partition(":")
        if head.split()[-1:] == [key]:
            return ConfigError(f"{type_error}; {rest.strip().rsplit(', got ', 1)[0]}")
    except Exception:  # noqa: BLE001 - a check not written for this type: the type error says it
        pass
    return type_error


def build(cls: type[C], data: Mapping[str, Any] | None, *, base: C | None = None,
          prefix: str = "", where: str = "") -> C:
    """``cls`` from a mapping of field values (nested mappings for nested dataclasses), fields
    not given keeping ``base``'s values (or the defaults); converted, then validated by the
    class. ConfigError names the field by its dotted name, e.g. ``camera.width``.

    ``prefix``: the dotted name of this config in its parent; ``where``: how to call the top
    level in messages (default "top level").
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or where or 'config'}: expected a mapping of fields, "
                          f"got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    dotted = f"{prefix}." if prefix else ""
    removed = getattr(cls, "REMOVED_FIELDS", {})
    for key in [k for k in data if k in removed]:
        warnings.warn(removed_message(dotted + key, removed[key]), FutureWarning, stacklevel=2)
        data = {k: v for k, v in data.items() if k != key}
    unknown = sorted(set(data) - set(names), key=str)
    if unknown:
        raise ConfigError(f"{dotted}{unknown[0]}: unknown field in "
                          f"{prefix or where or 'top level'} (unknown config fields: {unknown}; "
                          f"known fields: {', '.join(names)})")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        inner, optional = unwrap_optional(hint)
        if dataclasses.is_dataclass(inner) and isinstance(value, Mapping):
            nested_base = getattr(base, key) if base is not None else None
            kwargs[key] = build(inner, value, base=nested_base, prefix=dotted + key)
        else:
            try:
                kwargs[key] = convert(hint, value, dotted + key)
            except ConfigError as type_error:
                raise _with_own_rule(type_error, cls, base, key, value) from None
    try:
        config = (cls(**kwargs) if base is None else dataclasses.replace(base, **kwargs))
        if not prefix and hasattr(config, "validate"):
            config.validate()
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(_qualify(str(exc), prefix, cls)) from None
    # NaN passes every comparison a range check makes: refused here unless the class's own
    # check (which states the range) already has.
    for key, value in kwargs.items():
        if _is_nan(value):
            raise ConfigError(f"{dotted}{key}: must be a number, not NaN, got {value!r}")
    return config


def replace(config: C, changes: Mapping[str, Any] | None, *, where: str = "") -> C:
    """``config`` with ``changes`` applied (nested mappings change nested fields), validated."""
    return build(type(config), changes, base=config, where=where)


# ------------------------------------------------------------------------ YAML and overrides


class _Loader(yaml.SafeLoader):
    """Safe YAML that also reads ``5e-4`` as a number (YAML 1.2, and ROS params files, do;
    PyYAML's YAML 1.1 rules want ``5.0e-4`` and return the string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def parse_yaml(text: str) -> Any:
    """A YAML document (safe: plain data only)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def read_yaml(path: str | Path) -> Any:
    """The YAML document in ``path``; ConfigError names the file when it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r}: cannot read ({exc.strerror})") from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r}: not valid YAML: {exc}") from None


def load_yaml(cls: type[C], path: str | Path) -> C:
    """``cls`` from a YAML file of its fields (missing ones take their defaults)."""
    data = read_yaml(path)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r}: top level must be a mapping of "
                          f"sections, got {type(data).__name__}")
    try:
        return build(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"config file {str(path)!r}: {exc}") from None


def parse_override(item: str, option: str = "--set") -> tuple[str, Any]:
    """``"section.field=value"`` as (dotted name, value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{option}: expected section.field=value, got {item!r}")
    try:
        return key, parse_yaml(raw)
    except yaml.YAMLError:
        raise ConfigError(f"{option} {key}: cannot parse value {raw!r}") from None


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], *,
                    option: str = "--set", nested: bool = True) -> dict[str, Any]:
    """``section.field=value`` strings applied onto a nested dict of field values.

    ``nested``: a dotted key names a nested field; require at least one dot.
    """
    for item in overrides:
        key, value = parse_override(item, option)
        parts = key.split(".")
        if nested and len(parts) < 2:
            raise ConfigError(f"{option}: expected section.field=value, got {item!r}")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{option} {key}: {part!r} is not a section")
        node[parts[-1]] = value
    return data
