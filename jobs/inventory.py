"""S3 Inventory reports as input: ``--input s3://dest/inventory/<bucket>/<config>/<date>/manifest.json``.

Listing millions of keys every night is slow and costs requests; S3 Inventory
delivers the listing daily. An input whose name is ``manifest.json`` and whose
JSON has ``files`` and ``fileFormat`` is read as an inventory report: each data
file it names (in the destination bucket of the report) is read, CSV (gzip,
no header, columns as in ``fileSchema``), Parquet or ORC, and every object with
a video extension becomes an input row with its fingerprint (size, ETag,
last-modified), so change detection (``jobs.incremental``) needs no listing.
Delete markers and non-latest versions (``IsLatest`` false / ``IsDeleteMarker``
true, when the report has those fields) are left out. CSV keys are URL-encoded
in reports and are decoded here.

An inventory input gives no deletion scope (its configuration may filter on a
prefix): videos missing from it are kept. Use a prefix input to delete.
"""
from __future__ import annotations

import gzip
import io
import json
from urllib.parse import unquote_plus

import pyarrow as pa

from xclip_core import storage

# report field names (fileSchema for CSV; Parquet/ORC use the snake_case ones)
_ALIASES = {"bucket": "bucket", "key": "key", "size": "size", "lastmodifieddate": "last_modified_date",
            "last_modified_date": "last_modified_date", "etag": "e_tag", "e_tag": "e_tag",
            "islatest": "is_latest", "is_latest": "is_latest", "isdeletemarker": "is_delete_marker",
            "is_delete_marker": "is_delete_marker"}


def is_inventory_manifest(uri: str) -> bool:
    return str(uri).rstrip("/").rsplit("/", 1)[-1] == "manifest.json"


def _column_name(name: str) -> str:
    return _ALIASES.get(name.strip().lower(), name.strip().lower())


def _read_data_file(data: bytes, fmt: str, file_schema: str) -> pa.Table:
    fmt = fmt.upper()
    if fmt == "CSV":
        import pyarrow.csv as pacsv

        names = [_column_name(n) for n in file_schema.split(",")]
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        table = pacsv.read_csv(io.BytesIO(raw), read_options=pacsv.ReadOptions(column_names=names),
                               convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}))
        keys = [unquote_plus(k) for k in table.column("key").to_pylist()]
        return table.set_column(table.schema.get_field_index("key"), "key", pa.array(keys, pa.string()))
    if fmt == "PARQUET":
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
    elif fmt == "ORC":
        import pyarrow.orc as orc

        table = orc.ORCFile(io.BytesIO(data)).read()
    else:
        raise ValueError(f"unknown inventory fileFormat {fmt!r} (expected CSV, ORC or Parquet)")
    return table.rename_columns([_column_name(n) for n in table.column_names])


def _truthy(v) -> bool:
    return v is True or str(v).strip().lower() == "true"


def read_inventory(uri: str, extensions: tuple[str, ...], make_row) -> list[dict]:
    """Rows (``make_row(uri, size, etag, mtime)``) for the video objects an inventory report lists."""
    import datetime as dt

    from jobs.config import ConfigError

    try:
        manifest = json.loads(storage.read_bytes(uri))
        files, fmt = manifest["files"], manifest["fileFormat"]
    except FileNotFoundError:
        raise ConfigError(f"--input {uri}: inventory manifest not found") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"--input {uri}: not an S3 Inventory manifest.json ({type(e).__name__}: {e})") from None
    dest = str(manifest.get("destinationBucket", "")).rsplit(":", 1)[-1]
    if not dest and storage.is_s3(uri):
        dest = storage.strip_scheme(uri).split("/", 1)[0]
    rows = []
    for f in files:
        loc = f"s3://{dest}/{f['key']}" if dest else storage.join(uri.rsplit("/", 1)[0], f["key"].rsplit("/", 1)[-1])
        table = _read_data_file(storage.read_bytes(loc), fmt, manifest.get("fileSchema", ""))
        cols = table.column_names
        for r in table.to_pylist():
            if "is_latest" in cols and r["is_latest"] is not None and not _truthy(r["is_latest"]):
                continue
            if "is_delete_marker" in cols and _truthy(r.get("is_delete_marker")):
                continue
            key = r["key"]
            name = key.rsplit("/", 1)[-1]
            if "." not in name or name.rsplit(".", 1)[-1].lower() not in extensions:
                continue
            mtime = r.get("last_modified_date")
            if isinstance(mtime, str) and mtime:
                mtime = dt.datetime.fromisoformat(mtime.replace("Z", "+00:00"))
            size = r.get("size")
            rows.append(make_row(f"s3://{r.get('bucket') or manifest.get('sourceBucket')}/{key}",
                                 None if size in (None, "") else int(size), r.get("e_tag") or None, mtime or None))
    return rows
