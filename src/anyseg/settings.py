"""The one binder: frozen dataclasses <-> config files (TOML, YAML, JSON) <-> command-line flags.

Every setting of anyseg is a field of a frozen dataclass, written once; bigger configs contain
smaller ones (``EvalConfig.amg`` is an ``AmgConfig``). This module moves values between those
dataclasses and the outside world, the same way for every command:

- :func:`from_mapping` builds a dataclass from nested mappings (a parsed file): unknown keys are
  an error that names them and suggests the closest known ones, types are checked (an int where a
  float is expected is converted, a list becomes a tuple), nested tables become nested configs;
  with ``base`` only the given keys change.
- :func:`read_file` / :func:`load_file` read TOML, YAML or JSON; a file may start from another
  with ``extends = "other.toml"`` (relative to the file; tables merge key by key).
- :func:`to_mapping` / :func:`dump_toml` write a config back out whole (``config.resolved.toml``).
- :func:`add_arguments` generates one flag per field from the field's metadata and type (the
  fields of a nested config get the prefix its field names, e.g. ``--amg-``);
  :func:`from_arguments` turns the flags that were given into a config, on top of a base (so a
  flag overrides a file, and an absent flag changes nothing).

Field metadata (``dataclasses.field(metadata=...)``), all optional:

- ``help``: the flag's help text (the default is appended).
- ``cli``: False keeps the field off the command line.
- ``flag``: an explicit flag name (e.g. ``"--steps"``) instead of prefix + field name.
- ``const``: the flag takes no value and stores this one (e.g. ``--no-mask-feedback`` stores False).
- ``metavar``: the placeholder shown in ``--help``.
- ``prefix`` (on a nested config field): put before the generated names of its fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import types
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from anyseg.errors import InvalidInputError

T = TypeVar("T")

#: Config-file suffixes :func:`read_file` understands.
CONFIG_SUFFIXES = (".toml", ".yaml", ".yml", ".json")
#: The key with which a config file names the file it starts from.
EXTENDS_KEY = "extends"


def opt(help_text: str, **extra: Any) -> dict[str, Any]:
    """Field metadata: ``field(default=..., metadata=opt("what it does", flag="--x"))``."""
    return {"help": help_text, **extra}


# --------------------------------------------------------------------------------------------
# mappings -> dataclasses


def from_mapping(
    cls: type[T], data: Mapping[str, Any], *, source: str = "config", base: T | None = None
) -> T:
    """Build ``cls`` from nested mappings, checking names and types.

    Args:
        cls: a (frozen) dataclass type.
        data: field name -> value; nested dataclass fields take nested mappings.
        source: where the values come from, for error messages (a file name, "command line").
        base: an instance whose values are kept where ``data`` gives none (default: the
            class defaults).

    Raises:
        InvalidInputError: unknown keys (named, with the closest known ones), values of the wrong
            type, or values the dataclass itself rejects.
    """
    return _build(cls, data, source, "", base)


def _build(cls: Any, data: Mapping[str, Any], source: str, prefix: str, base: Any) -> Any:
    if not isinstance(data, Mapping):
        where = prefix.rstrip(".") or "top level"
        raise InvalidInputError(f"{source}: {where} must be a table, got {data!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = prefix.rstrip(".") or "top level"
        hints_text = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), names, n=2)
            hints_text.append(
                f"{prefix}{key}" + (f" (did you mean {' or '.join(close)}?)" if close else "")
            )
        raise InvalidInputError(
            f"{source}: unknown key(s) {', '.join(hints_text)} in {where}; "
            f"known: {', '.join(names)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        sub_base = getattr(base, name) if base is not None else None
        if _is_dataclass_type(hint):
            if isinstance(value, hint):
                kwargs[name] = value
            else:
                kwargs[name] = _build(hint, value, source, f"{prefix}{name}.", sub_base)
        else:
            kwargs[name] = coerce(hint, value, f"{source}: {prefix}{name}")
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{source}: {exc}") from None
    except TypeError as exc:  # a required field without a value
        raise InvalidInputError(f"{source}: {exc}") from None


def coerce(hint: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` and convert it lightly (int -> float,
    list -> tuple, str -> Path); raise :class:`InvalidInputError` naming ``where``."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin is Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args):
            raise InvalidInputError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(option, value, where)
            except InvalidInputError as exc:
                errors.append(str(exc))
        raise InvalidInputError(errors[0] if len(errors) == 1 else f"{where}: got {value!r}")
    if origin is tuple or hint is tuple:
        if not isinstance(value, (list, tuple)):
            raise InvalidInputError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], v, where) for v in value)
        if args and args != ((),):
            if len(value) != len(args):
                raise InvalidInputError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(coerce(a, v, where) for a, v in zip(args, value, strict=True))
        return tuple(value)
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        if not isinstance(value, Mapping):
            raise InvalidInputError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise InvalidInputError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInputError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise InvalidInputError(f"{where}: expected a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise InvalidInputError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    return value  # other types (arrays, callables) are passed as they are


def _hints(cls: Any) -> dict[str, Any]:
    return get_type_hints(cls)


def _is_dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


# --------------------------------------------------------------------------------------------
# dataclasses -> mappings and TOML


def to_mapping(cfg: Any, *, drop_none: bool = False) -> dict[str, Any]:
    """Nested plain dict of a dataclass (tuples as lists, paths as strings): JSON-ready, and the
    inverse of :func:`from_mapping`. ``drop_none`` leaves unset (None) values out (TOML has no
    null)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {
                f.name: plain(getattr(v, f.name))
                for f in dataclasses.fields(v)
                if not (drop_none and getattr(v, f.name) is None)
            }
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items() if not (drop_none and x is None)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        if hasattr(v, "tolist"):  # numpy arrays
            return v.tolist()
        return v

    out: dict[str, Any] = plain(cfg)
    return out


