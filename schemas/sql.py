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


def check_filter(sql: str) -> str:
    """``sql`` if it is one self-contained filter expression, else ValueError.

    A caller's filter is put in parentheses and ANDed with the filters the library adds (labels,
    status): text that closes those parentheses early (``1=1) OR (1=1``), comments out what follows
    (``--``, ``/*``) or ends the statement (``;``) could drop them. Quotes are followed
    ('it''s', "col name"), so those characters inside a literal or a quoted name are fine."""
    depth, i, n = 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            end = i + 1
            while True:
                end = sql.find(c, end)
                if end < 0:
                    raise ValueError(f"where: unterminated {c} quote in {sql!r}")
                if end + 1 < n and sql[end + 1] == c:  # a doubled quote inside the literal
                    end += 2
                    continue
                break
            i = end + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"where: {sql!r} closes a parenthesis it did not open: give one expression")
        elif c == ";" or sql.startswith("--", i) or sql.startswith("/*", i):
            raise ValueError(f"where: {sql!r} has {sql[i:i + 2].strip() if c != ';' else ';'} outside a "
                             "quoted literal: give one filter expression, without comments or ';'")
        i += 1
    if depth:
        raise ValueError(f"where: {sql!r} leaves {depth} parenthesis(es) open: give one expression")
    return sql
