"""schemas.sql.check_filter: a caller's filter is one expression; quoted text is free."""
from __future__ import annotations

import pytest

from schemas.sql import check_filter


@pytest.mark.parametrize("sql", [
    "start_s >= 5",
    "(start_s >= 5) AND (end_s < 9)",
    "uri LIKE '%) OR (1=1 --%'",            # inside a literal: text
    "uri = 'it''s (a) clip;'",              # a doubled quote inside the literal
    '"odd col)" > 1',                       # a quoted name
    "start_s - -1 > 0",
])
def test_one_expression_passes(sql):
    assert check_filter(sql) == sql


@pytest.mark.parametrize("sql, why", [
    ("1=1) OR (1=1", "closes a parenthesis"),
    ("start_s > 0) OR labels IS NULL OR (1=1", "closes a parenthesis"),
    ("(start_s > 0", "open"),
    ("1=1 -- and the rest", "--"),
    ("1=1 /* x */", "/*"),
    ("1=1; DROP TABLE segments", ";"),
    ("uri = 'unterminated", "unterminated"),
])
def test_escapes_are_refused(sql, why):
    with pytest.raises(ValueError, match=f"where: .*{__import__('re').escape(why)}"):
        check_filter(sql)
