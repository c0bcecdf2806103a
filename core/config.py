"""One config system for every stage: nested dataclasses are the only place a knob is written.

A stage's config is a (frozen) dataclass whose fields are leaves (int, float, str, bool, optional
and tuple-of-str values) or nested dataclasses (sections). Each leaf carries its help text in
``field(metadata=knob(...))``. From that one definition this module builds:

- CLI flags (:func:`add_flags`): ``--field-name`` per leaf, sections flattened (a section with
  ``prefix=True`` gives ``--section-field-name``); booleans take ``--x/--no-x`` unless the knob
  names its own flag (a switch: its help shows no default); help shows each default once
  (a help text that already says ``default: ...`` gets none appended);
- YAML files (``--config FILE``) and ``--set a.b=v`` overrides, keyed by the dotted path;
- keyword overrides in Python (:func:`replace_leaves`: ``run(..., min_quality=0.5)``);
- the JSON written into every summary (:func:`to_dict`).

Precedence: defaults < ``--config`` YAML < ``--set`` < explicit flags. A misspelled flag, YAML key
or ``--set`` path is an error naming the closest valid one; Beam's own options pass through only
where a stage runs Beam (:func:`parse`). Out-of-range values (``knob(min=1)``) are errors naming the
flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import MISSING, dataclass, field
from typing import Any

from core.cli import InputError


class ConfigError(InputError):
    """A user mistake in flags, a YAML file or an override: the CLI prints it as one ``error:`` line."""


def knob(help: str, *, flag: str | None = None, min: float | None = None, max: float | None = None,
         choices: Sequence[Any] | None = None, column: bool = False, hidden: bool = False,
         prefix: bool = False, repeat: bool = False) -> dict[str, Any]:
    """Metadata for ``dataclasses.field``: help text, an explicit flag, bounds, choices; ``column``
    marks an option that names an input column (checked against the input's columns); ``repeat``
    makes a tuple knob's flag repeatable (``--domain a --domain b`` adds up; commas still split)."""
    return {
        "help": help,
        "flag": flag,
        "min": min,
        "max": max,
        "choices": tuple(choices) if choices else None,
        "column": column,
        "hidden": hidden,
        "prefix": prefix,
        "repeat": repeat,
    }


def section(cls: type, help: str = "", prefix: bool = False) -> Any:
    """A nested config section field with its defaults."""
    return field(default_factory=cls, metadata={"help": help, "prefix": prefix})


@dataclass(frozen=True)
class Leaf:
    """One knob: its dotted path, flag, type, default and metadata."""

    path: str
    flag: str
    kind: type
    optional: bool
    tuple_of: type | None
    default: Any
    meta: dict[str, Any]

    @property
    def dest(self) -> str:
        return "cfg__" + self.path.replace(".", "__")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap(tp: Any) -> tuple[type, bool, type | None]:
    """(base type, optional, tuple element type) of an annotation."""
    optional = False
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        optional = len(rest) < len(args)
        tp = rest[0] if len(rest) == 1 else str
        args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return type(args[0]), optional, None
    if origin in (tuple, list):
        return tuple, optional, args[0] if args else str
    if origin is dict or tp is dict:
        return dict, optional, None
    return tp, optional, None


@functools.cache
def leaves(cls: type, base: str = "", flag_base: str = "") -> tuple[Leaf, ...]:
    """Every knob of ``cls`` (nested sections included), in declaration order."""
    out: list[Leaf] = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        path = f"{base}{f.name}"
        if dataclasses.is_dataclass(tp):
            fb = f"{flag_base}{f.name.replace('_', '-')}-" if f.metadata.get("prefix") else flag_base
            out.extend(leaves(tp, f"{path}.", fb))
            continue
        kind, optional, elem = _unwrap(tp)
        if kind is dict:
            continue  # free-form extras: YAML / --set only
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)  # type: ignore[misc]
        meta = dict(f.metadata) if f.metadata else {}
        flag = meta.get("flag") or f"--{flag_base}{f.name.replace('_', '-')}"
        choices = meta.get("choices")
        if choices is None and typing.get_origin(tp) is typing.Literal:
            meta["choices"] = typing.get_args(tp)
        elif choices is None and optional and typing.get_origin(_strip_none(tp)) is typing.Literal:
            meta["choices"] = typing.get_args(_strip_none(tp))
        out.append(Leaf(path, flag, kind, optional, elem, default, meta))
    return tuple(out)


