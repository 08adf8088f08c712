"""A worker node removed mid-run from a multi-node ray.cluster_utils.Cluster: every input exactly once,
tables equal to a clean run on the same cluster."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from jobs.runner import index_videos
from tests.test_jobs_faults import snapshot, assert_equal
import tests.test_jobs_faults as faults

NUM_VIDEOS = 12
OPTS = {"encoder": {"batch_size": 4}, "writer": {"chunk_rows": 1}}  # commits video by video


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c, worker
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.video.synth import write_video

    root = tmp_path_factory.mktemp("node")
    videos = root / "videos"
    for i in range(NUM_VIDEOS):
        write_video(videos / f"v{i}.mp4", num_frames=60 + 15 * (i % 3), width=32, height=32, fps=15)
    (videos / "broken.mp4").write_bytes(b"not a video")
    return {"model": str(write_random_checkpoint(root / "model", preset="tiny", num_frames=4)),
            "videos": str(videos), "root": root}


@pytest.mark.slow
def test_worker_node_removed_mid_run(cluster, data, monkeypatch):
    import ray

    c, worker = cluster
    monkeypatch.setattr(faults, "NUM_VIDEOS", NUM_VIDEOS)  # snapshot() checks every input exactly once
    clean_out = str(data["root"] / "clean")
    index_videos(data["videos"], clean_out, data["model"], ray_address=c.address, run_id="clean", **OPTS)
    clean = snapshot(clean_out)

    out = str(data["root"] / "node-lost")
    committed = Path(out) / "parquet" / "videos"
    removed = threading.Event()
    finished = threading.Event()

    def remove_when_running():
        deadline = time.time() + 120
        while time.time() < deadline and not finished.is_set():
            if committed.exists() and any(committed.iterdir()):  # some videos are done, others are not
                c.remove_node(worker)
                removed.set()
                return
            time.sleep(0.02)

    t = threading.Thread(target=remove_when_running, daemon=True)
    t.start()
    try:
        summary = index_videos(data["videos"], out, data["model"], ray_address=c.address, run_id="node-lost",
                               **OPTS)
    finally:
        finished.set()
        t.join()
    assert removed.is_set(), "the run ended before the node could be removed"
    assert len([n for n in ray.nodes() if n["Alive"]]) == 1
    assert summary.counts["ok"] + summary.counts["unchanged"] == NUM_VIDEOS and summary.counts["failed"] == 1
    assert_equal(snapshot(out), clean)
