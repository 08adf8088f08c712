"""Relative manifest entries stay inside the manifest's folder (local) or bucket (S3): ``../``
out of it is a one-line ConfigError (exit 2), not an input from elsewhere on the disk or another bucket."""
from __future__ import annotations

import boto3
import pytest

from jobs.config import ConfigError, ReaderConfig
from jobs.reader import list_inputs


def test_local_relative_entries_cannot_climb_out(tmp_path):
    (tmp_path / "m" / "sub").mkdir(parents=True)
    (tmp_path / "secret.mp4").write_bytes(b"1")
    (tmp_path / "m" / "list.txt").write_text("sub/../ok.mp4\n../secret.mp4\n")
    with pytest.raises(ConfigError, match=r"'\.\./secret\.mp4' leaves the manifest's folder"):
        list_inputs(ReaderConfig(inputs=(str(tmp_path / "m" / "list.txt"),)))
    (tmp_path / "m" / "list.txt").write_text(f"sub/../ok.mp4\n{tmp_path / 'secret.mp4'}\n")  # written in full: fine
    uris = list_inputs(ReaderConfig(inputs=(str(tmp_path / "m" / "list.txt"),))).column("uri").to_pylist()
    assert sorted(uris) == sorted([str(tmp_path / "m" / "ok.mp4"), str(tmp_path / "secret.mp4")])


def test_s3_relative_entries_cannot_leave_the_bucket(s3_server, s3_bucket):
    s3 = boto3.client("s3", endpoint_url=s3_server)
    for body in (b"../../other-bucket/x.mp4\n", b"../../../x.mp4\n"):
        s3.put_object(Bucket=s3_bucket, Key="man/list.txt", Body=body)
        with pytest.raises(ConfigError, match="leaves the manifest's bucket"):
            list_inputs(ReaderConfig(inputs=(f"s3://{s3_bucket}/man/list.txt",)))
    s3.put_object(Bucket=s3_bucket, Key="man/list.txt", Body=b"a/../b.mp4\n../top.mp4\n")  # within the bucket
    uris = list_inputs(ReaderConfig(inputs=(f"s3://{s3_bucket}/man/list.txt",))).column("uri").to_pylist()
    assert sorted(uris) == [f"s3://{s3_bucket}/man/b.mp4", f"s3://{s3_bucket}/top.mp4"]
