import datetime as dt
import json

import pyarrow as pa
import pytest

import schemas
from schemas import output, stream
from schemas.manifest import RunManifest


def test_video_id_is_stable_and_normalised(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert schemas.video_id("s3a://b/k é.mp4") == schemas.video_id("s3://b/k é.mp4")
    assert schemas.video_id("clip.mp4") == schemas.video_id(str(tmp_path / "clip.mp4"))
    assert schemas.video_id("file://" + str(tmp_path / "clip.mp4")) == schemas.video_id("clip.mp4")
    assert schemas.video_id("s3://b/a.mp4") != schemas.video_id("s3://b/b.mp4")
    assert len(schemas.video_id("s3://b/a.mp4")) == 40
    assert schemas.segment_id("abc", 7) == "abc:000007"
    assert schemas.normalize_uri("s3://b/with space/ü.mp4") == "s3://b/with space/ü.mp4"


@pytest.mark.parametrize("table", [schemas.VIDEOS_TABLE, schemas.SEGMENTS_TABLE])
def test_schemas_carry_version_and_vector(table):
    s = schemas.schema_for(table, 16)
    assert s.metadata[b"xclip_index.schema_version"] == schemas.SCHEMA_VERSION.encode()
    assert s.metadata[b"xclip_index.table"] == table.encode()
    assert s.field("embedding").type == pa.list_(pa.float32(), 16)
    assert output.schema_dim(s) == 16
    key = schemas.VIDEOS_KEY if table == schemas.VIDEOS_TABLE else schemas.SEGMENTS_KEY
    assert s.names[0] == key and not s.field(key).nullable
    for col in ("uri", "labels", "label_scores", "model_id", "run_id", "indexed_at"):
        assert col in s.names
    with pytest.raises(ValueError):
        schemas.schema_for("other", 16)
    with pytest.raises(ValueError):
        schemas.schema_for(table, 0)


def test_to_table_fills_nulls_and_rejects_unknown_columns():
    s = schemas.videos_schema(3)
    now = dt.datetime.now(dt.timezone.utc)
    base = dict(video_id="v", uri="u", status="failed", error="not found", num_segments=0,
                model_id="m", label_set="l", run_id="r", indexed_at=now)
    t = schemas.to_table([base], s)
    assert t.schema == s
    assert t.column("embedding").null_count == 1
    with pytest.raises(KeyError, match="bogus"):
        schemas.to_table([dict(base, bogus=1)], s)
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError, ValueError)):
        schemas.to_table([dict(base, embedding=[1.0, 2.0])], s)  # wrong dimension
    schemas.check_table(t, s)
    with pytest.raises(ValueError, match="schema mismatch"):
        schemas.check_table(t.drop_columns(["codec"]), s)


def test_stream_schemas_share_status_columns():
    dec, enc = stream.decoded_schema(), stream.encoded_schema(8, 5)
    assert stream.FRAMES in dec.names and stream.FRAMES not in enc.names
    assert enc.field("probs").type == pa.list_(pa.float32(), 5)
    for name in ("status", "error", "num_segments", "source_etag", "decode_s"):
        assert dec.field(name) == enc.field(name)
    # every videos column that describes the source comes through the stream
    for name in ("duration_s", "fps", "num_frames", "width", "height", "codec",
                 "source_size", "source_etag", "source_mtime"):
        assert dec.field(name).type == schemas.videos_schema(8).field(name).type


def test_manifest_roundtrip():
    m = RunManifest(run_id="r", package_version="0.1.0", started_at="a", finished_at="b",
                    inputs=["s3://b/"], output="s3://o", num_inputs=3, num_unchanged=0,
                    counts={"ok": 1, "failed": 1, "skipped": 1}, num_segments=4, model_source="m",
                    model_id="m@1", weights_sha256="ab", label_set={"name": "k", "sha256": "c"},
                    decode_config={}, config={}, stage_seconds={"decode": 1.0}, clips_per_s=2.0,
                    tables={}, parquet_files=[])
    back = RunManifest.from_json(m.to_json())
    assert back == m and json.loads(m.to_json())["schema_version"] == schemas.SCHEMA_VERSION
    with pytest.raises(ValueError, match="lacks"):
        RunManifest.from_json(json.dumps({"run_id": "r"}))


def test_manifest_num_partial_and_older_manifests():
    m = RunManifest(run_id="r", package_version="0.1.0", started_at="a", finished_at="b",
                    inputs=[], output="o", num_inputs=2, num_unchanged=0,
                    counts={"ok": 2, "failed": 0, "skipped": 0}, num_segments=3, model_source="m",
                    model_id="m@1", weights_sha256="ab", label_set={}, decode_config={}, config={},
                    stage_seconds={}, clips_per_s=1.0, tables={}, parquet_files=[], num_partial=1)
    d = json.loads(m.to_json())
    assert d["num_partial"] == 1 and RunManifest.from_json(m.to_json()).num_partial == 1
    del d["num_partial"]  # written before the field existed: reads as 0
    assert RunManifest.from_json(json.dumps(d)).num_partial == 0