def _strip_none(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if len(args) == 1 else tp


def _fmt_default(leaf: Leaf) -> str:
    v = leaf.default
    if v is None:
        return "none"
    if isinstance(v, tuple):
        return ",".join(map(str, v)) or "(empty)"
    return str(v)


def add_flags(parser: argparse.ArgumentParser, cls: type, title: str | None = None) -> None:
    """One flag per knob of ``cls``. Defaults are suppressed in the namespace (so only flags the
    user gave override YAML and ``--set``); help shows each default once."""
    group = parser.add_argument_group(title or f"{cls.__name__} options")
    for leaf in leaves(cls):
        meta = leaf.meta
        help_text = meta.get("help") or ""
        if meta.get("hidden"):
            help_text = argparse.SUPPRESS
        kw: dict[str, Any] = {"dest": leaf.dest, "default": argparse.SUPPRESS}
        if leaf.kind is bool and not leaf.optional:
            if meta.get("flag"):  # an explicit flag is a switch to the non-default value
                kw.update(action="store_const", const=not leaf.default)
            else:
                kw.update(action=argparse.BooleanOptionalAction)
            if help_text is not argparse.SUPPRESS and not meta.get("flag") and "default:" not in help_text:
                help_text = f"{help_text} (default: {'on' if leaf.default else 'off'})"
            group.add_argument(leaf.flag, help=help_text, **kw)
            continue
        if (
            help_text is not argparse.SUPPRESS and "default:" not in help_text
        ):  # help may say its default itself
            help_text = f"{help_text} (default: {_fmt_default(leaf)})"
        if meta.get("choices"):
            kw["choices"] = list(meta["choices"])
        if meta.get("repeat") and leaf.kind is tuple:
            kw["action"] = _Extend
        kw["type"] = functools.partial(_parse_value, leaf)
        kw["metavar"] = leaf.flag.lstrip("-").replace("-", "_").upper() if not meta.get("choices") else None
        group.add_argument(leaf.flag, help=help_text, **kw)


class _Extend(argparse.Action):
    """A repeatable tuple flag: each occurrence's items are appended to the earlier ones."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: D102
        setattr(namespace, self.dest, tuple(getattr(namespace, self.dest, ()) or ()) + tuple(values or ()))


def _parse_value(leaf: Leaf, text: Any) -> Any:
    """A flag, YAML or ``--set`` value -> the knob's type (``none`` clears an optional knob)."""
    if text is None:
        if leaf.optional:
            return None
        raise ConfigError(f"{leaf.flag} cannot be empty")
    if isinstance(text, str) and leaf.optional and text.strip().lower() in ("none", "null", ""):
        return None
    try:
        if leaf.kind is tuple:
            items = text.split(",") if isinstance(text, str) else list(text)
            elem = leaf.tuple_of if leaf.tuple_of in (int, float, str) else str
            return tuple(elem(str(x).strip()) for x in items if str(x).strip())
        if leaf.kind is bool:
            if isinstance(text, bool):
                return text
            low = str(text).strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if leaf.kind is int and isinstance(text, float) and not text.is_integer():
            raise ValueError(text)
        return leaf.kind(text) if leaf.kind in (int, float, str) else text
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid {leaf.kind.__name__}") from None


def closest(name: str, options: Sequence[str]) -> str:
    """`` (did you mean X?)`` for the option nearest to ``name``, or an empty string."""
    near = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean {near[0]}?)" if near else ""


@functools.cache
def beam_option_flags() -> frozenset[str]:
    """Every flag Beam's PipelineOptions subclasses define (``--runner``, ``--project``...)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    parser = argparse.ArgumentParser(add_help=False)
    seen: set[type] = set()
    todo = [PipelineOptions]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        todo.extend(cls.__subclasses__())
        try:
            cls._add_argparse_args(parser)  # type: ignore[attr-defined]
        except (argparse.ArgumentError, TypeError, AttributeError):
            continue
    return frozenset(s for a in parser._actions for s in a.option_strings if s.startswith("--"))


def check_extra_args(extra: list[str], parser: argparse.ArgumentParser, beam: bool) -> list[str]:
    """The args to hand to Beam; anything else unknown is a ConfigError naming the closest flag."""
    ours = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    allowed = beam_option_flags() if beam else frozenset()
    passed: list[str] = []
    take_value = False
    for tok in extra:
        if take_value and not tok.startswith("--"):
            passed.append(tok)
            take_value = False
            continue
        take_value = False
        if not tok.startswith("--"):
            raise ConfigError(f"unexpected argument {tok!r}")
        name = tok.split("=", 1)[0]
        if name in allowed:
            passed.append(tok)
            take_value = "=" not in tok
            continue
        hint = closest(name, ours + ([] if not beam else sorted(allowed)))
        where = " (and not a Beam pipeline option)" if beam else ""
        raise ConfigError(f"unknown option {name}{where}{hint}")
    return passed


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--config FILE.yaml`` and repeatable ``--set a.b=v``."""
    parser.add_argument("--config", dest="config_file", default=None, metavar="FILE",
                        help="YAML file of config values, nested like the config (see --print-config)")
    parser.add_argument(
        "--set",
        dest="config_set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value by its dotted path, e.g. --set dedup.cos_threshold=0.95",
    )
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as JSON and exit")


