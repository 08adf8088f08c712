"""The encoder stage on a CUDA device (skipped without one): placement, precisions, throughput."""
from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _decoded(n_clips: int, T: int, S: int) -> pa.Table:
    from schemas.stream import FRAMES, FRAMES_SHAPE, KIND_CLIP, KIND_VIDEO, decoded_schema

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_clips):
        frames = rng.integers(0, 256, (T, S, S, 3), dtype=np.uint8)
        rows.append({"kind": KIND_CLIP, "video_id": f"v{i // 4}", "uri": f"/v{i // 4}.mp4", "segment_index": i % 4,
                     "start_s": 0.0, "end_s": 2.0, FRAMES: frames.tobytes(), FRAMES_SHAPE: [T, S, S, 3]})
    rows.append({"kind": KIND_VIDEO, "video_id": "v0", "uri": "/v0.mp4", "status": "ok", "num_segments": 4})
    return pa.Table.from_pylist(rows, schema=decoded_schema())


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    from xclip_core.checkpoint import write_random_checkpoint

    return str(write_random_checkpoint(tmp_path_factory.mktemp("m") / "demo", preset="demo", num_frames=8))


def test_cuda_encoder_matches_cpu_and_reports_throughput(demo_model):
    from jobs.config import EncoderConfig
    from jobs.encoder import Encoder

    batch = _decoded(64, 8, 224)
    ref = Encoder(EncoderConfig(model=demo_model, device="cpu"))(batch.slice(0, 8))
    ref_emb = np.array(ref.column("embedding").to_pylist())
    for precision, atol in (("fp32", 2e-3), ("bf16", 5e-2), ("fp16", 2e-2)):
        enc = Encoder(EncoderConfig(model=demo_model, device="auto", precision=precision, batch_size=16,
                                    compile=False))
        assert enc.device.type == "cuda"
        out = enc(batch)
        assert out.column("embedding").null_count == 1  # only the status row
        emb = np.array(out.slice(0, 8).column("embedding").to_pylist())
        np.testing.assert_allclose(emb, ref_emb, atol=atol)
        assert out.column("error").null_count == out.num_rows
        for size in (16, 64):
            enc(batch.slice(0, size))
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(3):
                enc(batch.slice(0, size))
            torch.cuda.synchronize()
            dt = (time.perf_counter() - t0) / 3
            print(f"\n[encoder cuda] {precision} batch {size}: {size / dt:.0f} clips/s "
                  f"(incl. uint8 unpack, H2D copy, preprocess, text prompting, D2H)")


def test_cuda_compiled_encoder_matches_eager(demo_model):
    from jobs.config import EncoderConfig
    from jobs.encoder import Encoder

    batch = _decoded(20, 8, 224)  # 20 clips with batch_size 16: one full and one padded call
    eager = Encoder(EncoderConfig(model=demo_model, device="cuda", precision="bf16", batch_size=16, compile=False))
    compiled = Encoder(EncoderConfig(model=demo_model, device="cuda", precision="bf16", batch_size=16,
                                     compile=True))
    for part in (batch.slice(0, 16), batch.slice(16)):
        want = np.array(eager(part).column("embedding").to_pylist()[:4])
        got = np.array(compiled(part).column("embedding").to_pylist()[:4])
        np.testing.assert_allclose(got, want, atol=2e-2)


def test_cuda_defaults_and_pinned_copies(demo_model):
    """precision/batch/compile "auto" resolve to bf16, 128, compiled on CUDA; CPU-decoded
    frames go through a pinned host buffer; frames already on the GPU are used in place."""
    from jobs.config import EncoderConfig
    from jobs.encoder import Encoder

    enc = Encoder(EncoderConfig(model=demo_model))
    assert enc.device.type == "cuda" and enc.dtype == torch.bfloat16
    assert (enc.cfg.precision, enc.cfg.batch_size, enc.cfg.compile) == ("bf16", 128, True)
    host = np.random.default_rng(0).integers(0, 256, (2, 8, 224, 224, 3), dtype=np.uint8)
    on_gpu = torch.from_numpy(host[0]).cuda()
    x = enc._to_device([host[0], on_gpu, host[1]])
    assert x.is_cuda and enc._host.is_pinned()
    np.testing.assert_array_equal(x.cpu().numpy(), np.stack([host[0], host[0], host[1]]))
