"""Field-by-field checks of the files rims-rl reads back (``results.json``, ``config.yaml``, ``compare.json``).

Such a file may be damaged or edited by hand; a reader that trusted it ended in a ``KeyError`` or
``TypeError`` traceback deep in a report. A spec maps each field to its kind, and a record that does
not match is one :class:`UserError` naming the file and the field.

Kinds: ``int``, ``number`` (int or float), ``text``, ``bool``, ``list``, ``numbers`` (a list of
numbers), ``texts`` (a list of strings), ``mapping``, or a tuple of allowed strings. A kind ending in ``?`` also allows null.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from rims_rl.errors import UserError

Spec = Mapping[str, "str | tuple[str, ...]"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


KINDS = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "number": (_is_number, "a number"),
    "text": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "numbers": (lambda v: isinstance(v, list) and all(_is_number(x) for x in v), "a list of numbers"),
    "texts": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
    "mapping": (lambda v: isinstance(v, dict), "a mapping"),
}


def shown(value: Any) -> str:
    """A short description of a bad value for a message: its type for containers, else its repr."""
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_kind(value: Any, kind: str | tuple[str, ...], where: str, path: str | os.PathLike, advice: str) -> None:
    """UserError ``"<path>: <where> must be <kind>, got <value>; <advice>"`` unless ``value`` is of ``kind``."""
    if isinstance(kind, tuple):
        if value not in kind:
            raise UserError(f"{path}: {where} must be one of {', '.join(kind)}, got {shown(value)}; {advice}")
        return
    nullable = kind.endswith("?")
    if nullable and value is None:
        return
    test, expected = KINDS[kind.rstrip("?")]
    if not test(value):
        raise UserError(f"{path}: {where} must be {expected}{' or null' if nullable else ''}, got {shown(value)}; "
                        f"{advice}")


def check_record(record: Any, where: str, path: str | os.PathLike, advice: str, required: Spec,
                 optional: Spec | None = None) -> dict[str, Any]:
    """``record`` itself, after checking that it is a mapping with every field of ``required`` (of its kind)
    and the fields of ``optional`` that it has (of their kind); UserError naming ``path`` and the field.

    :param where: the record's place in the file, e.g. ``results[2]`` ("" for the whole document)
    :param advice: what the user can do, appended to the message
    """
    if not isinstance(record, dict):
        raise UserError(f"{path}: {where or 'the file'} must be a mapping, got {shown(record)}; {advice}")
    prefix = f"{where}." if where else ""
    for name, kind in required.items():
        if name not in record:
            raise UserError(f"{path}: {prefix}{name} is missing; {advice}")
        check_kind(record[name], kind, prefix + name, path, advice)
    for name, kind in (optional or {}).items():
        if name in record:
            check_kind(record[name], kind, prefix + name, path, advice)
    return record


def check_records(records: Any, where: str, path: str | os.PathLike, advice: str, required: Spec,
                  optional: Spec | None = None) -> list[dict[str, Any]]:
    """``records`` itself, after checking that it is a list of records as :func:`check_record` checks them."""
    if not isinstance(records, list):
        raise UserError(f"{path}: {where} must be a list, got {shown(records)}; {advice}")
    for i, record in enumerate(records):
        check_record(record, f"{where}[{i}]", path, advice, required, optional)
    return records