def _leaf_index(cls: type) -> dict[str, Leaf]:
    return {leaf.path: leaf for leaf in leaves(cls)}


def _flatten(d: dict[str, Any], base: str = "") -> Iterator[tuple[str, Any]]:
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{base}{k}.")
        else:
            yield f"{base}{k}", v


def _extras_paths(cls: type, base: str = "") -> set[str]:
    """Dotted paths of free-form dict fields (``extra``), which take any sub-key."""
    out = set()
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out |= _extras_paths(tp, f"{base}{f.name}.")
        elif _unwrap(tp)[0] is dict:
            out.add(f"{base}{f.name}")
    return out


def values_from_mapping(cls: type, data: dict[str, Any], source: str) -> dict[str, Any]:
    """Nested mapping (YAML) -> {dotted path: typed value}; unknown keys are ConfigErrors."""
    index = _leaf_index(cls)
    extras = _extras_paths(cls)
    out: dict[str, Any] = {}
    for path, raw in _flatten(data):
        extra_root = next((e for e in extras if path == e or path.startswith(e + ".")), None)
        if extra_root is not None:
            out[path] = raw
            continue
        if path not in index:
            raise ConfigError(f"{source}: unknown key {path}{closest(path, list(index))}")
        try:
            out[path] = _parse_value(index[path], raw)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"{source}: {path}: {exc}") from None
    return out


def values_from_sets(cls: type, sets: Sequence[str]) -> dict[str, Any]:
    """``a.b=v`` strings -> {dotted path: typed value}."""
    index = _leaf_index(cls)
    extras = _extras_paths(cls)
    out: dict[str, Any] = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        path, raw = (s.strip() for s in item.split("=", 1))
        if any(path == e or path.startswith(e + ".") for e in extras):
            out[path] = _yaml_scalar(raw)
            continue
        if path not in index:
            flag_like = {leaf.flag.lstrip("-").replace("-", "_"): leaf.path for leaf in index.values()}
            if path in flag_like:
                path = flag_like[path]  # the flag's own name is accepted for a flattened knob
            else:
                raise ConfigError(f"--set {path}: unknown key{closest(path, list(index))}")
        try:
            out[path] = _parse_value(index[path], _yaml_scalar(raw))
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"--set {path}: {exc}") from None
    return out


