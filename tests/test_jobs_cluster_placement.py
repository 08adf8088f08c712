"""jobs.cluster on a mixed multi-node Ray cluster (ray.cluster_utils.Cluster): decode tasks on the CPU
decode node, encoder actors on the "GPU" node, and a GPU pool that asks for a GPU node before one exists.

The GPU node is added by the test while the job waits for it, standing in for the autoscaler (Ray's
``AutoscalingCluster`` needs a fake-provider example config the Ray wheel does not ship, and it runs
a forced ``ray stop``, which would kill every Ray process of the user). Torch sees no CUDA here, so the
actor asks Ray for a GPU and runs on CPU (``encoder.device = auto``). Where each piece ran is read from
Ray's own state API (task and actor node ids), not from test-only columns.
"""
from __future__ import annotations

import threading
import time

import pytest

import schemas
from jobs.cluster import DECODE_RESOURCE
from tests.jobs_helpers import read_lance

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    decode_node = c.add_node(num_cpus=2, resources={DECODE_RESOURCE: 2})
    c.wait_for_nodes()
    ray.init(address=c.address)
    yield c, decode_node
    ray.shutdown()
    c.shutdown()


def _pending_gpu_actor() -> bool:
    from ray.util.state import list_actors

    return any("Encoder" in (a.class_name or "") for a in list_actors(
        filters=[("state", "=", "PENDING_CREATION")], detail=True, raise_on_missing_output=False))


def test_mixed_cluster_places_stages_and_asks_for_the_gpu(cluster, tmp_path):
    import ray
    from ray.util.state import list_actors, list_tasks

    from jobs.runner import index_videos
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.video.synth import write_video

    c, decode_node = cluster
    model = str(write_random_checkpoint(tmp_path / "model", preset="tiny", num_frames=4))
    videos = tmp_path / "videos"
    for i in range(4):
        write_video(videos / f"v{i}.mp4", num_frames=60, width=48, height=40, fps=15)
    (videos / "bad.mp4").write_bytes(b"\x00" * 100)
    assert ray.cluster_resources().get("GPU", 0) == 0
    result = {}

    def job():
        try:
            result["summary"] = index_videos([str(videos)], str(tmp_path / "out"), model,
                                             encoder={"batch_size": 4, "max_gpu_actors": 1})
        except BaseException as e:  # noqa: BLE001  re-raised in the test thread
            result["error"] = e

    t = threading.Thread(target=job, daemon=True)
    t.start()
    deadline = time.monotonic() + 120
    while not _pending_gpu_actor():  # the pool asks for a GPU that is not there: what an autoscaler acts on
        assert t.is_alive() and time.monotonic() < deadline, result or "no GPU actor was ever requested"
        time.sleep(0.5)
    gpu_node = c.add_node(num_cpus=1, num_gpus=1)  # "the autoscaler" starts a GPU node
    t.join(timeout=240)
    assert not t.is_alive(), "the job did not finish once the GPU node came up"
    if "error" in result:
        raise result["error"]
    assert result["summary"].counts == {"ok": 4, "failed": 1, "skipped": 0, "unchanged": 0, "deleted": 0}
    rows = read_lance(str(tmp_path / "out"), schemas.SEGMENTS_TABLE).to_pylist()
    assert rows and all(r["embedding"] is not None for r in rows)

    decode_tasks = [x for x in list_tasks(detail=True, limit=10000, raise_on_missing_output=False)
                    if "decode_batch" in (x.name or "") and x.node_id]
    actors = [a for a in list_actors(detail=True, limit=10000, raise_on_missing_output=False)
              if "Encoder" in (a.class_name or "") and a.node_id]
    assert decode_tasks and actors
    nodes = {"head": c.head_node.node_id, "decode": decode_node.node_id, "gpu": gpu_node.node_id}
    where = sorted({(x.name, x.type, x.state, next(k for k, v in nodes.items() if v == x.node_id))
                    for x in decode_tasks})
    finished = {x.node_id for x in decode_tasks if x.state == "FINISHED"}
    assert finished == {decode_node.node_id}, where  # the tasks that produced the rows ran on the decode node
    assert {a.node_id for a in actors} == {gpu_node.node_id}
