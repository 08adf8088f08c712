"""The job on a two-node Ray cluster (ray.cluster_utils.Cluster) joined by address."""
from __future__ import annotations

import numpy as np
import pytest

import schemas
from jobs.config import DecoderConfig
from jobs.decoder import decode_config
from jobs.runner import index_videos
from tests.jobs_helpers import make_corpus, read_lance, reference_clip_embeddings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(s3_server):
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


def test_two_node_run_gives_the_reference_rows(cluster, s3_server, s3_bucket, tmp_path):
    import ray
    from xclip_core.checkpoint import write_random_checkpoint

    model = str(write_random_checkpoint(tmp_path / "model", preset="tiny", num_frames=4))
    corpus = make_corpus(s3_server, s3_bucket, tmp_path / "corpus")
    output = f"s3://{s3_bucket}/cluster-out"
    summary = index_videos(corpus["inputs"], output, model, ray_address=cluster.address,
                           encoder={"batch_size": 4})
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    assert ray.cluster_resources()["CPU"] == 2
    assert summary.counts == {"ok": len(corpus["ok"]), "failed": len(corpus["failed"]), "skipped": 0}
    videos = {v["uri"]: v for v in read_lance(output, schemas.VIDEOS_TABLE).to_pylist()}
    segments = read_lance(output, schemas.SEGMENTS_TABLE).to_pylist()
    assert set(videos) == set(corpus["ok"]) | set(corpus["failed"])
    dcfg = decode_config(DecoderConfig(), frames_per_clip=4, crop_size=32, shortest_edge=32)
    for uri in corpus["ok"]:
        emb, _ = reference_clip_embeddings(model, uri, dcfg)
        got = sorted((s for s in segments if s["uri"] == uri), key=lambda s: s["segment_index"])
        assert videos[uri]["num_segments"] == len(got) == len(emb)
        np.testing.assert_allclose(np.array([s["embedding"] for s in got]), emb, atol=2e-5)
        mean = emb.mean(0)
        np.testing.assert_allclose(videos[uri]["embedding"], mean / np.linalg.norm(mean), atol=2e-5)
    for uri in corpus["failed"]:
        assert videos[uri]["status"] == "failed" and videos[uri]["error"]
