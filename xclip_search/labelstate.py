"""One label set per index, and a relabel that no reader sees half done.

A relabel changes the label columns of two LanceDB tables (``segments``, ``videos``): two commits,
and LanceDB has no transaction across tables. ``commit_staged`` (the streaming relabel,
``xclip_search.relabel``) and ``commit_relabel`` (label columns held in memory) write in this order:

  1. stage   the new label columns: each fragment's new label-column data file, written but not
             committed (``xclip_store.label_commit``; listed in ``runs/<relabel_id>-labels/staged.json``),
             and the label rows (key, the row's ``indexed_at`` as read, ``labels``, ``label_scores``,
             ``label_text``, ``label_set``) as Parquet under ``runs/<relabel_id>-labels/``
             (``commit_relabel``: only the Parquet; its fragments are staged at step 3)
  2. intent  ``runs/<relabel_id>.json`` with ``"status": "running"``, the label set, the staged files
             and both tables' versions before (written atomically)
  3. commit  ``segments``, then ``videos``: ``_commit``, the one relabel write path. ONE Lance
             transaction per table swaps in the label-column files (embeddings, ``run_id``,
             ``source_size``... are never written), on the latest version with its deletion vectors
             (a row a run rewrote meanwhile keeps that run's labels), through the leased
             ``Output.commit``, carrying the relabel id (``label_commit.committed_version``: never
             twice); then the label rows reach the Parquet log
  4. optimize both tables, then the manifest says ``"finished"`` with the versions after.

Readers (``xclip_search.Index``, through ``reader_tables``) check out both tables at the versions
before while a relabel is ``running`` (or was killed): they see the old label set on both. After it
finished they read the latest versions, and a reader that opened one table before and one after
the commits reopens both. Every write command (``run``, ``relabel``) first calls ``repair``, which
finishes a relabel left ``running`` by committing what of its staged columns is not committed yet. So a kill at
any point leaves readers on one label set, and the next write command completes the new one.

Not covered: a reader that keeps a handle open across a relabel keeps the versions it opened
(reopen the index to see the new labels). The Parquet log gets the relabel's label rows
(``xclip_store.parquet_log.log_labels``): its DuckDB views show the labels LanceDB has.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import time

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import SEGMENTS_TABLE, VIDEOS_TABLE
from xclip_core import storage
from xclip_store.errors import LeaseError
from xclip_store.label_commit import LabelCommitError
from xclip_store.output import held, write_atomic

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("labels", "label_scores", "label_text", "label_set")
GUARD_COLUMN = "indexed_at"  # a row rewritten since it was read has another indexed_at
KEYS = {SEGMENTS_TABLE: "segment_id", VIDEOS_TABLE: "video_id"}
RUNNING, FINISHED = "running", "finished"


class RelabelStateError(RuntimeError):
    """An interrupted relabel cannot be finished; the message says the fix."""


def label_columns(table: pa.Table, name: str) -> pa.Table:
    """What a relabel writes for table ``name``: its key, the guard and the label columns."""
    return table.select([KEYS[name], GUARD_COLUMN, *LABEL_COLUMNS])


def apply_labels(tbl, name: str, cols: pa.Table, *, uri: str, message: str) -> int:
    """Label columns ``cols`` (``label_columns``) held in memory into LanceDB table ``tbl`` of the
    output at ``uri``: staged into the rows whose key and ``indexed_at`` are unchanged, one fragment at
    a time, then one flat commit (``_commit``). Returns the rows updated."""
    from xclip_store.label_commit import dataset, stage_by_key

    ds = dataset(storage.join(uri, "lancedb"), name, storage_options=storage.lancedb_storage_options(uri))
    staged, rows = stage_by_key(ds, KEYS[name], GUARD_COLUMN, cols)
    if staged is not None:
        _commit(uri, tbl, name, staged, message)
    return rows


def _commit(uri: str, tbl, name: str, staged, message: str) -> int:
    """THE relabel write path: the staged label columns of table ``name`` become visible in one Lance
    transaction (``xclip_store.label_commit.commit_columns``: flat cost, idempotent by ``message``),
    through the leased ``Output.commit`` (the lease is checked first)."""
    from xclip_store import label_commit

    out = held(uri)
    if out is None:
        raise LeaseError(f"{uri}: refused to commit the relabelled {name}: this process does not hold the "
                         "output lease")
    done = []
    out.commit(f"commit the relabelled {name}", lambda: done.append(label_commit.commit_columns(
        storage.join(uri, "lancedb"), name, staged, message=message,
        storage_options=storage.lancedb_storage_options(uri))))
    if hasattr(tbl, "checkout_latest"):
        tbl.checkout_latest()
    return done[-1]


def relabel_manifests(uri: str) -> list[dict]:
    from xclip_store.manifests import read_manifests

    return sorted((m for m in read_manifests(uri) if m.get("kind") == "relabel"),
                  key=lambda m: (m.get("started_at") or "", m.get("run_id") or ""))


def write_json(uri: str, relpath: str, doc: dict) -> str:
    """Write ``doc`` to ``<uri>/<relpath>`` atomically (``xclip_store``: local temp file + rename,
    S3 one PUT), through the relabel's leased output when it holds one (the lease is checked)."""
    text = json.dumps(doc, indent=2, sort_keys=True)
    out = held(uri)
    if out is not None:
        return out.write_text(relpath, text)
    fs, base = storage.pyarrow_filesystem(uri)
    path = f"{base.rstrip('/')}/{relpath}"
    write_atomic(fs, path, text.encode("utf-8"), local=not storage.is_s3(uri))
    return ("s3://" + path) if storage.is_s3(uri) else path


