"""The job on a two-node Ray cluster (ray.cluster_utils.Cluster) joined by address."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import schemas
from jobs.config import DecoderConfig
from jobs.decoder import decode_config
from jobs.runner import index_videos
from tests.jobs_helpers import make_corpus, read_lance, reference_clip_embeddings



@pytest.mark.parametrize("resources, expect", [
    ({"CPU": 2.0}, (1, 0.0, 0.0, 1.0, 1)),      # the 2-core box: the actor books no core, both decode
    ({"CPU": 1.0}, (1, 0.0, 0.0, 0.5, 1)),      # decode tasks never book every CPU either
    ({"CPU": 16.0}, (4, 0.0, 0.0, 1.0, 2)),     # half the CPUs' worth of encoder threads
    ({"CPU": 16.0, "GPU": 2.0}, (2, 1.0, 1.0, 1.0, 1)),  # one actor per GPU, one core each
])
def test_plan_resources(resources, expect):
    from jobs.cluster import plan_resources
    from jobs.config import EncoderConfig

    plan = plan_resources(EncoderConfig(model="m"), DecoderConfig(), resources)
    assert (plan.num_actors, plan.actor_cpus, plan.actor_gpus, plan.decode_cpus, plan.torch_threads) == expect
    assert plan.num_actors * plan.actor_cpus + plan.decode_cpus <= resources["CPU"]


def test_plan_resources_respects_settings():
    from jobs.cluster import plan_resources
    from jobs.config import EncoderConfig

    plan = plan_resources(EncoderConfig(model="m", device="cpu"), DecoderConfig(), {"CPU": 8.0, "GPU": 1.0})
    assert plan.actor_gpus == 0.0 and plan.num_actors == 2
    # a CPU booking asked for is kept, but never so large that no decode task fits
    plan = plan_resources(EncoderConfig(model="m", num_cpus=3.0), DecoderConfig(), {"CPU": 8.0})
    assert (plan.num_actors, plan.actor_cpus, plan.torch_threads) == (1, 3.0, 3)
    plan = plan_resources(EncoderConfig(model="m", num_cpus=2.0, num_actors=2), DecoderConfig(), {"CPU": 2.0})
    assert plan.actor_cpus == 0.5 and plan.decode_cpus == 1.0
    with pytest.raises(RuntimeError, match="no GPU"):
        plan_resources(EncoderConfig(model="m", device="cuda"), DecoderConfig(), {"CPU": 8.0})


def test_plan_keeps_cpus_for_the_write_tasks():
    """writer.writers > 1: a CPU per write task (at most half the cluster) is kept out of the decode
    and encoder sizing (today: planned on every CPU, the write tasks waited for decode tasks to end)."""
    from jobs.cluster import plan_resources
    from jobs.config import EncoderConfig

    enc = EncoderConfig(model="m")
    one = plan_resources(enc, DecoderConfig(), {"CPU": 8.0}, writers=1)
    assert (one.write_cpus, one.num_actors) == (0.0, 2)
    plan = plan_resources(enc, DecoderConfig(), {"CPU": 8.0}, writers=2)
    assert (plan.write_cpus, plan.write_task_cpus, plan.writers) == (2.0, 1.0, 2)
    assert (plan.num_actors, plan.torch_threads, plan.decode_cpus) == (1, 2, 1.0)  # sized on 6 CPUs
    assert plan.decode_clips_per_s == 6 * DecoderConfig().cpu_clips_per_s
    # the 2-core box: half for 4 writers (a quarter CPU each), the other half for decoding
    plan = plan_resources(enc, DecoderConfig(), {"CPU": 2.0}, writers=4)
    assert (plan.write_cpus, plan.write_task_cpus, plan.decode_cpus, plan.num_actors) == (1.0, 0.25, 0.5, 1)
    assert plan.num_actors * plan.actor_cpus + plan.decode_cpus + plan.write_cpus <= 2.0
    # GPU actors: their cores and the write tasks' come off the decode cores
    plan = plan_resources(enc, DecoderConfig(), {"CPU": 16.0, "GPU": 2.0}, writers=4)
    assert plan.decode_clips_per_s == (16 - 4 - 2) * DecoderConfig().cpu_clips_per_s and plan.write_cpus == 4.0
    assert plan.num_actors * plan.actor_cpus + plan.decode_cpus + plan.write_cpus <= 16.0


def test_plan_asks_for_gpus_the_autoscaler_must_start():
    """0 GPUs now but max_gpu_actors: a GPU pool that starts at 1 actor (the pending actor is what makes
    the autoscaler start a GPU node) and grows up to the GPUs the decode cores can feed."""
    from jobs.cluster import plan_resources
    from jobs.config import EncoderConfig

    enc = EncoderConfig(model="m", max_gpu_actors=3, gpu_clips_per_s=36.0)  # 18 clips/s per core: 2 cores per GPU
    plan = plan_resources(enc, DecoderConfig(), {"CPU": 4.0})
    assert (plan.num_actors, plan.max_actors, plan.actor_gpus, plan.actor_cpus) == (1, 2, 1.0, 1.0)
    assert plan.pool_size == (1, 2) and plan.decode_clips_per_s == 4 * 18.0
    # GPUs present now each get an actor; the autoscaler is asked for more only while decode can feed them
    plan = plan_resources(EncoderConfig(model="m", max_gpu_actors=8), DecoderConfig(), {"CPU": 16.0, "GPU": 2.0})
    assert plan.pool_size == (2, 2)  # 14 decode cores x 18 clips/s cannot feed one 5000 clips/s GPU
    plan = plan_resources(dataclasses.replace(enc, max_gpu_actors=8), DecoderConfig(), {"CPU": 16.0, "GPU": 1.0})
    assert plan.pool_size == (1, 8)  # 15 cores x 18 / 36 clips/s per GPU: 8 GPUs fed
    plan = plan_resources(dataclasses.replace(enc, max_gpu_actors=8, gpu_clips_per_s=90.0), DecoderConfig(),
                          {"CPU": 16.0, "GPU": 1.0})
    assert plan.pool_size == (1, 3)  # ceil(15 x 18 / 90) = 3
    # device cpu never asks for a GPU, whatever max_gpu_actors says
    plan = plan_resources(EncoderConfig(model="m", device="cpu", max_gpu_actors=4), DecoderConfig(), {"CPU": 4.0})
    assert plan.actor_gpus == 0.0
    with pytest.raises(RuntimeError, match="--max-gpus"):
        plan_resources(EncoderConfig(model="m", device="cuda"), DecoderConfig(), {"CPU": 8.0})
    assert plan_resources(EncoderConfig(model="m", device="cuda", max_gpu_actors=1), DecoderConfig(),
                          {"CPU": 8.0}).actor_gpus == 1.0


def test_plan_pins_decode_to_decode_nodes_and_prices_the_transfer():
    from jobs.cluster import DECODE_RESOURCE, plan_resources
    from jobs.config import EncoderConfig

    res = {"CPU": 24.0, "GPU": 1.0, DECODE_RESOURCE: 16.0}
    plan = plan_resources(EncoderConfig(model="m"), DecoderConfig(), res, clip_bytes=8 * 224 * 224 * 3)
    assert plan.decode_remote_args() == {"resources": {DECODE_RESOURCE: 1.0}}
    assert plan.decode_clips_per_s == 16 * 18.0 and plan.encode_clips_per_s == 5000.0
    assert plan.transfer_mb_s == pytest.approx(16 * 18.0 * 8 * 224 * 224 * 3 / 1e6)
    assert plan_resources(EncoderConfig(model="m"), DecoderConfig(), {"CPU": 8.0}).decode_remote_args() == {}


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


@pytest.mark.slow
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
    assert summary.counts == {"ok": len(corpus["ok"]), "failed": len(corpus["failed"]), "skipped": 0,
                              "unchanged": 0, "deleted": 0}
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


def test_planner_settings_from_the_command_line_and_toml(tmp_path):
    from xclip_cli.cli import parser as _parser
    from xclip_cli.run import config_from_args
    from jobs.config import ConfigError, build_config

    base = ["run", "--input", "i", "--output", "o", "--model", "m"]
    assert config_from_args(_parser().parse_args(base + ["--max-gpus", "4"])).encoder.max_gpu_actors == 4
    assert config_from_args(_parser().parse_args(base)).encoder.max_gpu_actors == 0
    toml = tmp_path / "job.toml"
    toml.write_text("[encoder]\ngpu_clips_per_s = 900.0\nmax_gpu_actors = 2\n[decoder]\ncpu_clips_per_s = 6.0\n")
    cfg = config_from_args(_parser().parse_args(base + ["--config", str(toml)]))
    assert (cfg.encoder.gpu_clips_per_s, cfg.encoder.max_gpu_actors, cfg.decoder.cpu_clips_per_s) == (900.0, 2, 6.0)
    for stage, key, bad in (("encoder", "max_gpu_actors", -1), ("encoder", "gpu_clips_per_s", 0.0),
                            ("decoder", "cpu_clips_per_s", -2.0)):
        with pytest.raises(ConfigError, match=f"{stage}.{key}"):
            overrides = {"reader": {"inputs": ["i"]}, "writer": {"output": "o"}, "encoder": {"model": "m"}}
            overrides[stage] = {**overrides.get(stage, {}), key: bad}
            build_config(None, overrides)
