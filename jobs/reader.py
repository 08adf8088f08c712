"""Stage 1 (driver): turn the ``--input`` arguments into one row per video.

An input is one of
  * an ``s3://bucket/prefix/`` or a local folder: listed recursively, keeping
    files whose extension is in ``ReaderConfig.extensions``;
  * a manifest file (``.txt``/``.lst``/``.list``: one URI per line, ``#``
    comments; ``.csv``/``.parquet``: a ``uri`` column). Relative entries resolve
    against the manifest's folder. Entries are kept whatever their extension;
  * a single video file (local or ``s3://``);
  * an S3 Inventory report's ``manifest.json`` (``jobs.inventory``): its
    objects with their fingerprints, no listing.

Include/exclude globs (``fnmatch``, case-sensitive) match the full normalised
URI, so ``*.mp4`` and ``s3://b/cams/*`` both work. Duplicates (same
``video_id``) are listed once. Local folders are walked following symlinks,
entering each folder once (no loop) and listing each file once (by inode);
unreadable folders and files that cannot be stat'ed are listing errors,
reported (``list_inputs(errors=)``), never silently dropped.

Output: a ``pyarrow.Table`` of ``schemas.stream.INPUT_SCHEMA`` sorted by URI.
Listed files carry their fingerprint (size, ETag or mtime). Manifest entries and
single files are not stat'ed here (that happens in the decode tasks, in
parallel); a missing one becomes a ``failed: not found`` row there.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import io
import logging
import os
import posixpath

import pyarrow as pa

from jobs.config import ConfigError, ReaderConfig
from jobs.inventory import is_inventory_manifest, read_inventory
from xclip_store.retry import PROGRAMMING_ERRORS, retry, short_error
from schemas import normalize_uri, video_id
from schemas.stream import INPUT_SCHEMA
from xclip_core import storage

log = logging.getLogger(__name__)

MANIFEST_TEXT = ("txt", "lst", "list")


class InputError(RuntimeError):
    """An input location cannot be listed or read (missing bucket, denied, unreachable endpoint);
    transient errors were retried first. ``xclip-index`` exit status 6."""

MANIFEST_TABLE = ("csv", "parquet")


def _ext(uri: str) -> str:
    base = uri.rstrip("/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""


def _utc(ts) -> dt.datetime | None:
    if ts is None:
        return None
    if isinstance(ts, (int, float)):
        return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc)
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.timezone.utc)


def _row(uri: str, size=None, etag=None, mtime=None) -> dict:
    uri = normalize_uri(uri)
    if etag is not None:
        etag = str(etag).strip('"') or None
    return {"video_id": video_id(uri), "uri": uri, "source_size": None if size is None else int(size),
            "source_etag": etag, "source_mtime": _utc(mtime), "status": None, "error": None}


def _s3_fingerprint(info: dict) -> tuple[int | None, str | None, dt.datetime | None]:
    etag = info.get("ETag") or info.get("etag")
    return info.get("size"), (str(etag).strip('"') or None) if etag else None, _utc(info.get("LastModified"))


def stat_source(uri: str) -> tuple[int | None, str | None, dt.datetime | None]:
    """(size, etag, mtime) of one input (decode tasks stat manifest entries with
    it); raises FileNotFoundError when it is absent."""
    if storage.is_s3(uri):
        info = storage.s3_filesystem().info(storage.strip_scheme(uri))
        if info.get("type") == "directory":
            raise FileNotFoundError(uri)
        return _s3_fingerprint(info)
    st = os.stat(uri)
    return st.st_size, None, _utc(st.st_mtime)


def _list_s3_prefix(uri: str, exts: tuple[str, ...]) -> list[dict]:
    fs = storage.s3_filesystem()
    prefix = storage.strip_scheme(uri).rstrip("/")
    found = fs.find(prefix, detail=True, withdirs=False)
    rows = []
    for key, info in found.items():
        if info.get("type") == "directory" or _ext(key) not in exts:
            continue
        rows.append(_row("s3://" + key, *_s3_fingerprint(info)))
    if not rows:
        log.warning("input %s: no objects with a video extension found", uri)
    return rows


def _list_local_dir(path: str, exts: tuple[str, ...], errors: list[str]) -> list[dict]:
    """Walk ``path`` following symlinks, without loops (a folder is entered once, by device and
    inode) and listing no file twice (a file reached by two paths, by a link or a hard link, is
    listed once, at its first path in sorted order). A folder that cannot be read or a file that
    cannot be stat'ed is a listing error, appended to ``errors`` (the run then deletes nothing)."""
    rows, seen_dirs, seen_files = [], set(), set()

    def walk_error(e: OSError) -> None:
        errors.append(f"{getattr(e, 'filename', None) or path}: cannot list ({type(e).__name__}: {e.strerror or e})")

    for root, dirs, files in os.walk(path, followlinks=True, onerror=walk_error):
        try:
            st = os.stat(root)
        except OSError as e:
            walk_error(e)
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink loop or a second link to a folder seen
            dirs[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in sorted(files):
            if _ext(name) not in exts:
                continue
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError as e:  # a broken link, or gone since the folder was read
                errors.append(f"{full}: cannot stat ({type(e).__name__}: {e.strerror or e})")
                continue
            if (st.st_dev, st.st_ino) in seen_files:
                continue
            seen_files.add((st.st_dev, st.st_ino))
            rows.append(_row(full, st.st_size, None, st.st_mtime))
    if not rows:
        log.warning("input %s: no files with a video extension found", path)
    return rows


def _resolve(entry: str, manifest_uri: str) -> str:
    entry = entry.strip()
    if storage.is_s3(entry) or entry.startswith("file://") or os.path.isabs(entry):
        return entry
    base = manifest_uri.rsplit("/", 1)[0] if "/" in manifest_uri else "."
    if storage.is_s3(manifest_uri):
        base = storage.strip_scheme(base)
        path = posixpath.normpath(base + "/" + entry)
    else:
        base = os.path.dirname(os.path.abspath(manifest_uri))
        path = os.path.normpath(os.path.join(base, entry))
    # "../" may not leave the manifest's bucket (S3) or folder (local)
    root = base.split("/", 1)[0] if storage.is_s3(manifest_uri) else os.path.normpath(base)
    if os.path.commonpath([root, path]) != root:
        raise ConfigError(f"--input {manifest_uri}: the relative entry {entry!r} leaves the manifest's "
                          f"{'bucket' if storage.is_s3(manifest_uri) else 'folder'}; write it as a full path or URI")
    return "s3://" + path if storage.is_s3(manifest_uri) else os.path.join(base, entry)  # as written (its id)


def _read_manifest(uri: str) -> list[dict]:
    ext = _ext(uri)
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        raise ConfigError(f"--input {uri}: manifest not found") from None
    if ext in MANIFEST_TEXT:
        entries = [ln for ln in (raw.strip() for raw in data.decode("utf-8").splitlines())
                   if ln and not ln.startswith("#")]
    else:
        if ext == "csv":
            import pyarrow.csv as pacsv
            table = pacsv.read_csv(io.BytesIO(data))
        else:
            import pyarrow.parquet as pq
            table = pq.read_table(io.BytesIO(data))
        if "uri" not in table.column_names:
            raise ConfigError(f"--input {uri}: manifest has no 'uri' column (columns: {table.column_names})")
        entries = [str(u) for u in table.column("uri").to_pylist() if u is not None and str(u).strip()]
    return [_row(_resolve(e, uri)) for e in entries]


def _expand(uri: str, cfg: ReaderConfig, errors: list[str]) -> list[dict]:
    ext = _ext(uri)
    if is_inventory_manifest(uri):  # an S3 Inventory report (jobs.inventory)
        return read_inventory(uri, cfg.extensions, _row)
    if storage.is_s3(uri):
        if uri.endswith("/"):
            return _list_s3_prefix(uri, cfg.extensions)
        if ext in MANIFEST_TEXT + MANIFEST_TABLE:
            return _read_manifest(uri)
        if ext not in cfg.extensions and storage.s3_filesystem().isdir(storage.strip_scheme(uri)):
            return _list_s3_prefix(uri, cfg.extensions)
        return [_row(uri)]
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    if os.path.isdir(path):
        return _list_local_dir(path, cfg.extensions, errors)
    if ext in MANIFEST_TEXT + MANIFEST_TABLE:
        return _read_manifest(path)
    if not os.path.exists(path) and ext not in cfg.extensions:
        raise ConfigError(f"--input {uri}: no such folder or file")
    return [_row(path)]


def _keep(uri: str, cfg: ReaderConfig) -> bool:
    if cfg.include and not any(fnmatch.fnmatchcase(uri, g) for g in cfg.include):
        return False
    return not any(fnmatch.fnmatchcase(uri, g) for g in cfg.exclude)


def list_inputs(cfg: ReaderConfig, *, errors: list[str] | None = None) -> pa.Table:
    """List every input of ``cfg`` (see module doc). Raises ``ConfigError`` for
    an input that cannot be interpreted at all (missing folder or manifest).
    Folders that cannot be read and files that cannot be stat'ed are listing errors: each is
    logged and appended to ``errors`` (when given), never silently dropped; the runner then
    deletes nothing (``jobs.deletions``)."""
    rows: dict[str, dict] = {}
    found: list[str] = []
    for uri in cfg.inputs:
        try:
            attempt: list[str] = []

            def expand(uri=uri, attempt=attempt):
                attempt.clear()  # a retried listing reports its own errors only
                return _expand(str(uri), cfg, attempt)

            expanded = retry(expand, what=f"list {uri}")
            found += attempt
        except (ConfigError,) + PROGRAMMING_ERRORS:
            raise
        except Exception as e:
            raise InputError(f"--input {uri}: cannot list ({short_error(e)})") from None
        for row in expanded:
            if _keep(row["uri"], cfg):
                rows.setdefault(row["video_id"], row)
    for msg in found[:20]:
        log.warning("listing error: %s", msg)
    if len(found) > 20:
        log.warning("... and %d more listing errors", len(found) - 20)
    if errors is not None:
        errors += found
    ordered = sorted(rows.values(), key=lambda r: r["uri"])
    return pa.Table.from_pylist(ordered, schema=INPUT_SCHEMA)
