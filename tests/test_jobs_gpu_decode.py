"""jobs.gpu_decode: routing videos between CPU decode tasks and the GPU actor's
NVDEC, and the actor-side decode path, driven on the CPU with a real decoder
(PyAV) behind NVDEC's frame-reader contract."""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from jobs import gpu_decode
from jobs.config import DecoderConfig, EncoderConfig, JobConfig, ReaderConfig, WriterConfig
from jobs.decoder import decode_config, decode_one
from jobs.encoder import Encoder, inspect_model
from jobs.reader import _row
from schemas.stream import KIND_CLIP, KIND_NVDEC, KIND_VIDEO
from tests.test_video_nvdec import pyav_frames
from tests.video_fixtures import cached


def test_auto_share_balances_measured_capacities():
    assert gpu_decode.auto_share(64, 0) == 0.0
    # 1 GPU + 15 decode cores at 360p: 155.6 clips/s NVDEC vs 15 x 18.3 clips/s CPU
    assert gpu_decode.auto_share(16, 1) == pytest.approx(155.58 / (155.58 + 274.69), abs=1e-3)
    assert gpu_decode.auto_share(16, 2) > gpu_decode.auto_share(16, 1) > gpu_decode.auto_share(64, 1)
    assert gpu_decode.auto_share(1, 1) == 1.0  # nothing left for CPU decode tasks


def test_routing_is_stable_and_follows_the_share():
    ids = [hashlib.sha1(f"s3://b/v{i}.mp4".encode()).hexdigest() for i in range(4000)]
    for share in (0.0, 0.25, 0.7, 1.0):
        cfg = decode_config(DecoderConfig.from_settings(nvdec_share=share), frames_per_clip=8, crop_size=32, shortest_edge=32)
        routed = [gpu_decode.route_to_nvdec({"video_id": v}, cfg) for v in ids]
        assert abs(np.mean(routed) - share) <= 0.03, share
        assert routed == [gpu_decode.route_to_nvdec({"video_id": v}, cfg) for v in ids]


def test_resolve_for_cluster():
    job = JobConfig(ReaderConfig(inputs=("x",)), DecoderConfig(), EncoderConfig(model="m"), WriterConfig(output="o"))
    dcfg = decode_config(job.decoder, frames_per_clip=8, crop_size=32, shortest_edge=32)
    assert dcfg.nvdec_share is None
    cfg, d = gpu_decode.resolve_for_cluster(job, dcfg, {"CPU": 16.0, "GPU": 1.0})
    assert d.nvdec_share == gpu_decode.auto_share(16, 1) and cfg.encoder.precision == "bf16"
    cfg, d = gpu_decode.resolve_for_cluster(job, dcfg, {"CPU": 16.0})  # CPU-only: never NVDEC
    assert d.nvdec_share == 0.0 and cfg.encoder.precision == "fp32" and cfg.encoder.batch_size == 16
    forced = JobConfig(job.reader, DecoderConfig.from_settings(nvdec_share=0.5), EncoderConfig(model="m", device="cpu"),
                       job.writer)
    _, d = gpu_decode.resolve_for_cluster(forced, dcfg.with_(nvdec_share=0.5), {"CPU": 16.0, "GPU": 1.0})
    assert d.nvdec_share == 0.0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from xclip_core.checkpoint import write_random_checkpoint

    model = str(write_random_checkpoint(tmp_path_factory.mktemp("m") / "tiny", preset="tiny", num_frames=4))
    videos = cached(tmp_path_factory.getbasetemp() / "videos_nvdec")
    info = inspect_model(EncoderConfig(model=model))
    dcfg = decode_config(DecoderConfig(), frames_per_clip=info.num_frames, crop_size=info.crop_size,
                         shortest_edge=info.shortest_edge)
    return model, videos, dcfg


def _decoded(uris, dcfg):
    return pa.concat_tables([t for u in uris for t in decode_one(_row(u), dcfg)])