def _yaml_scalar(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def load_yaml(path: str) -> dict[str, Any]:
    """A YAML mapping from any Beam filesystem path (safe loader: plain data only)."""
    import yaml

    from core import storage

    try:
        data = yaml.safe_load(storage.read_bytes(path).decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: not valid YAML ({type(exc).__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return data


def build(cls: type, values: dict[str, Any] | None = None) -> Any:
    """An instance of ``cls`` with ``values`` ({dotted path: value}) set, bounds checked."""
    values = dict(values or {})
    index = _leaf_index(cls)
    for path, v in values.items():
        leaf = index.get(path)
        if leaf is not None:
            _check_bounds(leaf, v)
    return _build(cls, values, "")


def _build(cls: type, values: dict[str, Any], base: str) -> Any:
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        path = f"{base}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            sub = {k: v for k, v in values.items() if k.startswith(path + ".")}
            if sub:
                kwargs[f.name] = _build(tp, values, path + ".")
        elif _unwrap(tp)[0] is dict:
            sub = {k[len(path) + 1:]: v for k, v in values.items() if k.startswith(path + ".")}
            if path in values and isinstance(values[path], dict):
                sub = {**values[path], **sub}
            if sub:
                kwargs[f.name] = sub
        elif path in values:
            kwargs[f.name] = values[path]
    return cls(**kwargs)


def _check_bounds(leaf: Leaf, v: Any) -> None:
    if v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return
    lo, hi = leaf.meta.get("min"), leaf.meta.get("max")
    if lo is not None and v < lo:
        raise ConfigError(f"{leaf.flag} must be >= {lo:g}, not {v}")
    if hi is not None and v > hi:
        raise ConfigError(f"{leaf.flag} must be <= {hi:g}, not {v}")


def replace_leaves(cfg: Any, **overrides: Any) -> Any:
    """``cfg`` with leaves replaced by field name (``min_quality=0.5``) or dotted path
    (``**{"dedup.cos_threshold": 0.9}``); an unknown name is a ConfigError naming the closest."""
    cls = type(cfg)
    index = _leaf_index(cls)
    by_name: dict[str, list[str]] = {}
    for path in index:
        by_name.setdefault(path.rsplit(".", 1)[-1], []).append(path)
    values = dict(flat_values(cfg))
    extras = _extras_paths(cls)
    for name, v in overrides.items():
        if name in index or name in extras:
            path = name
        elif len(by_name.get(name, [])) == 1:
            path = by_name[name][0]
        elif name in by_name:
            raise ConfigError(f"option {name} is ambiguous: use one of {', '.join(by_name[name])}")
        else:
            raise ConfigError(f"unknown option {name}{closest(name, list(by_name) + list(index))}")
        leaf = index.get(path)
        if leaf is not None and not (v is None and leaf.optional):
            if isinstance(v, str | list) and leaf.kind is not str or leaf.kind is tuple:
                v = _parse_value(leaf, v)
        values[path] = v
    return build(cls, values)


def flat_values(cfg: Any, base: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) for every field of a config instance."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            yield from flat_values(v, f"{base}{f.name}.")
        else:
            yield f"{base}{f.name}", v


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-able nested dict of a config (tuples as lists): what summaries record."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=list))


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), sort_keys=True)


def from_dict(cls: type, data: dict[str, Any] | None, source: str = "config") -> Any:
    """The inverse of :func:`to_dict` (strict: unknown keys are ConfigErrors)."""
    return build(cls, values_from_mapping(cls, data or {}, source))


def resolve(cls: type, ns: argparse.Namespace, base: Any = None) -> Any:
    """The config from parsed args: ``base`` (or defaults) < --config < --set < explicit flags."""
    values: dict[str, Any] = dict(flat_values(base)) if base is not None else {}
    if getattr(ns, "config_file", None):
        values.update(values_from_mapping(cls, load_yaml(ns.config_file), ns.config_file))
    values.update(values_from_sets(cls, getattr(ns, "config_set", None) or []))
    for leaf in leaves(cls):
        if hasattr(ns, leaf.dest):
            values[leaf.path] = getattr(ns, leaf.dest)
    return build(cls, values)


def column_knobs(cfg: Any, changed_only: bool = False) -> dict[str, str]:
    """{flag: column name} for the options that name input columns (``knob(column=True)``);
    ``changed_only``: only those set away from their default (a default like ``url`` may be absent)."""
    index = _leaf_index(type(cfg))
    out = {}
    for path, v in flat_values(cfg):
        leaf = index.get(path)
        if leaf is not None and leaf.meta.get("column") and v and not (changed_only and v == leaf.default):
            out[leaf.flag] = v
    return out


def check_columns(cfg: Any, columns: Sequence[str], source: str, changed_only: bool = False) -> None:
    """Every column-naming option must name a column of the input (ConfigError otherwise)."""
    have = list(columns)
    for flag, col in column_knobs(cfg, changed_only).items():
        if col not in have:
            raise ConfigError(f"{flag} {col}: {source} has no such column{closest(col, have)}"
                              f"; columns: {', '.join(have[:20])}")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are ConfigErrors (one ``error:`` line via core.cli.run)."""

    def error(self, message: str) -> typing.NoReturn:  # noqa: D102
        raise ConfigError(message)


def parser_for(prog: str, description: str | None) -> Parser:
    return Parser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                  allow_abbrev=False)


def parse(parser: argparse.ArgumentParser, cls: type, argv: Sequence[str] | None,
          beam: bool = False) -> tuple[argparse.Namespace, Any, list[str]]:
    """(namespace, config, Beam args). ``parser`` must already have :func:`add_flags` and
    :func:`add_config_args`; ``--print-config`` prints the resolved config and exits 0."""
    ns, extra = parser.parse_known_args(argv)
    beam_args = check_extra_args(extra, parser, beam)
    cfg = resolve(cls, ns)
    if getattr(ns, "print_config", False):
        print(json.dumps(to_dict(cfg), indent=2))
        raise SystemExit(0)
    return ns, cfg, beam_args
