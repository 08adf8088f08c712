import boto3

from xclip_core import storage


def test_s3_roundtrip_through_every_client(s3_bucket, s3_server, tmp_path):
    boto3.client("s3", endpoint_url=s3_server).put_object(Bucket=s3_bucket, Key="a b/ü.txt", Body=b"hello")
    uri = f"s3://{s3_bucket}/a b/ü.txt"
    assert storage.exists(uri)
    assert storage.read_bytes(uri) == b"hello"
    fs, path = storage.pyarrow_filesystem(uri)
    with fs.open_input_file(path) as f:
        assert f.read() == b"hello"
    assert not storage.exists(f"s3://{s3_bucket}/missing")


def test_local_paths(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"abc")
    assert storage.read_bytes(str(p)) == b"abc"
    assert storage.lancedb_storage_options(str(tmp_path)) == {}
    assert storage.join("s3://b/p/", "lancedb") == "s3://b/p/lancedb"