def test_actor_decodes_nvdec_rows_like_the_cpu_path(setup):
    model, videos, dcfg = setup
    names = ("h264_mp4", "portrait", "vfr", "hevc_mkv", "tiny", "random", "zero")
    uris = [str(videos[n]) for n in names]
    enc = Encoder(EncoderConfig(model=model, batch_size=4, device="cpu"), num_threads=1)
    enc.nvdec_read = pyav_frames
    ref = enc(_decoded(uris, dcfg.with_(nvdec_share=0.0))).to_pylist()
    routed = _decoded(uris, dcfg.with_(nvdec_share=1.0))
    assert routed.column("kind").to_pylist() == [KIND_NVDEC] * len(uris)  # nothing decoded on the CPU
    got = enc(routed).to_pylist()

    for rows in (ref, got):  # every input: exactly one status row; its clip count is right
        status = [r for r in rows if r["kind"] == KIND_VIDEO]
        assert sorted(r["uri"] for r in status) == sorted(_row(u)["uri"] for u in uris)
        for s in status:
            clips = [r for r in rows if r["kind"] == KIND_CLIP and r["uri"] == s["uri"]]
            assert s["num_segments"] == len(clips)
    by_uri = {r["uri"]: r for r in got if r["kind"] == KIND_VIDEO}
    ref_by_uri = {r["uri"]: r for r in ref if r["kind"] == KIND_VIDEO}
    for n, u in zip(names, uris):
        s, r = by_uri[_row(u)["uri"]], ref_by_uri[_row(u)["uri"]]
        assert (s["status"], s["error"], s["num_segments"]) == (r["status"], r["error"], r["num_segments"]), n
        assert r["decode_backend"] == "pyav" and r["decode_fallback"] is None
    assert by_uri[_row(uris[0])["uri"]]["decode_backend"] == "nvdec"
    tiny = by_uri[_row(str(videos["tiny"]))["uri"]]
    assert tiny["decode_backend"] == "pyav" and "outside NVDEC limits" in tiny["decode_fallback"]

    key = lambda r: (r["uri"], r["segment_index"])  # noqa: E731
    a = sorted((r for r in got if r["kind"] == KIND_CLIP), key=key)
    b = sorted((r for r in ref if r["kind"] == KIND_CLIP), key=key)
    assert [key(r) for r in a] == [key(r) for r in b] and len(a) > 4
    for x, y in zip(a, b):
        assert x["frame_timestamps"] == y["frame_timestamps"] and x["error"] is None
        cos = float(np.dot(x["embedding"], y["embedding"]))  # both L2-normalised
        assert cos >= 0.99, (key(x), cos)


def test_actor_without_nvdec_falls_back_to_cpu(setup):
    """A CPU actor handed nvdec rows (no GPU, no PyNvVideoCodec) decodes them on the CPU."""
    model, videos, dcfg = setup
    enc = Encoder(EncoderConfig(model=model, batch_size=4, device="cpu"), num_threads=1)
    rows = enc(_decoded([str(videos["h264_mp4"])], dcfg.with_(nvdec_share=1.0))).to_pylist()
    status = [r for r in rows if r["kind"] == KIND_VIDEO]
    assert len(status) == 1 and status[0]["status"] == "ok" and status[0]["decode_backend"] == "pyav"
    assert "not a CUDA device" in status[0]["decode_fallback"]
    assert status[0]["num_segments"] == sum(r["kind"] == KIND_CLIP for r in rows) > 0


def test_encoder_mixes_host_and_device_frames(setup):
    import torch

    model, _, _ = setup
    enc = Encoder(EncoderConfig(model=model, batch_size=4, device="cpu"), num_threads=1)
    a, b = (np.random.default_rng(i).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8) for i in (1, 2))
    x = enc._to_device([a, torch.from_numpy(b), a])
    np.testing.assert_array_equal(x.numpy(), np.stack([a, b, a]))


def test_expand_keeps_other_rows_in_place(setup):
    _, videos, dcfg = setup
    a, b = str(videos["h264_mp4"]), str(videos["portrait"])
    cpu_a = _decoded([a], dcfg.with_(nvdec_share=0.0))
    batch = pa.concat_tables([cpu_a, _decoded([b], dcfg.with_(nvdec_share=1.0)), cpu_a])
    out, frames = gpu_decode.expand_nvdec_rows(batch, device="cpu", read=pyav_frames)
    n = cpu_a.num_rows
    assert out.slice(0, n).equals(cpu_a) and out.slice(out.num_rows - n).equals(cpu_a)
    middle = out.slice(n, out.num_rows - 2 * n).to_pylist()
    assert [r["kind"] for r in middle] == [KIND_CLIP] * (len(middle) - 1) + [KIND_VIDEO]
    assert middle[-1]["decode_backend"] == "nvdec" and middle[-1]["num_segments"] == len(middle) - 1
    assert len(frames) == out.num_rows
    assert [f is not None for f in frames] == [False] * n + [True] * (len(middle) - 1) + [False] * (n + 1)