def _staged_path(uri: str, relabel_id: str, name: str) -> str:
    return storage.join(uri, f"runs/{relabel_id}-labels/{name}.parquet")


def _write_staged(uri: str, relabel_id: str, name: str, cols: pa.Table) -> str:
    fs, path = storage.pyarrow_filesystem(_staged_path(uri, relabel_id, name))
    if not storage.is_s3(uri):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(cols, path, filesystem=fs, compression="zstd")
    return _staged_path(uri, relabel_id, name)


def _read_staged(staged: str) -> pa.Table:
    fs, path = storage.pyarrow_filesystem(staged)
    return pq.read_table(path, filesystem=fs)


def _finish(uri: str, tables: dict, manifest: dict, *, keep_days: float) -> dict:
    """Steps 3 and 4 of the module doc for a manifest whose columns are staged."""
    updated, logged = {}, []
    rid = manifest["run_id"]
    seconds, t0 = dict(manifest.get("seconds") or {}), time.perf_counter()
    streamed = _read_json(manifest["staged_columns"]) if manifest.get("staged_columns") else None
    for name in (SEGMENTS_TABLE, VIDEOS_TABLE):
        message = f"relabel {rid} {name}"
        if streamed is not None:  # a streaming relabel: fragments rewritten by its tasks
            from xclip_store.label_commit import StagedColumns

            doc = streamed[name]
            if doc["columns"] is not None:
                _commit(uri, tables[name], name, StagedColumns.from_json(doc["columns"]), message)
            updated[name] = int(doc["rows"])
            for f in doc["log"]:  # the Parquet log hears of it too: each task's file copied, unread
                logged.append(_log_labels(uri, name, f, rid))
        else:
            cols = _read_staged(manifest["staged"][name])
            updated[name] = apply_labels(tables[name], name, cols, uri=uri, message=message)
            logged.append(_log_labels(uri, name, cols, rid))
    # rewritten label columns leave the indexes on them until index upkeep adds them (searches would
    # fall back to brute force there): the job's upkeep, whose cost follows the delta (no large
    # fragment rewritten, a delta index added, no retraining); versions older than the retention go
    seconds["commit"] = round(time.perf_counter() - t0, 3)
    from xclip_store import flat_commit

    so = storage.lancedb_storage_options(uri)
    for name in (SEGMENTS_TABLE, VIDEOS_TABLE):
        ds_uri = flat_commit.table_uri(storage.join(uri, "lancedb"), name)
        flat_commit.optimize_delta(ds_uri, storage_options=so)
        flat_commit.cleanup(ds_uri, older_than=dt.timedelta(days=float(keep_days)), storage_options=so)
        tables[name].checkout_latest()
    seconds["optimize"] = round(time.perf_counter() - t0 - seconds["commit"], 3)
    manifest = {**manifest, "status": FINISHED, "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "updated_rows": updated, "parquet_files": [f for f in logged if f], "seconds": seconds}
    manifest["tables"] = {**manifest.get("tables", {}),
                          "after": {n: int(tables[n].version) for n in (SEGMENTS_TABLE, VIDEOS_TABLE)}}
    write_json(uri, f"runs/{manifest['run_id']}.json", manifest)
    _remove_stage(uri, rid)
    return manifest


def _remove_stage(uri: str, relabel_id: str) -> None:
    """Delete the staged files of a finished relabel (``runs/<relabel_id>-labels/``): its manifest
    says finished, so nothing reads them again (a kill between the two leaves them behind, unread)."""
    fs, path = storage.pyarrow_filesystem(storage.join(uri, f"runs/{relabel_id}-labels"))
    fs.delete_dir_contents(path, missing_dir_ok=True)
    if not storage.is_s3(uri):
        fs.delete_dir(path)


def _read_json(uri: str) -> dict:
    return json.loads(storage.read_bytes(uri).decode("utf-8"))


def _log_labels(uri: str, name: str, cols: pa.Table | str, relabel_id: str) -> str | None:
    """Label rows in the Parquet log (``xclip_store.parquet_log.log_labels``), lease-checked when held;
    ``cols``: the rows, or a task's Parquet file of them (copied when it has ``run_id``, as every task
    of this version writes; a file staged by an older version is read and logged)."""
    from xclip_store.parquet_log import copy_log, log_labels

    if isinstance(cols, str):
        fs, path = storage.pyarrow_filesystem(cols)
        if "run_id" in pq.read_schema(path, filesystem=fs).names:
            write = functools.partial(copy_log, uri, name, cols, run_id=relabel_id, tag="labels")
        else:
            write = functools.partial(log_labels, uri, name, _read_staged(cols), relabel_id=relabel_id)
    else:
        write = functools.partial(log_labels, uri, name, cols, relabel_id=relabel_id)
    out = held(uri)
    if out is None:
        return write()
    found = []
    out.commit(f"log the relabelled {name} labels in Parquet", lambda: found.append(write()))
    return found[-1]


def commit_relabel(uri: str, tables: dict, manifest: dict, seg_cols: pa.Table, vid_cols: pa.Table, *,
                   keep_days: float = 7.0) -> tuple[dict, str]:
    """Stage, announce, commit and finish a relabel (module doc); returns (manifest, manifest URI).
    ``manifest``: the relabel manifest without status, staged files and table versions."""
    rid = manifest["run_id"]
    staged = {SEGMENTS_TABLE: _write_staged(uri, rid, SEGMENTS_TABLE, seg_cols),
              VIDEOS_TABLE: _write_staged(uri, rid, VIDEOS_TABLE, vid_cols)}
    manifest = {**manifest, "status": RUNNING, "finished_at": "", "staged": staged,
                "keep_versions_days": float(keep_days),
                "tables": {"before": {n: int(tables[n].version) for n in (SEGMENTS_TABLE, VIDEOS_TABLE)}}}
    write_json(uri, f"runs/{rid}.json", manifest)
    manifest = _finish(uri, tables, manifest, keep_days=keep_days)
    return manifest, storage.join(uri, f"runs/{rid}.json")


def commit_staged(uri: str, tables: dict, manifest: dict, staged: dict, *,
                  keep_days: float = 7.0) -> tuple[dict, str]:
    """``commit_relabel`` for a streaming relabel (``xclip_search.relabel``): ``staged``: table name ->
    ``{"columns": StagedColumns | None, "log": [label-row Parquet files]}``, written by its tasks. The
    staged fragments go to ``runs/<relabel_id>-labels/staged.json``, named by the manifest."""
    rid = manifest["run_id"]
    doc = {n: {"columns": s["columns"].to_json() if s["columns"] is not None else None, "log": list(s["log"]),
               "rows": int(manifest["num_segments" if n == SEGMENTS_TABLE else "num_videos"])}
           for n, s in staged.items()}
    write_json(uri, f"runs/{rid}-labels/staged.json", doc)
    manifest = {**manifest, "status": RUNNING, "finished_at": "",
                "staged_columns": storage.join(uri, f"runs/{rid}-labels/staged.json"),
                "keep_versions_days": float(keep_days),
                "tables": {"before": {n: int(tables[n].version) for n in (SEGMENTS_TABLE, VIDEOS_TABLE)}}}
    write_json(uri, f"runs/{rid}.json", manifest)
    manifest = _finish(uri, tables, manifest, keep_days=keep_days)
    return manifest, storage.join(uri, f"runs/{rid}.json")


def pending(uri: str) -> list[dict]:
    """Relabels that announced themselves and did not finish (killed), oldest first."""
    return [m for m in relabel_manifests(uri) if m.get("status") == RUNNING
            and (m.get("staged") or m.get("staged_columns"))]


def repair(uri: str, db=None) -> list[str]:
    """Finish every relabel left ``running``, under the output lease (the caller's, else taken here for
    the call: exit 7 while another process holds it); returns their ids."""
    todo = pending(uri)
    if not todo:
        return []
    owner = held(uri)
    if owner is None:
        from xclip_store.output import open_output

        with open_output(uri, mode="w", command="relabel"):
            return repair(uri)
    tables = {n: owner.table(n) for n in (SEGMENTS_TABLE, VIDEOS_TABLE)}  # guarded: each commit checks the lease
    done = []
    for m in todo:
        try:
            _finish(uri, tables, {**m, "repaired_at": dt.datetime.now(dt.timezone.utc).isoformat()},
                    keep_days=m.get("keep_versions_days", 7.0))
        except (OSError, ValueError, LabelCommitError) as e:
            raise RelabelStateError(
                f"{uri}: relabel {m['run_id']} was interrupted and cannot be finished from its staged labels "
                f"({type(e).__name__}: {e}); rerun `xclip-index relabel --index {uri} --labels "
                f"{(m.get('label_set') or {}).get('source', 'LABELS')}`") from None
        log.warning("relabel %s had been interrupted: finished it from its staged labels", m["run_id"])
        done.append(m["run_id"])
    return done


def reader_tables(db, uri: str) -> dict:
    """``segments`` and ``videos`` opened at versions that carry one label set (module doc)."""
    tables = {n: db.open_table(n) for n in (SEGMENTS_TABLE, VIDEOS_TABLE)}
    opened = {n: int(t.version) for n, t in tables.items()}
    relabels = relabel_manifests(uri)  # read after opening: see the module doc
    running = [m for m in relabels if m.get("status") == RUNNING and m.get("tables", {}).get("before")]
    if running:
        before = running[0]["tables"]["before"]
        for n, t in tables.items():
            if int(before[n]) <= opened[n]:
                t.checkout(int(before[n]))
        return tables
    done = [m for m in relabels if m.get("status") == FINISHED and m.get("tables", {}).get("after")]
    if done:
        after = done[-1]["tables"]["after"]
        if any(opened[n] < int(after[n]) for n in tables):
            for t in tables.values():
                t.checkout_latest()
    return tables
