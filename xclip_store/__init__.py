"""The output store: the one owner of an index's layout and the only code that writes it.

Layout under an output URI (local folder or ``s3://``):

    lancedb/<table>.lance     LanceDB tables (videos, segments, side tables, moderation, ...)
    parquet/<table>/*.parquet the append-only Parquet log (``xclip_store.writer``)
    runs/<run_id>.json        run / relabel / restore manifests, written atomically
    _lock.json                the output lease (``xclip_store.lease``)

Public API (what jobs/, xclip_search/, moderation/ and the CLI call):

    open_output(uri, *, mode="r"|"w", command=..., run_id=None, lease=LeaseConfig()) -> Output
    leased(command, *, uri_arg=...)   decorator: the call holds the output lease
    held(uri) -> Output | None        the write Output this process holds on uri
    check_lease(uri, what)            before a commit: LeaseError unless the lease is still ours
    Writer                            chunked Parquet + LanceDB writer of a run (xclip_store.writer)
    build_indexes(uri, retrain=False), ensure_indexes(tbl, name, ...), migrate_table(tbl, name)
    update_indexes(tbl_or_uri) -> {unindexed_before, unindexed, delta}: the delta as delta indexes
    restore(uri, run_id) -> RestoreResult
    retry, commit_retry, short_error, PROGRAMMING_ERRORS (xclip_store.retry)
    errors: OutputError (exit 4), LeaseError (exit 7), OutputMismatchError (exit 2),
            DamagedTableError (an OutputError), RestoreError (an OutputError)

Import direction: xclip_core <- schemas <- xclip_store <- jobs / xclip_search / moderation <- CLI
(``tests/test_imports.py``): nothing here imports jobs, xclip_search or moderation.
"""
from xclip_store.errors import DamagedTableError, LeaseError, OutputError, OutputMismatchError
from xclip_store.indexes import build_indexes, ensure_indexes, update_indexes
from xclip_store.lease import Lease, LeaseConfig
from xclip_store.migrate import migrate_table
from xclip_store.output import COMMANDS, Output, check_lease, held, leased, open_output
from xclip_store.recovery import RestoreError, RestoreResult, restore
from xclip_store.retry import PROGRAMMING_ERRORS, commit_retry, retry, short_error
from xclip_store.writer import CURRENT_SEGMENTS_SQL, CURRENT_VIDEOS_SQL, Writer

__all__ = [
    "COMMANDS", "CURRENT_SEGMENTS_SQL", "CURRENT_VIDEOS_SQL", "DamagedTableError", "Lease", "LeaseConfig",
    "LeaseError", "Output", "OutputError", "OutputMismatchError", "PROGRAMMING_ERRORS", "RestoreError",
    "RestoreResult", "Writer", "build_indexes", "check_lease", "commit_retry", "ensure_indexes", "held", "leased",
    "migrate_table", "open_output", "restore", "retry", "short_error", "update_indexes",
]
