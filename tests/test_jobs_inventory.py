"""S3 Inventory reports (CSV.gz, Parquet) written to the moto server, read as --input."""
from __future__ import annotations

import gzip
import io
import json
from urllib.parse import quote_plus

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.config import ConfigError, ReaderConfig
from jobs.reader import list_inputs

KEYS = ["cams/a.mp4", "cams/sub dir/ü clip.mkv", "cams/b.mov", "cams/notes.txt", "other/c.mp4"]


@pytest.fixture
def source(s3_server, s3_bucket):
    s3 = boto3.client("s3")
    for i, key in enumerate(KEYS):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b"x" * (100 + i))
    listed = s3.list_objects_v2(Bucket=s3_bucket)["Contents"]
    return s3_bucket, [(o["Key"], o["Size"], o["ETag"].strip('"'), o["LastModified"]) for o in listed]


def _write_inventory(bucket, objects, fmt, extra_rows=()):
    s3 = boto3.client("s3")
    dest = f"{bucket}-inv"
    s3.create_bucket(Bucket=dest)
    base = f"inventory/{bucket}/nightly/2026-11-27T01-00Z"
    if fmt == "CSV":
        lines = [f'"{bucket}","{quote_plus(k)}","{size}","{mtime.strftime("%Y-%m-%dT%H:%M:%S.000Z")}","{etag}",'
                 f'"{latest}","{marker}"' for k, size, etag, mtime, latest, marker in
                 [(*o, "true", "false") for o in objects] + list(extra_rows)]
        body, name = gzip.compress(("\n".join(lines) + "\n").encode()), "data/part-0.csv.gz"
    else:
        rows = [{"bucket": bucket, "key": k, "size": size, "last_modified_date": mtime, "e_tag": etag,
                 "is_latest": latest == "true", "is_delete_marker": marker == "true"}
                for k, size, etag, mtime, latest, marker in [(*o, "true", "false") for o in objects] + list(extra_rows)]
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buf)
        body, name = buf.getvalue(), "data/part-0.parquet"
    s3.put_object(Bucket=dest, Key=f"inventory/{bucket}/nightly/data/{name.rsplit('/', 1)[-1]}", Body=body)
    manifest = {"sourceBucket": bucket, "destinationBucket": f"arn:aws:s3:::{dest}", "version": "2016-11-30",
                "fileFormat": fmt, "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag, IsLatest, IsDeleteMarker",
                "files": [{"key": f"inventory/{bucket}/nightly/data/{name.rsplit('/', 1)[-1]}", "size": len(body),
                           "MD5checksum": "0"}]}
    s3.put_object(Bucket=dest, Key=f"{base}/manifest.json", Body=json.dumps(manifest).encode())
    return f"s3://{dest}/{base}/manifest.json"


@pytest.mark.parametrize("fmt", ["CSV", "Parquet"])
def test_inventory_equals_a_listing_of_the_bucket(source, fmt):
    import datetime as dt

    bucket, objects = source
    old = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    extra = [("cams/deleted.mp4", 0, "d0", old, "true", "true"),        # a delete marker
             ("cams/a.mp4", 5, "oldversion", old, "false", "false")]  # a non-current version
    uri = _write_inventory(bucket, objects, fmt, extra)
    from_inventory = list_inputs(ReaderConfig(inputs=(uri,)))
    from_listing = list_inputs(ReaderConfig(inputs=(f"s3://{bucket}/",)))
    assert from_inventory.num_rows == 4  # the .txt is not a video
    cols = ["video_id", "uri", "source_size", "source_etag", "source_mtime"]
    assert from_inventory.select(cols).to_pylist() == from_listing.select(cols).to_pylist()
    assert f"s3://{bucket}/cams/sub dir/ü clip.mkv" in from_inventory.column("uri").to_pylist()
    only_cams = list_inputs(ReaderConfig(inputs=(uri,), include=("*/cams/*",)))
    assert only_cams.num_rows == 3


def test_not_an_inventory(s3_server, s3_bucket):
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="x/manifest.json", Body=b'{"hello": 1}')
    with pytest.raises(ConfigError, match="not an S3 Inventory manifest"):
        list_inputs(ReaderConfig(inputs=(f"s3://{s3_bucket}/x/manifest.json",)))
