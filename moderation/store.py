"""Writing moderation results: the ``moderation`` table (LanceDB upsert by ``video_id`` plus an
append-only Parquet log under ``<output>/parquet/moderation/``) and the review queue.

Review queue (``--review-out URI``, local or ``s3://``): JSON lines, one per ``block``,
``review`` or ``error`` decision (an upload that could not be scored is not cleared: a person
looks at it), most severe first: ``block``, ``review``, then ``error``; within each by peak
confidence (highest first), then URI. Each line: ``video_id, uri, name`` (the file name),
``decision, confidence`` (peak over the flags), ``ranges``: the flags ``{category, confidence,
start_s, end_s}`` in time order, ``evidence``: per blocklist match its item id, mode, best/median
Hamming distance, matched seconds, item share, upload and item ranges
(``schemas.moderation.EVIDENCE_TYPE``), and ``error``: why an ``error`` upload was not scored
(else null).
"""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute

from schemas import check_table
from schemas.moderation import (EVIDENCE_FIELD, FRAME_PDQ_TABLE, MODERATION_KEY, MODERATION_TABLE,
                                frame_pdq_schema, moderation_schema)
from xclip_core import storage

_SEVERITY = {"block": 0, "review": 1, "error": 2}


def open_table(output: str, name: str = MODERATION_TABLE, *, create: bool = True):
    """A moderation LanceDB table (``moderation`` or ``frame_pdq``) under ``output``, created
    when missing and ``create`` (else None); an existing one must have this schema (a
    ``moderation`` table from before ``evidence`` gets that column, as nulls)."""
    from xclip_store.output import side_table

    schema = {MODERATION_TABLE: moderation_schema, FRAME_PDQ_TABLE: frame_pdq_schema}[name]()
    tbl = side_table(output, name, schema, create=create)  # the leased output inside `run` / `moderate`
    if tbl is None:
        return None
    if name == MODERATION_TABLE and EVIDENCE_FIELD.name not in tbl.schema.names:
        tbl.add_columns(EVIDENCE_FIELD)
    check_table(tbl.schema.empty_table(), schema)
    return tbl


def write_decisions(output: str, run_id: str, table: pa.Table, *, part: int = 0) -> dict:
    """Upsert ``table`` (``moderation`` rows) into LanceDB and append it to the Parquet log (file
    ``part`` of the run); returns ``{"version", "rows", "parquet"}``."""
    from xclip_store.parquet_log import append_log

    tbl = open_table(output)
    parquet = append_log(output, MODERATION_TABLE, table, run_id=run_id, tag=f"{part:05d}")
    if table.num_rows:
        tbl.merge_insert(MODERATION_KEY).when_matched_update_all().when_not_matched_insert_all().execute(table)
    return {"version": int(tbl.version), "rows": int(tbl.count_rows()), "parquet": parquet}


def write_frame_pdq(output: str, table: pa.Table) -> dict:
    """Upsert per-video PDQ hashes (``schemas.moderation.frame_pdq_schema``) by ``video_id``."""
    tbl = open_table(output, FRAME_PDQ_TABLE)
    if table.num_rows:
        tbl.merge_insert("video_id").when_matched_update_all().when_not_matched_insert_all().execute(table)
    return {"version": int(tbl.version), "rows": int(tbl.count_rows())}


def review_queue(rows: list[dict]) -> list[dict]:
    """The ``block``/``review``/``error`` rows, most severe first (see module doc)."""
    items = []
    for r in rows:
        if r["decision"] not in _SEVERITY:
            continue
        flags = sorted(r["flags"] or [], key=lambda f: (f["start_s"], f["category"]))
        items.append({"video_id": r["video_id"], "uri": r["uri"], "name": r["uri"].rstrip("/").rsplit("/", 1)[-1],
                      "decision": r["decision"],
                      "confidence": max((f["confidence"] for f in flags), default=0.0), "ranges": flags,
                      "evidence": r.get("evidence") or [],
                      "error": (r.get("error") or "no reason given") if r["decision"] == "error" else None})
    items.sort(key=queue_key)
    return items


def queue_key(item: dict) -> list:
    """The review queue's order (module doc); the video id last, so that ties have one order."""
    return [_SEVERITY[item["decision"]], -item["confidence"], item["uri"], item["video_id"]]


def write_lines(uri: str, lines) -> int:
    """Write the text pieces ``lines`` (any iterable, written as it is consumed) to a local path
    or ``s3://`` URI; returns how many were written."""
    fs, path = storage.pyarrow_filesystem(uri)
    if not storage.is_s3(uri):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    n = 0
    with fs.open_output_stream(path) as f:
        for line in lines:
            f.write(line.encode("utf-8"))
            n += 1
    return n


def write_text(uri: str, text: str) -> str:
    """Write a small text file to a local path or ``s3://`` URI."""
    write_lines(uri, [text])
    return uri


def write_review_queue(uri: str, rows: list[dict]) -> int:
    return write_lines(uri, (json.dumps(i, ensure_ascii=False) + "\n" for i in review_queue(rows)))


class FramePdqSink:
    """Driver side of every run: the ``pdq_*`` lists of the ``ok`` status rows in each batch
    (``schemas.stream``) go to the ``frame_pdq`` table, ``flush_every`` videos per upsert, so
    the driver holds at most that many videos' hashes."""

    def __init__(self, output: str, run_id: str, *, flush_every: int = 2000):
        self.output, self.run_id, self.flush_every = output, run_id, flush_every
        self.rows: list[dict] = []
        self.written = 0
        self.result: dict | None = None

    def add(self, batch: pa.Table) -> None:
        import datetime as dt

        from schemas.moderation import PDQ_COLUMNS, PDQ_STREAM_PREFIX
        from schemas.stream import KIND_VIDEO

        if "pdq_hashes" not in batch.column_names:
            return
        mask = pa.compute.and_(pa.compute.equal(batch.column("kind"), KIND_VIDEO),
                               pa.compute.is_valid(batch.column("pdq_hashes")))
        videos = batch.filter(pa.compute.and_(mask, pa.compute.equal(batch.column("status"), "ok")))
        now = dt.datetime.now(dt.timezone.utc)
        for r in videos.select(["video_id", "uri", *(PDQ_STREAM_PREFIX + k for k in PDQ_COLUMNS)]).to_pylist():
            row = {k: r[PDQ_STREAM_PREFIX + k] for k in PDQ_COLUMNS}
            self.rows.append(dict(row, video_id=r["video_id"], uri=r["uri"], run_id=self.run_id, indexed_at=now))
        if len(self.rows) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            from schemas.output import from_columns

            schema = frame_pdq_schema()
            table = from_columns({n: [r[n] for r in self.rows] for n in schema.names}, schema, len(self.rows))
            self.result = write_frame_pdq(self.output, table)
            self.written += len(self.rows)
            self.rows = []

    def close(self) -> dict:
        self.flush()
        return dict(self.result or {"rows": 0}, written=self.written)
