"""Output tables of the indexing job: the ONLY place their columns are defined.

Two tables, written both as Parquet datasets and as LanceDB tables:

``videos`` (one row per listed input, whatever happened to it; key ``video_id``)
    video_id        string     sha1 of the normalised URI (:func:`video_id`)
    uri             string     normalised URI (``s3://bucket/key`` or an absolute path)
    status          string     ``ok`` | ``failed`` | ``skipped`` (| ``indexing``: placeholder,
                               see xclip_store.writer)
    error           string     reason; null when ok
    duration_s      float64    container/stream duration (null when unknown)
    fps             float64
    num_frames      int64
    width, height   int32
    codec           string
    num_segments    int32      segments written for this video (0 unless ok)
    embedding       fixed_size_list<float32>[P]  L2-normalised mean of the clip
                                embeddings; null unless ok
    labels          list<string>   top-k of the mean clip probabilities, best first
    label_scores    list<float32>  aligned with ``labels``
    model_id        string     ``<model name>@<sha256 of weights, 12 hex>``
    label_set       string     ``<label set name>@<sha256, 12 hex>``
    run_id          string
    source_size     int64      bytes; source fingerprint with etag or mtime
    source_etag     string
    source_mtime    timestamp[us, UTC]
    indexed_at      timestamp[us, UTC]
    processing_id   string     hash of model weights, label set, decode settings, precision, prompt
                               template, schema version (jobs.incremental); added in schema "2"
    coverage        float64    fraction (0..1) of ``duration_s`` covered by the union of the
                               indexed clip windows; 0 when nothing was indexed (not ok); null
                               when an ok video's duration is unknown
    decode_backend  string     what decoded it: ``pyav`` | ``decord`` | ``nvdec`` (null: not decoded)
    decode_fallback string     NVDEC was tried or routed but the CPU decoded it: why; else null
    label_text      string     ``labels`` joined by "; ", lower case (:func:`label_text`), for the
                               full-text index; null when ``labels`` is; added in schema "3"
    shots           list<struct<start_s: float64, end_s: float64>>  the detected shots (decoder
                               ``segments = "shots"``); null with fixed segments; added in schema "4"

``segments`` (one row per encoded clip of an ``ok`` video; key ``segment_id``)
    segment_id      string     ``<video_id>:<segment_index, 6 digits>``
    video_id, uri   string
    segment_index   int32
    start_s, end_s  float64    clip window in seconds, within the video's duration
    frame_timestamps list<float64>  timestamps of the sampled frames
    embedding       fixed_size_list<float32>[P]  L2-normalised clip embedding
    labels          list<string>   zero-shot top-k (softmax over the label set)
    label_scores    list<float32>
    model_id, label_set, run_id  string
    indexed_at      timestamp[us, UTC]
    label_text      string     as in ``videos``; added in schema "3"
    shot_index      int32      the shot (index into ``videos.shots``) the clip lies in; null with
                               fixed segments; added in schema "4"

A third table, ``shots`` (one row per shot, ``segments = "shots"`` only), is in ``schemas.shots``.

Columns added after schema "1" are the tables' last columns: the writer (and ``xclip-index
relabel``) add them to an older table in place (:func:`migration`), so an old index keeps working.
``label_text`` is derived from ``labels`` and filled for old rows by that migration.

Every schema carries ``xclip_index.schema_version`` and ``xclip_index.table`` in
its metadata. ``SCHEMA_VERSION`` changes whenever a column is added, removed or
changes type. ``ROWS_VERSION`` (part of a video's processing identity, ``jobs.incremental``)
changes only when a migration cannot fill the new columns, i.e. when every video must be
processed again; a derived column (``label_text``) does not change it.
"""
from __future__ import annotations

import hashlib
import os

import pyarrow as pa
import pyarrow.compute as pc

SCHEMA_VERSION = "4"
ROWS_VERSION = "2"

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_SKIPPED = "skipped"
STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_SKIPPED)
# a videos row the writer commits before the video's segments and replaces with the final row
# after them (xclip_store.writer: consistency order); left behind only by a crash, reindexed by the next run
STATUS_INDEXING = "indexing"
# a video gone from the source, kept with on_deleted = "mark" (jobs.incremental)
STATUS_DELETED = "deleted"
# a videos row in the Parquet log only (never in LanceDB): the video left LanceDB (gone from the source,
# a duplicate repair) in that run; the DuckDB "current" views (xclip_store.writer) drop videos whose latest
# row is a tombstone, so they equal LanceDB (xclip_store.parquet_log)
STATUS_TOMBSTONE = "tombstone"

