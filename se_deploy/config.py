"""The base of every typed config: validated on construction, frozen, one-line errors, TOML out.

Stage configs (ExportConfig, QuantConfig, BenchConfig) and the pipeline config are
pydantic models built on :class:`Config`, so the pipeline's sections *are* the stage
types: a value that validates in a TOML file is a value the stage runs with. Each
cross-field rule lives in one ``model_validator`` of the type that owns the fields.

Errors: keyword construction (``ExportConfig(opset=7)``) raises UsageError with one
line naming the field, the bad value and what is allowed. Loaders that want their own
prefix or error type (the pipeline's ConfigError) call :func:`validate` and
:func:`format_validation_error` themselves.

This module sits at the bottom of the package: it imports only pydantic, the standard
library and se_deploy.errors / se_deploy.names.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from se_deploy.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # JetPack 6 ships Python 3.10
    import tomli as tomllib

TOMLDecodeError = tomllib.TOMLDecodeError


class BadValue(ValueError):
    """Raised by a model validator to name the field at fault (a model validator's error
    otherwise points at the whole model, not the key the user has to change)."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.field, self.value, self.reason = field, value, reason


class Config(BaseModel):
    """Frozen, no unknown keys, names stored as their plain string values."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=True, validate_default=True)
    error_type: ClassVar[type[Exception]] = UsageError  # what keyword construction raises

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise self.error_type(format_validation_error(e, model=type(self))) from None

    # pydantic calls a custom __init__ for every nested model too, which would turn a
    # nested error into a UsageError without its location and drop the strict flag that
    # file loaders pass. Marking it as the base init (what pydantic's own RootModel does)
    # keeps this wrapper to direct keyword construction only.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples as lists, names as strings), for sidecars and hashes."""
        return self.model_dump(mode="json")


def validate(model: type[Config], data: Any, *, prefix: str = "", error: type[Exception] = UsageError) -> Any:
    """Validate ``data`` from a file (TOML or JSON types) strictly: no 1 for true, no 2.5 for 2.

    Strict mode still reads lists as tuples and strings as names, as JSON does.
    """
    import json

    try:
        return model.model_validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as e:
        raise error(format_validation_error(e, prefix, model=model)) from None


def load_toml(text: str) -> dict[str, Any]:
    """Parse TOML text (tomllib on 3.11+, tomli on 3.10); raises TOMLDecodeError."""
    return tomllib.loads(text)


def to_toml(model: BaseModel) -> str:
    """The model as TOML; None values are left out (TOML has no null), so they load back
    as the field's default, which is None for every optional field in se-deploy."""
    import tomli_w

    return tomli_w.dumps(_drop_none(model.model_dump(mode="json")))


def _drop_none(d: dict) -> dict:
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}


# --------------------------------------------------------------------------- shared field types


def _check_shape(v: tuple[int, ...]) -> tuple[int, ...]:
    if len(v) != 4 or any(d <= 0 for d in v):
        raise ValueError("must be NxCxHxW: 4 positive integers")
    return v


#: a model input shape, NxCxHxW
InputShape = Annotated[tuple[int, ...], AfterValidator(_check_shape)]


# --------------------------------------------------------------------------- error messages


def show(v: Any) -> str:
    """A value as the user wrote it: TOML spelling for booleans and lists."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(show(x) for x in v) + "]"
    if isinstance(v, str):
        return repr(str(v))
    return repr(v)


_REASONS = {
    "bool_type": "must be true or false", "bool_parsing": "must be true or false",
    "int_type": "must be an integer", "int_parsing": "must be an integer", "int_from_float": "must be an integer",
    "float_type": "must be a number", "float_parsing": "must be a number", "finite_number": "must be a finite number",
    "string_type": "must be a string", "string_too_short": "must not be empty",
    "tuple_type": "must be a list", "list_type": "must be a list",
    "model_type": "must be a table", "model_attributes_type": "must be a table", "dict_type": "must be a table",
    "greater_than_equal": "must be >= {ge}", "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}", "less_than": "must be < {lt}",
    "too_short": "must have at least {min_length} item(s)", "too_long": "must have at most {max_length} item(s)",
}


def _field_model(model: Any, name: str) -> Any:
    """The Config type of field ``name`` of ``model``, when that field is a nested config."""
    field = getattr(model, "model_fields", {}).get(name)
    ann = getattr(field, "annotation", None)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _path(loc: tuple, model: Any) -> tuple[list, Any]:
    """``('bench', 'batches', 0)`` -> (['bench', 'batches', 0], owner model of the last key).

    Keys pydantic adds for union members (``'int'``, ``'function-after[...]'``) are dropped.
    """
    if model is None:
        return list(loc), None
    parts: list = []
    owner, cur = model, model
    for p in loc:
        if isinstance(p, int):
            parts.append(p)
        elif cur is not None and p in cur.model_fields:
            parts.append(p)
            owner, cur = cur, _field_model(cur, p)
        elif cur is not None:  # an unknown key: keep it, the message names it (a union tag has cur None)
            parts.append(p)
            owner, cur = cur, None
    return parts, owner


def _dotted(parts: list) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _one(err: dict, model: Any) -> tuple[str, str]:
    """(dotted key, message) for one pydantic error dict."""
    ctx = err.get("ctx") or {}
    cause = ctx.get("error")
    parts, owner = _path(tuple(err["loc"]), model)
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _dotted(parts[:-1])
        keys = list(owner.model_fields) if owner is not None else []
        sections = bool(keys) and all(_field_model(owner, k) for k in keys)
        word = "section" if sections else "key"
        where = f" in [{parent}]" if parent else ""
        return _dotted(parts), f"unknown {word} '{_dotted(parts)}'; allowed {word}s{where}: {', '.join(keys)}"
    value = err.get("input")
    if isinstance(cause, BadValue):
        parts, value, reason = parts + [cause.field], cause.value, cause.reason
    elif cause is not None:
        reason = str(cause)
    elif kind == "enum":
        reason = "is not one of " + ", ".join(re.findall(r"'([^']*)'", ctx.get("expected", "")))
    elif kind == "missing":
        return _dotted(parts), f"{_dotted(parts)}: is required"
    elif kind in _REASONS:
        reason = _REASONS[kind].format(**ctx)
    else:
        reason = err["msg"][:1].lower() + err["msg"][1:]
    key = _dotted(parts)
    return key, f"{key}: {show(value)} {reason}" if key else f"{show(value)} {reason}"


def format_validation_error(e: ValidationError, prefix: str = "", *, model: Any = None) -> str:
    """One line for a pydantic ValidationError: the first problem, naming its key.

    ``exporter: 'torchscript' is not one of dynamo, legacy``; further problems are only
    counted, so the line stays one line.
    """
    errors = e.errors()
    if not errors:
        return f"{prefix}{e}"
    firsts = [_one(err, model) for err in errors]
    # one key can fail twice (an item, then the list's length after dropping it): count keys
    more = len({re.sub(r"\[\d+\]", "", k) for k, _ in firsts}) - 1
    return prefix + firsts[0][1] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else "")


__all__ = ["BadValue", "Config", "InputShape", "TOMLDecodeError", "format_validation_error", "load_toml", "show",
           "to_toml", "validate"]