def dump_toml(cfg: Any) -> str:
    """A config (dataclass or mapping) as TOML text; :func:`load_file` reads it back equal."""
    data = to_mapping(cfg, drop_none=True) if dataclasses.is_dataclass(cfg) else dict(cfg)
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
    lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
    if scalars:
        lines.append("")

    def emit_table(name: str, table: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
        subs = {k: v for k, v in table.items() if isinstance(v, Mapping)}
        if scalars or not subs:
            lines.append(f"[{name}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
            lines.append("")
        for k, v in subs.items():
            if v:
                emit_table(f"{name}.{k}", v)

    for section, table in data.items():
        if isinstance(table, Mapping):
            emit_table(section, table)
    return "\n".join(lines)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if math.isnan(v):
            return "nan"
        return repr(v)
    if isinstance(v, str):
        escaped = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise InvalidInputError(f"cannot write {v!r} to TOML")


# --------------------------------------------------------------------------------------------
# files


def read_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML, YAML or JSON config file into a dict, with ``extends`` resolved.

    ``extends = "base.toml"`` (or a list of files, applied in order) names files, relative to
    this one, whose values this file starts from: tables merge key by key, anything else
    (numbers, strings, lists) is replaced whole.

    Raises:
        InvalidInputError: a missing or unparsable file, an unknown suffix, or a cycle of
            ``extends``.
    """
    return _read_file(Path(path), ())


def _read_file(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise InvalidInputError(f"config files extend each other in a cycle: {cycle}")
    data = _parse(path)
    parents = data.pop(EXTENDS_KEY, None)
    if parents is None:
        return data
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise InvalidInputError(f"{path}: {EXTENDS_KEY} must be a file name or a list of them")
    merged: dict[str, Any] = {}
    for parent in parents:
        merged = merge(merged, _read_file(path.parent / parent, (*chain, resolved)))
    return merge(merged, data)


def _parse(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InvalidInputError(f"config file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise InvalidInputError(
            f"config file {str(path)!r}: expected one of {', '.join(CONFIG_SUFFIXES)}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read config file {path}: {exc}") from None
    try:
        data: Any
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
            data = {} if data is None else data
    except Exception as exc:  # the parsers' errors carry line numbers
        raise InvalidInputError(f"config file {str(path)!r} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"config file {str(path)!r}: expected a table of settings")
    return data


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` applied: nested tables merge key by key, other values replace."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_file(cls: type[T], path: str | Path, *, base: T | None = None) -> T:
    """:func:`read_file` then :func:`from_mapping` (errors name the file)."""
    return from_mapping(cls, read_file(path), source=str(path), base=base)


# --------------------------------------------------------------------------------------------
# command-line flags


@dataclasses.dataclass(frozen=True)
class _Flag:
    name: str  # e.g. "--amg-points-per-side"
    path: tuple[str, ...]  # field names from the top config down
    hint: Any
    field: dataclasses.Field[Any]
    default: Any


def _flags(
    cls: Any,
    *,
    prefix: str,
    nested: bool,
    marked_only: bool,
    base: Any,
    path: tuple[str, ...] = (),
    exclude: Collection[str] = (),
) -> Iterator[_Flag]:
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        hint = hints[f.name]
        value = getattr(base, f.name) if base is not None else _field_default(f)
        if _is_dataclass_type(hint):
            if nested and f.metadata.get("cli", True) is not False:
                yield from _flags(
                    hint,
                    prefix=prefix + f.metadata.get("prefix", ""),
                    nested=nested,
                    marked_only=marked_only,
                    base=value,
                    path=(*path, f.name),
                )
            continue
        if f.metadata.get("cli", True) is False:
            continue
        if marked_only and "flag" not in f.metadata:
            continue
        name = f.metadata.get("flag") or "--" + prefix + f.name.replace("_", "-")
        yield _Flag(name, (*path, f.name), hint, f, value)


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _dest(cls: Any, path: Sequence[str]) -> str:
    """The argparse destination of a field: unique per config class and field path."""
    return f"_cfg_{cls.__module__}.{cls.__qualname__}:" + ".".join(path)


def add_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type[Any],
    *,
    nested: bool = False,
    marked_only: bool = False,
    base: Any = None,
    exclude: Collection[str] = (),
) -> None:
    """Add one flag per command-line field of ``cls`` (see the module docstring).

    Args:
        parser: a parser or argument group.
        cls: the dataclass.
        nested: also add the fields of nested dataclass fields, their names prefixed further by
            the nested field's ``prefix`` metadata (``amg: AmgConfig`` with ``prefix="amg-"``
            gives ``--amg-points-per-side``).
        marked_only: only fields whose metadata names a ``flag``.
        base: an instance whose values are shown as the defaults (default: the class defaults).
        exclude: names of top-level fields to leave out.

    Flags that are not given leave nothing in the namespace, so :func:`from_arguments` changes
    only what was given.
    """
    for flag in _flags(
        cls, prefix="", nested=nested, marked_only=marked_only, base=base, exclude=exclude
    ):
        meta = flag.field.metadata
        help_text = meta.get("help", "")
        kwargs: dict[str, Any] = {"dest": _dest(cls, flag.path), "default": argparse.SUPPRESS}
        if "const" in meta:
            kwargs.update(action="store_const", const=meta["const"])
        elif flag.hint is bool:
            kwargs.update(action=argparse.BooleanOptionalAction)
            help_text += f" (default: {'on' if flag.default else 'off'})"
        else:
            convert, choices, metavar = _parse_for(flag.hint)
            kwargs.update(type=convert, metavar=meta.get("metavar", metavar))
            if choices:
                kwargs.update(choices=choices, metavar=None)
            help_text += f" (default: {_show(flag.default)})"
        parser.add_argument(flag.name, help=help_text, **kwargs)


def from_arguments(cls: type[T], args: argparse.Namespace, *, base: T | None = None) -> T:
    """The config of the flags :func:`add_arguments` added for ``cls``, on top of ``base`` (or
    the defaults): only the flags that were given change anything.

    Raises:
        InvalidInputError: a value the config rejects; the message names the flag as typed.
    """
    values: dict[str, Any] = {}
    given: list[tuple[str, str, Any]] = []  # (field name, flag, value)
    for flag in _flags(cls, prefix="", nested=True, marked_only=False, base=None):
        dest = _dest(cls, flag.path)
        if not hasattr(args, dest):
            continue
        table = values
        for key in flag.path[:-1]:
            table = table.setdefault(key, {})
        table[flag.path[-1]] = getattr(args, dest)
        given.append((flag.path[-1], flag.name, getattr(args, dest)))
    try:
        return from_mapping(cls, values, source="command line", base=base)
    except InvalidInputError as exc:
        # Name the flag the user typed next to the field the config rejected.
        text = str(exc)
        named = [f"{flag} {_show(value)}" for name, flag, value in given if name in text]
        raise InvalidInputError(text + (f" ({', '.join(named)})" if named else "")) from None


def _parse_for(hint: Any) -> tuple[Callable[[str], Any], list[Any] | None, str]:
    """argparse ``type``, ``choices`` and ``metavar`` for a field type."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _parse_for(inner[0])
    if origin is Literal:
        return type(args[0]), list(args), ""
    if origin is tuple:
        elem = args[0] if args else str

        def parse_list(text: str) -> tuple[Any, ...]:
            return tuple(elem(x.strip()) for x in text.split(",") if x.strip())

        return parse_list, None, "A,B,..."
    if hint is int:
        return int, None, "N"
    if hint is float:
        return float, None, "X"
    if hint is Path:
        return Path, None, "PATH"
    return str, None, "TEXT"


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return ",".join(_show(v) for v in value) if value else "none"
    return str(value)
