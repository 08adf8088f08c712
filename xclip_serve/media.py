"""``/media/{video_id}`` and ``/thumb/{segment_id}``: bytes of videos and thumbnails in the index.

Only what the index names is served: the id is looked up in the ``videos`` table (a malformed id,
an unknown one or a file that is gone: 404), never turned into a path. Local files answer HTTP
Range requests (206, Starlette's ``FileResponse``); ``s3://`` videos get a 307 redirect to a
presigned GET URL (boto3, the standard AWS environment; valid ``PRESIGN_EXPIRES_S``).
"""
from __future__ import annotations

import os
import re

from schemas.features import THUMBNAILS_TABLE
from schemas.output import VIDEOS_TABLE
from schemas.sql import sql_str

VIDEO_ID = re.compile(r"[0-9a-f]{40}")
SEGMENT_ID = re.compile(r"[0-9a-f]{40}:[0-9]{6}")
PRESIGN_EXPIRES_S = 900
TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
         ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".ogv": "video/ogg"}


def video_uri(index, video_id: str) -> str | None:
    """The URI of an indexed video, or None (bad or unknown id)."""
    if not VIDEO_ID.fullmatch(video_id or ""):
        return None
    rows = index.table(VIDEOS_TABLE).search().where(f"video_id = {sql_str(video_id)}").select(["uri", "status"]) \
        .limit(1).to_arrow().to_pylist()
    if not rows or rows[0]["status"] == "deleted":
        return None
    return rows[0]["uri"]


def local_file(uri: str) -> str | None:
    """The regular file behind a local URI (absolute, indexed), else None."""
    if "://" in uri or not os.path.isabs(uri) or not os.path.isfile(uri):
        return None
    return uri


def content_type(uri: str) -> str:
    return TYPES.get(os.path.splitext(uri)[1].lower(), "application/octet-stream")


def presigned_url(uri: str) -> str:
    import boto3

    from xclip_core import storage

    bucket, _, key = uri[len("s3://"):].partition("/")
    client = boto3.client("s3", endpoint_url=storage.endpoint_url(), region_name=storage.region())
    return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                         ExpiresIn=PRESIGN_EXPIRES_S)


def thumbnail(index, segment_id: str) -> bytes | None:
    if not SEGMENT_ID.fullmatch(segment_id or "") or THUMBNAILS_TABLE not in index.table_names:
        return None
    rows = index.table(THUMBNAILS_TABLE).search().where(f"segment_id = {sql_str(segment_id)}") \
        .select(["jpeg"]).limit(1).to_arrow().to_pylist()
    return rows[0]["jpeg"] if rows else None
