"""Reading files a user hands us (scenario and instance files): bounded in size, UTF-8 only, and pydantic's
validation errors turned into one line that names the place, e.g. `devices[1].uplink_mbps: must be > 0, got -3`.

A shared module: it imports no part of dnnpart and not pydantic itself (it reads `ValidationError.errors()`
dicts and walks `model_fields`), so the parts' schema modules can all use it.
"""

from __future__ import annotations

import reprlib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from dnnpart.limits import MAX_FILE_BYTES

MAX_SHOWN_CHARS = 80  # longest value quoted back in an error message

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlong = 40
_repr.maxlist = _repr.maxtuple = 6
_repr.maxdict = 4
_repr.maxlevel = 2


def show(value) -> str:
    """A value as quoted in a message: its repr, never longer than MAX_SHOWN_CHARS."""
    text = _repr.repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def shorten(text: str) -> str:
    """A message from elsewhere (e.g. a parser), cut to its first clause and MAX_SHOWN_CHARS."""
    lines = str(text).strip().splitlines()
    text = lines[0].split(";")[0] if lines else ""
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def read_capped_text(path: Path, fail: Callable[[str], Exception], limit: int | None = None) -> str:
    """The file's text; `fail(problem)` builds the exception for a file over `limit` bytes (default
    MAX_FILE_BYTES) or not UTF-8.

    At most limit + 1 bytes are read, so a device file or a file still growing cannot exhaust memory.
    OSError (missing file, no permission) is left to the caller, which knows how to name the file.
    """
    limit = MAX_FILE_BYTES if limit is None else limit
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise fail(f"the file is larger than the limit of {limit:,} bytes for input files")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None


def place(loc) -> str:
    """pydantic's loc tuple as a path: ('devices', 1, 'uplink_mbps') -> 'devices[1].uplink_mbps'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + (part if isinstance(part, str) and len(part) <= 40 else show(part))
    return out


def _unwrap(annotation):
    """The type under Annotated[...] and Optional[...]."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def model_at(model, loc):
    """The pydantic model class found at `loc` inside `model` (following fields and list items), or None."""
    current = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, str) and part in getattr(current, "model_fields", {}):
            current = current.model_fields[part].annotation
        elif isinstance(part, int) and typing.get_origin(current) in (list, tuple):
            current = typing.get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    return current if hasattr(current, "model_fields") else None


def _keys(model, loc) -> str:
    found = model_at(model, loc)
    return ", ".join(found.model_fields) if found is not None else "?"


def _message(error: dict, model, nouns: dict) -> tuple[tuple, str]:
    """(loc of the place, problem) for one entry of ValidationError.errors()."""
    kind, loc, ctx = error["type"], tuple(error["loc"]), error.get("ctx") or {}
    got = f", got {show(error.get('input'))}"
    if kind == "missing":
        return loc[:-1], f"missing key {show(loc[-1])} (valid keys: {_keys(model, loc[:-1])})"
    if kind == "extra_forbidden":
        return loc[:-1], f"unknown key {show(loc[-1])} (valid keys: {_keys(model, loc[:-1])})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"must be a mapping with keys {_keys(model, loc)}{got}"
    if kind in ("list_type", "tuple_type", "iterable_type"):
        return loc, f"must be a list{got}"
    if kind == "too_short":
        noun = next((nouns[p] for p in reversed(loc) if isinstance(p, str) and p in nouns), "item")
        return loc, (
            f"needs at least one {noun}, got an empty list"
            if ctx.get("min_length") == 1
            else f"needs at least {ctx.get('min_length')} items, got {ctx.get('actual_length')}"
        )
    if kind == "too_long":
        return loc, f"has more than the limit of {ctx.get('max_length')} items"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        bound = next(iter(ctx.values()))
        if kind == "greater_than_equal" and bound == 0:
            return loc, f"must be non-negative{got}"
        return loc, f"must be {bounds[kind]} {bound:g}{got}"
    if kind in ("float_type", "float_parsing"):
        return loc, f"must be a finite number{got}"
    if kind == "finite_number":
        return loc, f"must be finite{got}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return loc, f"must be an integer{got}"
    if kind == "string_type":
        return loc, f"must be a string{got}"
    if kind == "string_too_short":
        return loc, f"must be a non-empty string{got}"
    if kind == "literal_error":
        return loc, f"must be one of {ctx.get('expected')}{got}"
    return loc, error["msg"]  # our own PydanticCustomErrors carry a finished message


def describe_errors(
    errors: list[dict], model, nouns: dict | None = None, note: Callable[[tuple], str] | None = None
) -> str:
    """One line for the first of pydantic's errors: '<place>: <problem>', then how many more there are.

    `nouns` names what a list holds for 'needs at least one ...' (field name -> noun); `note(loc)` may add
    words after the problem (e.g. the device's name)."""
    loc, problem = _message(errors[0], model, nouns or {})
    where = place(loc)
    line = f"{where}: {problem}" if where else problem
    line += note(loc) if note else ""
    if len(errors) > 1:
        line += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return line