VIDEOS_TABLE = "videos"
SEGMENTS_TABLE = "segments"
VIDEOS_KEY = "video_id"
SEGMENTS_KEY = "segment_id"
VECTOR_COLUMN = "embedding"

TIMESTAMP = pa.timestamp("us", tz="UTC")


def normalize_uri(uri: str) -> str:
    """The canonical spelling of an input: ``s3a://`` -> ``s3://``; ``file://``
    and relative local paths -> absolute paths. Keys keep spaces and unicode."""
    uri = str(uri).strip()
    if uri.startswith("s3a://"):
        return "s3://" + uri[len("s3a://"):]
    if uri.startswith("s3://"):
        return uri
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    return os.path.abspath(os.path.expanduser(uri))


def video_id(uri: str) -> str:
    """Stable id of an input: sha1 (hex) of its normalised URI."""
    return hashlib.sha1(normalize_uri(uri).encode("utf-8")).hexdigest()


def segment_id(vid: str, segment_index: int) -> str:
    return f"{vid}:{int(segment_index):06d}"


def _with_meta(fields: list[pa.Field], table: str) -> pa.Schema:
    return pa.schema(fields, metadata={"xclip_index.schema_version": SCHEMA_VERSION,
                                       "xclip_index.table": table})


def vector_type(dim: int) -> pa.DataType:
    if int(dim) <= 0:
        raise ValueError(f"embedding dimension must be positive, got {dim}")
    return pa.list_(pa.float32(), int(dim))


# Field groups shared by the output tables and the inter-stage rows (schemas/stream.py).
MEDIA_FIELDS = (
    pa.field("duration_s", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("num_frames", pa.int64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("codec", pa.string()),
)
FINGERPRINT_FIELDS = (
    pa.field("source_size", pa.int64()),
    pa.field("source_etag", pa.string()),
    pa.field("source_mtime", TIMESTAMP),
)

DECODE_FIELDS = (
    pa.field("decode_backend", pa.string()),
    pa.field("decode_fallback", pa.string()),
)


def clip_fields(*, nullable: bool) -> list[pa.Field]:
    """A clip's place in its video (null on the stream's status rows)."""
    return [pa.field("segment_index", pa.int32(), nullable=nullable),
            pa.field("start_s", pa.float64(), nullable=nullable),
            pa.field("end_s", pa.float64(), nullable=nullable),
            pa.field("frame_timestamps", pa.list_(pa.float64()))]


LABEL_TEXT_FIELD = pa.field("label_text", pa.string())
SHOT_SPAN = pa.struct([pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64())])
SHOTS_FIELD = pa.field("shots", pa.list_(SHOT_SPAN))   # videos, schema "4" (null: fixed segments)
SHOT_INDEX_FIELD = pa.field("shot_index", pa.int32())  # segments, schema "4" (null: fixed segments)
LABEL_TEXT_SEPARATOR = "; "
# the same join as LanceDB SQL, for filling label_text of an older table's rows (:func:`migration`)
LABEL_TEXT_SQL = f"lower(array_to_string(labels, '{LABEL_TEXT_SEPARATOR}'))"


def label_text(labels) -> pa.Array:
    """The ``label_text`` column of a ``labels`` column (list<string>: Arrow or Python lists): the
    labels joined, lower case (LanceDB's ``contains_tokens`` matches case-sensitively)."""
    if not isinstance(labels, (pa.Array, pa.ChunkedArray)):
        labels = pa.array(labels, pa.list_(pa.string()))
    return pc.utf8_lower(pc.binary_join(labels, LABEL_TEXT_SEPARATOR))


def migration(table: str, existing: pa.Schema, dim: int | None = None) -> dict[str, pa.Field | str]:
    """What an older ``table`` (schema ``existing``) lacks of the current schema, in order, as
    LanceDB ``add_columns`` arguments: a field (added as nulls) or a SQL expression (derived)."""
    dim = dim or schema_dim(existing)
    out = {}
    for field in schema_for(table, dim):
        if field.name not in existing.names:
            out[field.name] = LABEL_TEXT_SQL if field.name == LABEL_TEXT_FIELD.name else field
    return out


def result_fields(dim: int) -> list[pa.Field]:
    """What the model said and which run/model/labels said it (videos and segments alike)."""
    return [pa.field(VECTOR_COLUMN, vector_type(dim)),
            pa.field("labels", pa.list_(pa.string())),
            pa.field("label_scores", pa.list_(pa.float32())),
            pa.field("model_id", pa.string(), nullable=False),
            pa.field("label_set", pa.string(), nullable=False),
            pa.field("run_id", pa.string(), nullable=False)]


def videos_schema(dim: int) -> pa.Schema:
    """Schema of the ``videos`` table for embeddings of dimension ``dim``."""
    return _with_meta([
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        *MEDIA_FIELDS,
        pa.field("num_segments", pa.int32(), nullable=False),
        *result_fields(dim),
        *FINGERPRINT_FIELDS,
        pa.field("indexed_at", TIMESTAMP, nullable=False),
        pa.field("processing_id", pa.string()),
        pa.field("coverage", pa.float64()),
        *DECODE_FIELDS,
        LABEL_TEXT_FIELD,
        SHOTS_FIELD,
    ], VIDEOS_TABLE)


def segments_schema(dim: int) -> pa.Schema:
    """Schema of the ``segments`` table for embeddings of dimension ``dim``."""
    return _with_meta([
        pa.field("segment_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        *clip_fields(nullable=False),
        *result_fields(dim),
        pa.field("indexed_at", TIMESTAMP, nullable=False),
        LABEL_TEXT_FIELD,
        SHOT_INDEX_FIELD,
    ], SEGMENTS_TABLE)


def schema_for(table: str, dim: int) -> pa.Schema:
    if table == VIDEOS_TABLE:
        return videos_schema(dim)
    if table == SEGMENTS_TABLE:
        return segments_schema(dim)
    raise ValueError(f"unknown table {table!r}; expected {VIDEOS_TABLE!r} or {SEGMENTS_TABLE!r}")


def schema_dim(schema: pa.Schema) -> int:
    """The embedding dimension of a videos/segments schema."""
    return schema.field(VECTOR_COLUMN).type.list_size


def vectors(values, dim: int, valid=None) -> pa.FixedSizeListArray:
    """[N, dim] floats (numpy or nested lists) -> ``fixed_size_list<float32>[dim]``;
    rows where ``valid`` is False are null (their values are ignored)."""
    import numpy as np

    arr = np.ascontiguousarray(values, dtype=np.float32).reshape(-1, int(dim))
    mask = None if valid is None else pa.array(~np.asarray(valid, dtype=bool))
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), int(dim), mask=mask)


