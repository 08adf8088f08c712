"""The tasks of a streaming relabel (``xclip_search.relabel``); each runs on a Ray worker
(``jobs.fragment_map``) and returns a small result, never rows.

1. ``label_segments`` (one per ``segments`` fragment, at the version read): its rows in batches of
   ``batch_rows`` (approximate: the stored embedding; exact: plus the segment's visual tokens, looked
   up in ``prompt_features`` by ``segment_id`` batch by batch), probabilities, top-k labels. Writes
   the fragment's new label columns (``xclip_store.label_commit.rewrite_fragment``: uncommitted), its
   label rows for the Parquet log (``<stage>/segments/``), and each video's running sum of
   probabilities and segment count, hash-partitioned by ``video_id`` (``<stage>/partials/p<k>/``).
2. ``label_video_part`` (one per partition): sums a partition's partials by ``video_id``; the video's
   labels are the top-k of the mean (the job's rule, ``jobs.assembler``); ``<stage>/videos-labels/``.
3. ``label_videos`` (one per ``videos`` fragment): the labels of its ``ok`` rows from the partitions,
   rewritten like 1 (``<stage>/videos/``).

Memory per task: one fragment's label columns and row addresses (Lance's rewrite joins them on row
address in memory: ~100-150 bytes a row, so a 1M-row fragment ~150 MB), one batch of
embeddings/tokens, at most ``PARTIAL_VIDEOS`` videos' running sums, one partition's partials (the
caller sizes partitions, ``xclip_search.relabel.video_partitions``). Nothing holds a video x segment
comparison, and no task holds rows of the decoded batches once the batch is done. Every log file
carries ``run_id`` (the relabel id): the finish step copies it into the Parquet log unread.
"""
from __future__ import annotations

import contextlib
import dataclasses
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas import SEGMENTS_TABLE, STATUS_OK, VIDEOS_TABLE
from schemas.features import PROMPT_FEATURES_TABLE
from schemas.output import label_text
from schemas.sql import sql_list
from xclip_core import storage
from xclip_store.label_commit import ROW_ADDR, dataset, rewrite_fragment

LABEL_COLUMNS = ("labels", "label_scores", "label_text", "label_set")
PARTIAL_VIDEOS = 8192  # per-video sums a segments task holds before writing them out


@dataclasses.dataclass(frozen=True)
class LabelJob:
    """What every task needs (picklable); ``scorer``: an ``xclip_core.scoring.ClipScorer``."""

    db_uri: str
    storage_options: dict
    stage: str                       # <output>/runs/<relabel_id>-labels
    versions: dict                   # table name -> version read
    labels: tuple
    top_k: int
    label_set: str
    parts: int                       # video partitions
    exact: bool
    scorer: object = None
    batch_rows: int = 2048
    relabel_id: str = ""             # the log's run_id column


def part_of(video_ids: list[str], parts: int) -> np.ndarray:
    """Stable partition of each video id (crc32: the same in every process)."""
    return np.fromiter((zlib.crc32(v.encode("utf-8")) % parts for v in video_ids), np.int64, len(video_ids))


def write_parquet(uri: str, table: pa.Table) -> str:
    fs, path = storage.pyarrow_filesystem(uri)
    if not storage.is_s3(uri):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(table, path, filesystem=fs, compression="zstd")
    return uri


def list_parquet(uri: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, base = storage.pyarrow_filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet"))
    return [storage.join(uri, n) for n in names]


def read_parquet(uri: str) -> pa.Table:
    fs, path = storage.pyarrow_filesystem(uri)
    return pq.read_table(path, filesystem=fs)


def matrix(col, dtype=np.float32) -> np.ndarray:
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    size = col.type.list_size
    return col.values.slice(col.offset * size, len(col) * size).to_numpy(zero_copy_only=False) \
        .reshape(len(col), size).astype(dtype)


def label_table(job: LabelJob, probs: np.ndarray, extra: dict) -> pa.Table:
    """``extra`` columns, then the label columns for ``probs`` [N, K] (``jobs.labeler.Labeler.top_k``,
    built as Arrow arrays without Python lists)."""
    from jobs.labeler import Labeler

    idx, scores = Labeler(job.labels, job.top_k).top_k(probs)
    n, k = idx.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    labs = pa.ListArray.from_arrays(offsets, pa.array(job.labels, pa.string()).take(pa.array(idx.reshape(-1))))
    return pa.table({**extra, "labels": labs,
                     "label_scores": pa.ListArray.from_arrays(offsets, pa.array(scores.reshape(-1), pa.float32())),
                     "label_text": label_text(labs), "label_set": pa.array([job.label_set] * n, pa.string())})


def group_sum(keys: list, values: np.ndarray, weights: np.ndarray | None = None):
    """(unique keys, per-key sum of ``values`` rows [float64], per-key sum of ``weights`` (default 1))."""
    uniq, inv = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
    order = np.argsort(inv, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0])
    sums = np.add.reduceat(values[order].astype(np.float64), starts, axis=0) if len(order) else \
        np.zeros((0, values.shape[1]))
    w = np.ones(len(keys)) if weights is None else np.asarray(weights, np.float64)
    return uniq, sums, np.bincount(inv, weights=w, minlength=len(uniq))


