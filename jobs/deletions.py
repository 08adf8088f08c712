"""Deletion guards: a shrunken or broken listing never empties the index.

``jobs.incremental.gone_videos`` says which indexed videos a run did not list
in its deletion scope. Before the runner deletes them (or marks them deleted),
:func:`guard_deletions` applies three guards:

* the listing had errors (an unreadable folder, a file that could not be
  stat'ed: ``jobs.reader.list_inputs(errors=)``): nothing is deleted, the run
  goes on and reports the errors;
* a folder/prefix input listed no video at all (an empty or half-mounted
  share, a wrong prefix): nothing under it is deleted;
* more than ``writer.max_delete_share`` (default 0.1) of a prefix's indexed
  videos would go: the run stops before writing anything, with one line
  naming ``--max-delete-share`` (``DeletionRefused``, exit 6 like an input
  that cannot be listed). ``--max-delete-share 1`` allows any share.
"""
from __future__ import annotations

import logging

import pyarrow as pa

from jobs.incremental import STATUS_DELETED, deletion_prefixes
from jobs.reader import InputError

log = logging.getLogger(__name__)


class DeletionRefused(InputError):
    """The run would delete more than ``writer.max_delete_share`` of a prefix's indexed videos."""


def _under(uri: str, prefixes: list[str]) -> str | None:
    """The longest prefix ``uri`` lies under (nested inputs count for the innermost one)."""
    best = None
    for p in prefixes:
        if uri.startswith(p) and (best is None or len(p) > len(best)):
            best = p
    return best


def guard_deletions(gone: list[str], indexed: pa.Table, listed: pa.Table, reader_cfg, *,
                    listing_errors: list[str], max_share: float) -> list[str]:
    """The video_ids of ``gone`` the run may delete (see module doc); raises ``DeletionRefused``."""
    if not gone:
        return []
    if listing_errors:
        log.warning("listing had %d error(s) (first: %s): deleting none of the %d videos not listed",
                    len(listing_errors), listing_errors[0], len(gone))
        return []
    prefixes = deletion_prefixes(reader_cfg)
    uri_of = dict(zip(indexed.column("video_id").to_pylist(), indexed.column("uri").to_pylist()))
    live = [u for u, st in zip(indexed.column("uri").to_pylist(), indexed.column("status").to_pylist())
            if st != STATUS_DELETED]
    listed_by = {p: 0 for p in prefixes}
    for uri in listed.column("uri").to_pylist():
        p = _under(uri, prefixes)
        if p is not None:
            listed_by[p] += 1
    gone_by: dict[str, list[str]] = {p: [] for p in prefixes}
    for vid in gone:
        p = _under(uri_of[vid], prefixes)
        if p is not None:
            gone_by[p].append(vid)
    allowed = []
    for p in prefixes:
        if not gone_by[p]:
            continue
        if listed_by[p] == 0:
            log.warning("input %s listed no video: deleting none of its %d indexed videos (an empty or "
                        "unmounted folder, or a wrong prefix?)", p, len(gone_by[p]))
            continue
        indexed_here = sum(1 for u in live if _under(u, prefixes) == p)
        share = len(gone_by[p]) / max(indexed_here, 1)
        if share > max_share:
            raise DeletionRefused(
                f"--input {p}: this run would delete {len(gone_by[p])} of the {indexed_here} videos indexed "
                f"under it ({share:.0%}), more than writer.max_delete_share = {max_share:g}; nothing was "
                f"deleted or indexed. Check that the input is complete (a wrong prefix, a half-mounted share?); if "
                f"the videos really are gone, rerun with --max-delete-share 1")
        allowed += gone_by[p]
    return allowed
