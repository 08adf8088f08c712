import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from jobs.config import ConfigError, ReaderConfig
from jobs.reader import list_inputs
from schemas.stream import INPUT_SCHEMA


def _put(endpoint, bucket, key, body=b"x"):
    boto3.client("s3", endpoint_url=endpoint).put_object(Bucket=bucket, Key=key, Body=body)


def test_s3_prefix_recursive_with_unicode_and_spaces(s3_server, s3_bucket):
    for key in ("v/a.mp4", "v/sub dir/ü b.MKV", "v/deep/x/c.webm", "v/notes.txt", "v/d.mp4.part", "other/e.mp4"):
        _put(s3_server, s3_bucket, key, b"12345")
    t = list_inputs(ReaderConfig(inputs=(f"s3://{s3_bucket}/v/",)))
    assert t.schema == INPUT_SCHEMA
    uris = t.column("uri").to_pylist()
    assert uris == sorted([f"s3://{s3_bucket}/v/a.mp4", f"s3://{s3_bucket}/v/sub dir/ü b.MKV",
                           f"s3://{s3_bucket}/v/deep/x/c.webm"])
    assert t.column("source_size").to_pylist() == [5, 5, 5]
    assert all(e and '"' not in e for e in t.column("source_etag").to_pylist())
    assert t.column("source_mtime").null_count == 0
    assert t.column("video_id").to_pylist() == [schemas.video_id(u) for u in uris]
    # same prefix without the trailing slash, plus include/exclude globs
    t2 = list_inputs(ReaderConfig(inputs=(f"s3://{s3_bucket}/v",), include=("*.mp4", "*.webm"),
                                  exclude=("*/deep/*",)))
    assert t2.column("uri").to_pylist() == [f"s3://{s3_bucket}/v/a.mp4"]


def test_manifests_local_and_s3(s3_server, s3_bucket, tmp_path):
    (tmp_path / "vids").mkdir()
    (tmp_path / "vids" / "a.mp4").write_bytes(b"1")
    (tmp_path / "list.txt").write_text(f"# comment\nvids/a.mp4\n\ns3://{s3_bucket}/missing.mp4\nvids/a.mp4\n")
    t = list_inputs(ReaderConfig(inputs=(str(tmp_path / "list.txt"),)))
    assert t.column("uri").to_pylist() == sorted([str(tmp_path / "vids" / "a.mp4"), f"s3://{s3_bucket}/missing.mp4"])
    assert t.column("status").null_count == 2  # existence is checked by the decode tasks
    pq.write_table(pa.table({"uri": ["clips/b.mov", f"s3://{s3_bucket}/x y.avi"], "n": [1, 2]}),
                   tmp_path / "m.parquet")
    _put(s3_server, s3_bucket, "man/m.parquet", (tmp_path / "m.parquet").read_bytes())
    _put(s3_server, s3_bucket, "man/m.csv", b"uri,other\nrel/c.ts,1\n")
    t = list_inputs(ReaderConfig(inputs=(f"s3://{s3_bucket}/man/m.parquet", f"s3://{s3_bucket}/man/m.csv")))
    assert t.column("uri").to_pylist() == sorted([f"s3://{s3_bucket}/man/clips/b.mov", f"s3://{s3_bucket}/x y.avi",
                                                  f"s3://{s3_bucket}/man/rel/c.ts"])


def test_local_folder_and_errors(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    for name in ("d/a.mp4", "d/e/b.3gp", "d/e/readme.md"):
        (tmp_path / name).write_bytes(b"abc")
    t = list_inputs(ReaderConfig(inputs=(str(tmp_path / "d"), str(tmp_path / "d" / "a.mp4"))))
    assert t.column("uri").to_pylist() == [str(tmp_path / "d/a.mp4"), str(tmp_path / "d/e/b.3gp")]
    assert t.column("source_size").to_pylist() == [3, 3]
    with pytest.raises(ConfigError, match="no such folder"):
        list_inputs(ReaderConfig(inputs=(str(tmp_path / "nope"),)))
    with pytest.raises(ConfigError, match="manifest not found"):
        list_inputs(ReaderConfig(inputs=(str(tmp_path / "nope.txt"),)))
    (tmp_path / "bad.csv").write_text("path\nx.mp4\n")
    with pytest.raises(ConfigError, match="no 'uri' column"):
        list_inputs(ReaderConfig(inputs=(str(tmp_path / "bad.csv"),)))
    # a single missing video file is still an input (it gets a failed status row later)
    t = list_inputs(ReaderConfig(inputs=(str(tmp_path / "gone.mp4"),)))
    assert t.num_rows == 1
