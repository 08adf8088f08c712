"""One way to reach local paths and ``s3://`` URIs, used by every module.

S3 settings come from the standard AWS environment variables only:
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``), ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` /
``AWS_DEFAULT_REGION``. An ``http://`` endpoint works (MinIO, tests).
Nothing here ever prints or stores a credential.
"""
from __future__ import annotations

import functools
import os
from typing import IO
from urllib.parse import urlparse

S3_SCHEMES = ("s3://", "s3a://")


def is_s3(uri: str) -> bool:
    return str(uri).startswith(S3_SCHEMES)


def strip_scheme(uri: str) -> str:
    """``s3://bucket/key`` -> ``bucket/key``; local paths unchanged."""
    for scheme in S3_SCHEMES:
        if uri.startswith(scheme):
            return uri[len(scheme):]
    return uri


def join(base: str, *parts: str) -> str:
    out = str(base).rstrip("/")
    for p in parts:
        out = out + "/" + str(p).strip("/")
    return out


def endpoint_url() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def _env_key() -> tuple:
    names = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
             "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION")
    return tuple(os.environ.get(n) for n in names)


@functools.lru_cache(maxsize=8)
def _s3fs(_key: tuple):
    import s3fs

    client_kwargs = {}
    if endpoint_url():
        client_kwargs["endpoint_url"] = endpoint_url()
    if region():
        client_kwargs["region_name"] = region()
    # Credentials are left to botocore's standard chain (env, profile, IAM role).
    return s3fs.S3FileSystem(client_kwargs=client_kwargs, use_listings_cache=False)


def s3_filesystem():
    """An ``s3fs.S3FileSystem`` configured from the environment (cached per process)."""
    return _s3fs(_env_key())


def open_input(uri: str, mode: str = "rb", **kwargs) -> IO[bytes]:
    """Open a local path or ``s3://`` URI for reading (a seekable file object)."""
    if is_s3(uri):
        return s3_filesystem().open(strip_scheme(uri), mode, **kwargs)
    return open(uri, mode)


def read_bytes(uri: str) -> bytes:
    with open_input(uri) as f:
        return f.read()


def exists(uri: str) -> bool:
    if is_s3(uri):
        return s3_filesystem().exists(strip_scheme(uri))
    return os.path.exists(uri)


def pyarrow_filesystem(uri: str):
    """(pyarrow filesystem, path) for ``uri``. pyarrow's own S3FileSystem ignores
    ``AWS_ENDPOINT_URL``, so the endpoint is passed explicitly."""
    import pyarrow.fs as pafs

    if not is_s3(uri):
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    kwargs = {}
    ep = endpoint_url()
    if ep:
        parsed = urlparse(ep)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
    if region():
        kwargs["region"] = region()
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        kwargs["access_key"] = os.environ["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        if os.environ.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    return pafs.S3FileSystem(**kwargs), strip_scheme(uri)


def lancedb_storage_options(uri: str) -> dict:
    """storage_options for ``lancedb.connect`` (empty for local paths)."""
    if not is_s3(uri):
        return {}
    opts = {}
    ep = endpoint_url()
    if ep:
        opts["endpoint"] = ep
        if ep.startswith("http://"):
            opts["allow_http"] = "true"
    if region():
        opts["region"] = region()
    for env, key in (("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
                     ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
                     ("AWS_SESSION_TOKEN", "aws_session_token")):
        if os.environ.get(env):
            opts[key] = os.environ[env]
    return opts
