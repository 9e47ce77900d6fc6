"""YAML configs loaded into dataclasses with strict keys, types checked, and ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 numbers, so ``2:4`` (an N:M pattern) stays the string "2:4", not 124."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, re.compile(r"(?!.*:)" + regexp.pattern, regexp.flags) if tag.endswith((":int", ":float")) else regexp)
        for tag, regexp in resolvers
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _parse(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


class ConfigError(ValueError):
    """A config file or override that does not fit its dataclass."""


def load_config(cls: type[T], path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> T:
    """Build ``cls`` from a YAML file plus ``a.b=value`` overrides (values parsed as YAML scalars)."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = _parse(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(loaded).__name__}")
        raw = loaded or {}
    given: dict[str, str] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key=value (nested keys with dots: a.b=1)")
        key = key.strip()
        _set_dotted(raw, key.split("."), _parse(value), item)
        given[key] = item
    return _build(cls, raw, where=str(path) if path else "config", prefix="", overrides=given)


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-serialisable dict of a config dataclass."""
    return dataclasses.asdict(config)


def _set_dotted(raw: dict[str, Any], keys: list[str], value: Any, item: str) -> None:
    node = raw
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {key} is not a section, so {'.'.join(keys)} cannot be set")
    node[keys[-1]] = value


def _origin(where: str, dotted: str, overrides: dict[str, str]) -> str:
    """Where a key's value came from: the command-line override that set it, else the config file."""
    return f"override {overrides[dotted]!r}" if dotted in overrides else f"{where}:{dotted}"


def _build(cls: type[T], raw: Any, where: str, prefix: str = "", overrides: dict[str, str] | None = None) -> T:
    overrides = overrides or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{_origin(where, prefix.rstrip('.'), overrides)}: expected a mapping for {cls.__name__}, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, fields, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        source = next((f"override {overrides[prefix + k]!r}" for k in unknown if prefix + k in overrides), where)
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(hints)} for {cls.__name__}; valid keys: {', '.join(sorted(fields))}"
        )
    hints_by_name = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        dotted = prefix + name
        if name in raw:
            tp = hints_by_name[name]
            if dataclasses.is_dataclass(tp):
                kwargs[name] = _build(tp, raw[name], where, dotted + ".", overrides)
            else:
                kwargs[name] = _coerce(tp, raw[name], _origin(where, dotted, overrides))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {dotted!r} for {cls.__name__}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        culprits = [item for key, item in overrides.items() if key.startswith(prefix) and key[len(prefix):] in fields]
        source = f"{where} with override(s) {', '.join(map(repr, culprits))}" if culprits else where
        raise ConfigError(f"{source}: {err}") from err


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value
