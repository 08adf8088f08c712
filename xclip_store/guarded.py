"""A LanceDB table whose every commit goes through ``Output.commit`` (lease check, retries).

``Output.table(name)`` (write mode) hands these out, and ``xclip_search.Index.table`` does too
while this process holds the output's lease (inside ``@leased`` commands such as ``relabel``):
code that commits through the table it was given (``add``, ``delete``, ``update``,
``merge_insert(...).execute``, ``optimize``, ``create_index``, ``add_columns``, ``restore``) has
the lease checked before each commit without saying so. Reads pass straight through.
"""
from __future__ import annotations

COMMITS = ("add", "delete", "update", "optimize", "create_index", "create_scalar_index", "create_fts_index",
           "add_columns", "alter_columns", "drop_columns", "restore", "compact_files", "cleanup_old_versions")


class GuardedTable:
    """Wraps LanceDB table ``tbl`` of ``output`` (see module doc)."""

    def __init__(self, tbl, output, name: str):
        self._tbl, self._out, self._name = tbl, output, name

    def __getattr__(self, attr):
        value = getattr(self._tbl, attr)
        if attr in COMMITS and callable(value):
            def commit(*args, **kwargs):
                result = []
                self._out.commit(f"{attr} {self._name}", lambda: result.append(value(*args, **kwargs)),
                                 table=self._tbl)
                return result[0] if result else None
            return commit
        return value

    def merge_insert(self, on):
        return _GuardedMerge(self._tbl.merge_insert(on), self)

    @property
    def unwrapped(self):
        return self._tbl

    def __len__(self):
        return len(self._tbl)

    def __repr__(self):
        return f"GuardedTable({self._tbl!r})"


class _GuardedMerge:
    """``merge_insert`` builder whose ``execute`` is a leased commit; the other calls chain."""

    def __init__(self, builder, table: GuardedTable):
        self._builder, self._table = builder, table

    def __getattr__(self, attr):
        value = getattr(self._builder, attr)
        if not callable(value):
            return value

        def chained(*args, **kwargs):
            out = value(*args, **kwargs)
            return self if out is self._builder else out
        return chained

    def execute(self, *args, **kwargs):
        result = []
        t = self._table
        t._out.commit(f"merge into {t._name}", lambda: result.append(self._builder.execute(*args, **kwargs)),
                      table=t._tbl)
        return result[0] if result else None