def tokens_found(pf, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(found mask [B], float32 tokens [found, N, P]) of segments ``ids`` in dataset ``pf`` (through its
    scalar index on ``segment_id`` when it has one)."""
    t = pf.to_table(columns=["segment_id", "visual_tokens", "num_tokens"], filter=f"segment_id IN ({sql_list(ids)})")
    pos = dict(zip(t.column("segment_id").to_pylist(), range(t.num_rows)))
    found = np.asarray([s in pos for s in ids], bool)
    if not t.num_rows:
        return found, np.zeros((0, 0, 0), np.float32)
    take = np.asarray([pos[s] for s, f in zip(ids, found) if f], np.int64)
    n_tok = int(t.column("num_tokens")[0].as_py())
    return found, matrix(t.column("visual_tokens")).take(take, axis=0).reshape(len(take), n_tok, -1)


def tokens_for(pf, ids: list[str]) -> np.ndarray | None:
    """[B, N, P] float32 tokens of ``ids``, None unless every id has them."""
    found, tok = tokens_found(pf, ids)
    return tok if found.all() else None


class _Partials:
    """A segments task's per-video running sums (probabilities, segment count), written to the
    partitions (``<stage>/partials/p<k>/f<fid>-<piece>.parquet``) whenever ``max_videos`` videos are
    held: a fragment of one-segment videos never holds a row per video. A video split over pieces
    (or fragments) is summed again by ``label_video_part``."""

    def __init__(self, job: LabelJob, fid: int, max_videos: int):
        self.job, self.fid, self.max_videos = job, fid, max_videos
        self.sums, self.counts, self.pieces = {}, {}, 0

    def add(self, video_ids: list[str], probs: np.ndarray) -> None:
        uniq, s, c = group_sum(video_ids, probs)
        for j, u in enumerate(uniq):
            if u in self.sums:
                self.sums[u] += s[j]
                self.counts[u] += int(c[j])
            else:  # a copy: a view would keep the batch's whole sums array alive
                self.sums[u], self.counts[u] = s[j].copy(), int(c[j])
        if len(self.sums) >= self.max_videos:
            self.flush()

    def flush(self) -> None:
        if not self.sums:
            return
        vids = list(self.sums)
        parts, k = part_of(vids, self.job.parts), len(self.job.labels)
        for p in np.unique(parts):
            sel = [v for v, q in zip(vids, parts) if q == p]
            write_parquet(storage.join(self.job.stage, f"partials/p{int(p):05d}/f{self.fid:08d}-{self.pieces:04d}.parquet"),
                          pa.table({"video_id": pa.array(sel, pa.string()),
                                    "n": pa.array([self.counts[v] for v in sel], pa.int64()),
                                    "sum": pa.FixedSizeListArray.from_arrays(
                                        pa.array(np.concatenate([self.sums[v] for v in sel])), k)}))
        self.sums, self.counts, self.pieces = {}, {}, self.pieces + 1


class _LogWriter:
    """The label rows of one task for the Parquet log, written batch by batch (one file)."""

    def __init__(self, uri: str):
        self.uri, self.writer = uri, None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            fs, path = storage.pyarrow_filesystem(self.uri)
            if not storage.is_s3(self.uri):
                fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            self.writer = pq.ParquetWriter(path, table.schema, filesystem=fs, compression="zstd")
        self.writer.write_table(table)

    def close(self) -> str | None:
        if self.writer is None:
            return None
        self.writer.close()
        return self.uri

    def __enter__(self) -> "_LogWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.writer is not None:  # a failed task leaves a partial file, unnamed
            w, self.writer = self.writer, None
            w.is_open = False  # its footer is not written (the disk may be full): no second error at exit
            with contextlib.suppress(OSError):
                w.file_handle.close()


def label_segments(job: LabelJob, fid: int) -> dict:
    """Task 1 (module doc) for fragment ``fid``; ``{"missing_tokens": True}`` in exact mode when a
    segment has no stored tokens (the caller reruns in approximate mode).

    Holds, besides one batch: the fragment's new label columns and row addresses (Lance's
    ``update_columns`` joins them in memory: ~100-150 bytes a row), at most ``PARTIAL_VIDEOS`` videos'
    running sums; the label rows for the log go to Parquet batch by batch."""
    import torch

    ds = dataset(job.db_uri, SEGMENTS_TABLE, version=job.versions[SEGMENTS_TABLE], storage_options=job.storage_options)
    pf = dataset(job.db_uri, PROMPT_FEATURES_TABLE, version=job.versions[PROMPT_FEATURES_TABLE],
                 storage_options=job.storage_options) if job.exact else None
    frag = ds.get_fragment(fid)
    addrs, cols, rows = np.empty(frag.count_rows(), np.uint64), [], 0  # one allocation, not one a batch
    partials = _Partials(job, fid, PARTIAL_VIDEOS)
    with _LogWriter(storage.join(job.stage, f"segments/f{fid:08d}.parquet")) as logw:
        for batch in frag.to_batches(columns=["segment_id", "video_id", "embedding", "indexed_at"],
                                     with_row_address=True, batch_size=job.batch_rows, batch_readahead=2):
            ids = batch.column("segment_id").to_pylist()
            emb = torch.from_numpy(matrix(batch.column("embedding")))
            tok = None
            if pf is not None:
                tok = tokens_for(pf, ids)
                if tok is None:
                    return {"fragment": fid, "missing_tokens": True}
                tok = torch.from_numpy(tok)
            with torch.inference_mode():
                probs = job.scorer.probs(emb, tok).numpy().astype(np.float32)
            labelled = label_table(job, probs, {"segment_id": pa.array(ids, pa.string()),
                                                "indexed_at": batch.column("indexed_at")})
            logw.write(labelled.append_column("run_id", pa.array([job.relabel_id] * batch.num_rows, pa.string())))
            cols.append(labelled.select(LABEL_COLUMNS))  # built here: they hold nothing of the batch
            addrs[rows:rows + batch.num_rows] = batch.column(ROW_ADDR).to_numpy()  # copied: no view of the batch
            partials.add(batch.column("video_id").to_pylist(), probs)
            rows += batch.num_rows
        partials.flush()
        log = logw.close()
    if not rows:
        return {"fragment": fid, "rows": 0}
    meta, fields = rewrite_fragment(frag, addrs[:rows], pa.concat_tables(cols))
    return {"fragment": fid, "rows": rows, "meta": meta, "fields": fields, "log": log,
            "read_version": job.versions[SEGMENTS_TABLE]}


def label_video_part(job: LabelJob, part: int) -> dict:
    """Task 2 (module doc) for partition ``part``."""
    files = list_parquet(storage.join(job.stage, f"partials/p{part:05d}"))
    if not files:
        return {"part": part, "videos": 0}
    t = pa.concat_tables([read_parquet(f) for f in files])
    uniq, sums, n = group_sum(t.column("video_id").to_pylist(), matrix(t.column("sum"), np.float64),
                              t.column("n").to_numpy())
    probs = (sums / n[:, None]).astype(np.float32)
    write_parquet(storage.join(job.stage, f"videos-labels/p{part:05d}.parquet"),
                  label_table(job, probs, {"video_id": pa.array(list(uniq), pa.string())}))
    return {"part": part, "videos": len(uniq)}


def label_videos(job: LabelJob, fid: int) -> dict:
    """Task 3 (module doc) for ``videos`` fragment ``fid``."""
    ds = dataset(job.db_uri, VIDEOS_TABLE, version=job.versions[VIDEOS_TABLE], storage_options=job.storage_options)
    frag = ds.get_fragment(fid)
    rows = frag.to_table(columns=["video_id", "indexed_at"], filter=f"status = '{STATUS_OK}'", with_row_address=True)
    if not rows.num_rows:
        return {"fragment": fid, "rows": 0}
    found = []
    for f in list_parquet(storage.join(job.stage, "videos-labels")):
        t = read_parquet(f)
        found.append(t.filter(pc.is_in(t.column("video_id"), value_set=rows.column("video_id"))))
    if not found:
        return {"fragment": fid, "rows": 0}
    labels = pa.concat_tables(found)
    want = rows.append_column("_i", pa.array(range(rows.num_rows), pa.int64()))
    hit = want.join(labels.append_column("_j", pa.array(range(labels.num_rows), pa.int64())).select(["video_id", "_j"]),
                    keys="video_id", join_type="inner").sort_by(ROW_ADDR)
    if not hit.num_rows:
        return {"fragment": fid, "rows": 0}
    cols = labels.take(hit.column("_j")).select(LABEL_COLUMNS)
    meta, fields = rewrite_fragment(frag, hit.column(ROW_ADDR), cols)
    logged = pa.table({"video_id": hit.column("video_id"), "indexed_at": hit.column("indexed_at"),
                       **{c: cols.column(c) for c in LABEL_COLUMNS},
                       "run_id": pa.array([job.relabel_id] * hit.num_rows, pa.string())})
    log = write_parquet(storage.join(job.stage, f"videos/f{fid:08d}.parquet"), logged)
    return {"fragment": fid, "rows": hit.num_rows, "meta": meta, "fields": fields, "log": log,
            "read_version": job.versions[VIDEOS_TABLE]}
