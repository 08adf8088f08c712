"""Faults with real components: each run must end with every input exactly once and tables equal to a
clean run. S3 (moto) is reached only through a fault-injecting proxy on loopback (tests/s3_proxy.py).
S3 faults, two runs at once and a killed driver run with one writer (the driver writes) and with
``writer.writers = 2`` (write tasks write the chunks, the driver commits them: xclip_store.pooled)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import numpy as np
import pytest

import schemas
from xclip_cli import EXIT_LOCKED, EXIT_OK
from jobs.runner import index_videos
from tests.fault_points import KILLED, run_killed
from tests.jobs_helpers import read_lance
from tests.s3_proxy import FaultyS3Proxy

CLI = str(Path(sys.executable).parent / "xclip-index")
NUM_VIDEOS = 8
OPTS = {"encoder": {"batch_size": 4}}
POOL = {"writers": 2, "chunk_rows": 2}  # the write pool, with several chunks of each table in flight


@pytest.fixture(scope="module")
def proxy(s3_server):
    with FaultyS3Proxy(s3_server, seed=7) as p:
        old = os.environ["AWS_ENDPOINT_URL"]
        os.environ["AWS_ENDPOINT_URL"] = p.url  # before Ray starts: its workers go through the proxy too
        try:
            yield p
        finally:
            os.environ["AWS_ENDPOINT_URL"] = old


@pytest.fixture(scope="module")
def ray_address(proxy):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False)  # our own, never a `ray start` head nearby
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory, proxy):
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.video.synth import write_video

    root = tmp_path_factory.mktemp("faults")
    model = str(write_random_checkpoint(root / "model", preset="tiny", num_frames=4))
    videos = root / "videos"
    s3 = boto3.client("s3", endpoint_url=proxy.url)
    bucket = "faults-bucket"
    s3.create_bucket(Bucket=bucket)
    for i in range(NUM_VIDEOS):
        write_video(videos / f"v{i}.mp4", num_frames=30 + 15 * (i % 3), width=32, height=32, fps=15)
        s3.upload_file(str(videos / f"v{i}.mp4"), bucket, f"in/v{i}.mp4")
    (videos / "broken.mp4").write_bytes(b"not a video")
    s3.put_object(Bucket=bucket, Key="in/broken.mp4", Body=b"not a video")
    configs = {}  # per writer.writers; a short lease, so a killed driver's lease goes stale within the test
    for writers in (1, 2):
        configs[writers] = root / f"job-w{writers}.toml"
        configs[writers].write_text(f"[writer]\nlease_heartbeat_s = 0.5\nlease_stale_after_s = 2.0\nchunk_rows = 1\n"
                                    f"writers = {writers}\n")
    return {"model": model, "videos": str(videos), "bucket": bucket, "config": {k: str(v) for k, v in configs.items()},
            "root": root}


@pytest.fixture(scope="module")
def clean(data, ray_address):
    out = str(data["root"] / "clean")
    index_videos(data["videos"], out, data["model"], run_id="clean", **OPTS)
    return snapshot(out)


def snapshot(output: str) -> dict:
    """Rows by file name (so local and S3 runs compare): videos (status, segments), segment embeddings."""
    videos = read_lance(output, schemas.VIDEOS_TABLE).to_pylist()
    segments = read_lance(output, schemas.SEGMENTS_TABLE).to_pylist()
    ids = [v["video_id"] for v in videos]
    seg_ids = [s["segment_id"] for s in segments]
    assert len(ids) == len(set(ids)) == NUM_VIDEOS + 1, "every input exactly once"
    assert len(seg_ids) == len(set(seg_ids)), "no duplicate segment"
    name = {v["video_id"]: v["uri"].rsplit("/", 1)[-1] for v in videos}
    return {"videos": {name[v["video_id"]]: (v["status"], v["num_segments"]) for v in videos},
            "segments": {(name[s["video_id"]], s["segment_index"]): np.asarray(s["embedding"]) for s in segments}}


def assert_equal(got: dict, want: dict) -> None:
    assert got["videos"] == want["videos"]
    assert sorted(got["segments"]) == sorted(want["segments"])
    for k, v in want["segments"].items():
        np.testing.assert_allclose(got["segments"][k], v, atol=1e-5)


def _argv(data, output, *extra, ray_address, writers=1) -> list[str]:
    return ["run", "--input", data["videos"], "--output", output, "--model", data["model"], "--batch-size", "4",
            "--config", data["config"][writers], "--ray-address", ray_address, *extra]


def _cli(data, output, *extra, ray_address, writers=1):
    return subprocess.Popen([CLI, *_argv(data, output, *extra, ray_address=ray_address, writers=writers)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("writers", [1, 2])
def test_s3_failing_ten_percent_of_requests(data, clean, proxy, writers):
    """writers=2: the write tasks (Ray workers, through the proxy too) retry their Parquet and Lance
    writes, the driver its commits."""
    out = f"s3://{data['bucket']}/index-w{writers}"
    before = dict(proxy.counts)
    proxy.fail_rate = 0.10
    try:
        summary = index_videos(f"s3://{data['bucket']}/in/", out, data["model"], run_id=f"flaky-w{writers}", **OPTS,
                               writer=POOL if writers > 1 else {})
    finally:
        proxy.fail_rate = 0.0
    faults = sum(proxy.counts[k] - before[k] for k in ("503", "500", "dropped"))
    assert faults >= 5, proxy.counts  # the run really went through failures
    assert summary.counts["ok"] == NUM_VIDEOS and summary.counts["failed"] == 1
    if writers > 1:  # the chunks really went through write tasks, several at once
        pool = summary.tables["write_pool"]
        assert pool["tasks"] == pool["chunks"] >= 6 and pool["max_seen_in_flight"] >= 2, pool
    assert_equal(snapshot(out), clean)


@pytest.mark.slow
@pytest.mark.parametrize("writers", [1, 2])
def test_two_runs_at_once_one_refuses(data, clean, ray_address, writers):
    out = str(data["root"] / f"twice-w{writers}")
    procs = [_cli(data, out, ray_address=ray_address, writers=writers) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [EXIT_OK, EXIT_LOCKED], results
    refused = next(err for code, err in results if code == EXIT_LOCKED)
    assert "is in use by run" in refused and "Traceback" not in refused
    assert_equal(snapshot(out), clean)
    assert len(os.listdir(os.path.join(out, "runs"))) == 2  # the refused run wrote nothing (json + html)
    if writers > 1:
        manifest = next(f for f in os.listdir(os.path.join(out, "runs")) if f.endswith(".json"))
        with open(os.path.join(out, "runs", manifest)) as f:
            assert json.load(f)["tables"]["write_pool"]["tasks"] > 0


# The driver dies (os._exit, no cleanup: tests/fault_points.py) before its 14th Lance commit: with
# chunks of one row, after the first videos chunk (its thumbnails, segments with their placeholder
# videos rows, then its videos rows: at most 13 commits for a batch of 4 clips) and long before the
# last (some 45 commits); with writers=2 while write tasks are in flight.
KILL_AT = ("lance.dataset:LanceDataset.commit", 14)


@pytest.mark.slow
@pytest.mark.parametrize("writers", [1, 2])
def test_driver_killed_mid_run_then_rerun(data, clean, ray_address, writers):
    out = str(data["root"] / f"killed-w{writers}")
    proc = run_killed([KILL_AT], _argv(data, out, "--run-id", "killed", ray_address=ray_address, writers=writers))
    assert proc.returncode == KILLED, proc.stderr[-2000:]
    with open(os.path.join(out, "runs", "killed.json")) as f:
        assert json.load(f)["status"] == "running"
    committed = [v for v in read_lance(out, schemas.VIDEOS_TABLE).to_pylist() if v["status"] != schemas.STATUS_INDEXING]
    assert 0 < len(committed) < NUM_VIDEOS + 1  # killed mid-way: some videos committed, not all
    time.sleep(2.5)  # the dead driver's lease goes stale (lease_stale_after_s = 2 in the test config)
    summary = index_videos(data["videos"], out, data["model"], run_id="resumed", config_file=data["config"][writers],
                           **OPTS)
    c = summary.counts
    assert c["unchanged"] >= 1 and c["ok"] + c["unchanged"] == NUM_VIDEOS and c["failed"] == 1
    assert ("write_pool" in summary.tables) == (writers > 1)
    with open(os.path.join(out, "runs", "killed.json")) as f:
        assert json.load(f)["status"] == "interrupted"
    assert_equal(snapshot(out), clean)
    statuses = read_lance(out, schemas.VIDEOS_TABLE).column("status").to_pylist()
    assert schemas.STATUS_INDEXING not in statuses


@pytest.mark.slow
def test_encoder_actor_and_decode_worker_killed_during_a_run(data, clean):
    """Ray workers of this module's own session (children of this process) are SIGKILLed mid-run."""
    import threading

    import psutil

    killed = []

    def kill_when_seen(title: str) -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not killed_all.is_set():
            for p in psutil.Process(os.getpid()).children(recursive=True):
                try:
                    if title in " ".join(p.cmdline()):
                        time.sleep(0.5)
                        p.send_signal(signal.SIGKILL)
                        killed.append(title)
                        return
                except psutil.Error:
                    continue
            time.sleep(0.05)

    killed_all = threading.Event()
    threads = [threading.Thread(target=kill_when_seen, args=(t,), daemon=True)
               for t in ("MapBatches(Encoder)", "decode_batch")]
    for t in threads:
        t.start()
    out = str(data["root"] / "workers-killed")
    try:
        summary = index_videos(data["videos"], out, data["model"], run_id="workers-killed", **OPTS)
    finally:
        killed_all.set()
        for t in threads:
            t.join()
    assert "MapBatches(Encoder)" in killed, killed  # the actor died mid-run at least
    assert summary.counts["ok"] == NUM_VIDEOS
    assert_equal(snapshot(out), clean)
