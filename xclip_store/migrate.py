"""Schema migrations of existing LanceDB tables (``schemas.output.migration``)."""
from __future__ import annotations

import pyarrow as pa

from schemas.output import migration


def migrate_table(tbl, name: str) -> None:
    """Add what LanceDB table ``tbl`` (``videos`` or ``segments``) lacks of the current schema."""
    for col, spec in migration(name, tbl.schema).items():
        tbl.add_columns(spec if isinstance(spec, pa.Field) else {col: spec})
