"""SQL literals for filters on the output tables (LanceDB ``where`` strings).

Values built into a filter from options or data (ids, labels) always go through these:
quotes are doubled, so a value cannot end its literal and change the query.
"""
from __future__ import annotations


def sql_str(value) -> str:
    """A SQL string literal for ``value``."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}: {value!r}")
    return "'" + value.replace("'", "''") + "'"


def sql_list(values) -> str:
    """``'a', 'b', ...`` for ``IN (...)`` (values turned into strings)."""
    return ", ".join(sql_str(str(v)) for v in values)