def from_columns(columns: dict, schema: pa.Schema, num_rows: int) -> pa.Table:
    """Columns (Python lists or Arrow arrays) -> a table of exactly ``schema``;
    a missing column is all null, an unknown one is an error; ``label_text`` is always derived from
    ``labels`` when they are given."""
    if LABEL_TEXT_FIELD.name in schema.names and "labels" in columns:
        columns = {**columns, LABEL_TEXT_FIELD.name: label_text(columns["labels"])}
    extra = set(columns) - set(schema.names)
    if extra:
        raise KeyError(f"unknown column(s) for {schema.metadata.get(b'xclip_index.table', b'?').decode()}: "
                       f"{sorted(extra)}")
    arrays = []
    for field in schema:
        col = columns.get(field.name)
        if col is None:
            arrays.append(pa.nulls(num_rows, field.type))
        elif isinstance(col, (pa.Array, pa.ChunkedArray)):
            arrays.append(col if col.type == field.type else col.cast(field.type))
        else:
            arrays.append(pa.array(col, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows (dicts keyed by column) -> a table of exactly ``schema``.

    A missing key is null (``label_text``: derived); an unknown key is an error (no silent extra
    columns)."""
    keys = dict.fromkeys(k for r in rows for k in r)
    return from_columns({k: [r.get(k) for r in rows] for k in keys}, schema, len(rows))


def check_table(table: pa.Table, expected: pa.Schema) -> None:
    """Raise ``ValueError`` unless ``table`` has exactly the columns and types of
    ``expected`` (nullability and metadata ignored: LanceDB/Parquet relax them)."""
    got = [(f.name, f.type) for f in table.schema]
    want = [(f.name, f.type) for f in expected]
    if got != want:
        raise ValueError(f"schema mismatch:\n got  {got}\n want {want}")
