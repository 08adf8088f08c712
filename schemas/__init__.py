"""Output schemas of the indexing job (the only place output columns are defined)."""
from schemas.output import (SCHEMA_VERSION, SEGMENTS_KEY, SEGMENTS_TABLE, STATUS_FAILED, STATUS_OK,
                            STATUS_SKIPPED, STATUSES, VECTOR_COLUMN, VIDEOS_KEY, VIDEOS_TABLE,
                            check_table, normalize_uri, schema_for, segment_id, segments_schema,
                            to_table, video_id, videos_schema)
from schemas.output import STATUS_INDEXING
from schemas.manifest import RunManifest

__all__ = [
    "SCHEMA_VERSION", "SEGMENTS_KEY", "SEGMENTS_TABLE", "STATUS_FAILED", "STATUS_OK", "STATUS_SKIPPED",
    "STATUSES", "VECTOR_COLUMN", "VIDEOS_KEY", "VIDEOS_TABLE", "RunManifest", "check_table",
    "normalize_uri", "schema_for", "segment_id", "segments_schema", "to_table", "video_id",
    "videos_schema", "STATUS_INDEXING",
]
