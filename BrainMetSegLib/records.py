"""Typed reading of what other files claim: JSON records checked field by field.

A record (run.json, a MONAI bundle's config, nnU-Net's plans, longitudinal.json...) is
believed only after each field the library uses has the type and range it must have. A
schema is a mapping ``field -> Spec``; :func:`check` returns the record with each checked
field normalised (ints to floats where a number is asked for) or raises the caller's error
class with one line naming the file and the field, e.g.
``out/case1/run.json: field 'timings_s' must be an object of numbers, not [1, 2]``.

The number rules are :func:`BrainMetSegLib.options.number`'s (finite, in range, never a
bool or a string), so a card field and a record field are checked alike.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .options import number

_SHA256 = re.compile(r"[0-9a-f]{64}")


class RecordError(InputError):
    """A field of a JSON record has the wrong type or value (internal carrier; re-raised as the
    caller's error class)."""


@dataclass(frozen=True)
class Spec:
    """How one field is checked: ``convert(value, name)`` returns the value or raises
    :class:`RecordError`; ``required`` fields must be present (``None`` counts as absent)."""

    convert: Callable[[object, str], object]
    required: bool = False


def _fail(name: str, wanted: str, value) -> RecordError:
    shown = repr(value)
    return RecordError(f"field {name!r} must be {wanted}, not {shown[:60]}{'...' if len(shown) > 60 else ''}")


def _number_error(message: str) -> RecordError:
    return RecordError(message)


def num(low: float | None = None, high: float | None = None, integer: bool = False,
        high_open: bool = False, required: bool = False) -> Spec:
    """A finite number (an integer when asked) within [low, high] (``high`` excluded when open)."""
    def convert(value, name):
        return number(value, f"field {name!r}", low, high, high_open=high_open, integer=integer,
                      error=_number_error)
    return Spec(convert, required)


def string(required: bool = False, choices: tuple[str, ...] | None = None) -> Spec:
    def convert(value, name):
        if not isinstance(value, str):
            raise _fail(name, "a string", value)
        if choices is not None and value not in choices:
            raise _fail(name, f"one of {', '.join(choices)}", value)
        return value
    return Spec(convert, required)


def boolean(required: bool = False) -> Spec:
    def convert(value, name):
        if not isinstance(value, bool):
            raise _fail(name, "true or false", value)
        return value
    return Spec(convert, required)


def sha256(required: bool = False) -> Spec:
    """64 lower-case hexadecimal digits, as :func:`BrainMetSegLib.checksums.sha256_file` writes them."""
    def convert(value, name):
        if not isinstance(value, str) or not _SHA256.fullmatch(value):
            raise _fail(name, "a sha256 (64 hexadecimal digits)", value)
        return value
    return Spec(convert, required)


def file_name(required: bool = False) -> Spec:
    """A plain file name: no folder part, not absolute, not ``.``/``..`` (it names a file
    inside the record's own folder, never one elsewhere)."""
    def convert(value, name):
        if (not isinstance(value, str) or not value or value in (".", "..") or "/" in value
                or "\\" in value or "\0" in value or Path(value).is_absolute()):
            raise _fail(name, "a plain file name inside the folder", value)
        return value
    return Spec(convert, required)


def obj(schema: Mapping[str, Spec] | None = None, required: bool = False) -> Spec:
    """A JSON object; its fields checked by ``schema`` (other fields pass unchecked)."""
    def convert(value, name):
        if not isinstance(value, dict):
            raise _fail(name, "an object", value)
        return check_fields(value, schema or {}, prefix=f"{name}.")
    return Spec(convert, required)


def mapping(values: Spec, required: bool = False) -> Spec:
    """A JSON object whose every value is checked by ``values`` (e.g. stage -> seconds)."""
    def convert(value, name):
        if not isinstance(value, dict):
            raise _fail(name, "an object", value)
        return {k: values.convert(v, f"{name}.{k}") for k, v in value.items()}
    return Spec(convert, required)


def array(items: Spec, length: int | None = None, required: bool = False) -> Spec:
    """A JSON list (of exactly ``length`` items when given), each checked by ``items``."""
    def convert(value, name):
        if not isinstance(value, list) or (length is not None and len(value) != length):
            raise _fail(name, f"a list of {length} items" if length else "a list", value)
        return [items.convert(v, f"{name}[{i}]") for i, v in enumerate(value)]
    return Spec(convert, required)


def check_fields(data: dict, schema: Mapping[str, Spec], prefix: str = "") -> dict:
    """``data`` with the fields of ``schema`` checked and normalised; :class:`RecordError`."""
    out = dict(data)
    for key, spec in schema.items():
        value = data.get(key)
        if value is None:
            if spec.required:
                raise RecordError(f"field {prefix + key!r} is missing")
            continue
        out[key] = spec.convert(value, prefix + key)
    return out


def check(data: dict, schema: Mapping[str, Spec], source: str | os.PathLike, error=InputError) -> dict:
    """:func:`check_fields`, raising ``error`` as one line ``"<source>: field ... must be ..."``."""
    try:
        return check_fields(data, schema)
    except RecordError as exc:
        raise error(f"{source}: {exc}.") from None


def value(raw, spec: Spec, name: str, source: str | os.PathLike, error=InputError):
    """One value (e.g. a bundle's ``inferer.overlap``) checked by ``spec``; ``error`` naming
    ``source`` and ``name`` otherwise."""
    try:
        return spec.convert(raw, name)
    except RecordError as exc:
        raise error(f"{source}: {exc}.") from None


def read(path: str | os.PathLike, what: str, schema: Mapping[str, Spec], error=InputError) -> dict:
    """The JSON object in ``path`` with ``schema``'s fields checked; ``error`` naming the file
    (unreadable, not JSON, not an object) or the file and the field."""
    from .textfiles import read_json_object

    return check(read_json_object(path, what, error), schema, path, error)
