"""Links to a moment of a video, for the static pages (``search --html``, the moderation report).

``moment_url(uri, start_s, end_s)``:
  * a local file: ``file:///abs/path.mp4#t=12.00,14.00`` (percent-encoded; browsers start the
    video at ``start_s`` and stop at ``end_s``: the Media Fragments ``#t=`` syntax);
  * ``s3://bucket/key``: the template in ``XCLIP_INDEX_MEDIA_URL`` (or ``template=``), e.g.
    ``https://cdn.example.com/{key}#t={start},{end}``; fields: ``{uri}``, ``{bucket}``, ``{key}``
    (percent-encoded, ``/`` kept), ``{start}``, ``{end}`` (seconds, 2 decimals). Without a
    template an ``s3://`` video has no link (None): browsers cannot open ``s3://``.
"""
from __future__ import annotations

import os
import pathlib
import urllib.parse

MEDIA_URL_ENV = "XCLIP_INDEX_MEDIA_URL"


def moment_url(uri: str, start_s: float | None, end_s: float | None, *, template: str | None = None) -> str | None:
    start, end = float(start_s or 0.0), float(end_s if end_s is not None else start_s or 0.0)
    frag = f"#t={start:.2f},{end:.2f}"
    if uri.startswith("s3://"):
        template = template if template is not None else os.environ.get(MEDIA_URL_ENV)
        if not template:
            return None
        bucket, _, key = uri[len("s3://"):].partition("/")
        return template.format(uri=urllib.parse.quote(uri, safe=""), bucket=urllib.parse.quote(bucket, safe=""),
                               key=urllib.parse.quote(key, safe="/"), start=f"{start:.2f}", end=f"{end:.2f}")
    if "://" in uri:
        return None
    return pathlib.PurePosixPath(uri).as_uri() + frag if uri.startswith("/") else None
