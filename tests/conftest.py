"""Shared fixtures: a real S3 server on loopback (moto's ThreadedMotoServer)."""
from __future__ import annotations

import contextlib
import os
import socket
import uuid

import pytest

# Never let a test reach real AWS or a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@contextlib.contextmanager
def own_ray(**kwargs):
    """This test module's own local Ray (never a `ray start` head that happens to run on the
    machine), started after the S3 server so its workers inherit the AWS environment."""
    import ray

    if ray.is_initialized():  # another module's session: start ours with this module's environment
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, **kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_session(s3_server):
    """The requesting module's own local Ray (``own_ray``), started after the S3 server and stopped
    by this fixture at the end of that module (module scope: one per test module, never shared).
    A module whose Ray needs something else (no S3, worker settings) defines its own."""
    with own_ray():
        yield


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random tiny X-CLIP checkpoint (4 frames per clip), written once per requesting module."""
    from xclip_core.checkpoint import write_random_checkpoint

    return str(write_random_checkpoint(tmp_path_factory.mktemp("model") / "tiny-xclip", preset="tiny", num_frames=4))


@pytest.fixture(scope="session")
def s3_server():
    """Start moto's S3 server on 127.0.0.1 and point the AWS env vars at it.

    Yields the endpoint URL. Everything (boto3, s3fs, pyarrow via
    ``xclip_core.storage``, LanceDB, Ray workers started later) reaches it
    through the standard environment variables, as production would.
    """
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ALLOW_HTTP": "true",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket on the loopback S3 server; yields its name."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def cli_index(tmp_path_factory):
    """A tiny real index written once per session by ``xclip-index run`` (tests/cli_helpers.py);
    tests that change it work on a copy (``shutil.copytree``)."""
    from tests.cli_helpers import make_index

    return make_index(tmp_path_factory.mktemp("cli-index"))
