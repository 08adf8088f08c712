import numpy as np
import pyarrow as pa
import pytest

from jobs.config import DecoderConfig, EncoderConfig
from jobs.decoder import decode_config, decode_one
from jobs.encoder import Encoder, ModelError, inspect_model
from jobs.reader import _row
from schemas.stream import FRAMES, KIND_CLIP, encoded_schema


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from xclip_core.checkpoint import write_random_checkpoint

    return str(write_random_checkpoint(tmp_path_factory.mktemp("m") / "tiny", preset="tiny", num_frames=4))


@pytest.fixture(scope="module")
def decoded(model_dir, tmp_path_factory):
    from xclip_core.video.synth import write_video

    p = write_video(tmp_path_factory.mktemp("v") / "v.mp4", num_frames=120, width=64, height=48, fps=30)
    info = inspect_model(EncoderConfig(model=model_dir))
    dcfg = decode_config(DecoderConfig(), frames_per_clip=info.num_frames, crop_size=info.crop_size,
                         shortest_edge=info.shortest_edge)
    return pa.concat_tables(decode_one(_row(str(p)), dcfg))


def test_inspect_model(model_dir):
    info = inspect_model(EncoderConfig(model=model_dir, labels="kinetics400"))
    assert (info.dim, info.num_frames, info.crop_size) == (32, 4, 32)
    assert len(info.labels) == 400 and info.model_id.startswith("tiny@") and len(info.weights_sha256) == 64
    with pytest.raises(ModelError, match="cannot load the model"):
        inspect_model(EncoderConfig(model=model_dir + "-missing"))


def test_encoder_encodes_clips_and_passes_status_rows(model_dir, decoded):
    enc = Encoder(EncoderConfig(model=model_dir, device="cpu", batch_size=4), num_threads=1)
    out = enc(decoded)
    assert out.schema == encoded_schema(32, 400) and out.num_rows == decoded.num_rows
    rows = out.to_pylist()
    clips = [r for r in rows if r["kind"] == KIND_CLIP]
    assert len(clips) == 2 and rows[-1]["kind"] == "video" and rows[-1]["embedding"] is None
    for r in clips:
        assert abs(np.linalg.norm(r["embedding"]) - 1) < 1e-5 and abs(sum(r["probs"]) - 1) < 1e-4
        assert r["error"] is None and r["encode_s"] > 0
    # one clip per call gives the same numbers as the batch (batching does not mix clips)
    single = enc(decoded.slice(1, 1)).to_pylist()[0]
    np.testing.assert_allclose(single["embedding"], clips[1]["embedding"], atol=1e-5)


def test_encoder_failure_becomes_row_errors(model_dir, decoded):
    enc = Encoder(EncoderConfig(model=model_dir, device="cpu"), num_threads=1)
    bad = decoded.set_column(decoded.schema.get_field_index(FRAMES), FRAMES,
                             pa.array([b"\0" * 10 if k == KIND_CLIP else None
                                       for k in decoded.column("kind").to_pylist()], pa.large_binary()))
    rows = enc(bad).to_pylist()
    assert all(r["error"].startswith("encode failed:") and r["embedding"] is None
               for r in rows if r["kind"] == KIND_CLIP)
    assert rows[-1]["error"] is None and rows[-1]["status"] == "ok"


def test_out_of_memory_becomes_row_errors_and_any_other_model_error_fails_loudly(model_dir, decoded):
    import torch

    enc = Encoder(EncoderConfig(model=model_dir, device="cpu", batch_size=4), num_threads=1)

    def oom(x):
        raise torch.OutOfMemoryError("CUDA out of memory")

    enc._step = oom
    rows = enc(decoded).to_pylist()
    assert all(r["error"] == "encode failed: OutOfMemoryError: CUDA out of memory" and r["embedding"] is None
               for r in rows if r["kind"] == KIND_CLIP)

    def bug(x):  # e.g. a shape mismatch inside the model: a bug, not a bad video
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    enc._step = bug
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        enc(decoded)


def test_labels_from_the_driver_need_no_file_on_the_worker(model_dir, decoded):
    enc = Encoder(EncoderConfig(model=model_dir, device="cpu", labels="/only/on/the/driver.txt"), labels=("a", "b", "c"))
    out = enc(decoded)
    assert out.schema.field("probs").type.list_size == 3


def test_compiled_encoder_equals_eager_on_full_and_short_batches(model_dir, decoded):
    """encoder.compile: torch.compile of the whole step (inductor; here its CPU backend) gives the eager
    numbers, also for a short batch, which is padded to the one compiled shape."""
    eager = Encoder(EncoderConfig(model=model_dir, device="cpu", batch_size=4), num_threads=1)
    compiled = Encoder(EncoderConfig(model=model_dir, device="cpu", batch_size=4, compile=True), num_threads=1)
    assert compiled._step is not compiled._forward and eager._step == eager._forward
    for part in (decoded, decoded.slice(1, 1)):
        want, got = eager(part).to_pylist(), compiled(part).to_pylist()
        assert len(got) == len(want) == part.num_rows
        for w, g in zip(want, got):
            if w["kind"] == KIND_CLIP:
                np.testing.assert_allclose(g["embedding"], w["embedding"], atol=1e-5)
                np.testing.assert_allclose(g["probs"], w["probs"], atol=1e-6)


def test_store_prompt_features_outputs_float16_tokens_that_reproduce_the_probs(model_dir, decoded):
    import torch

    from schemas.stream import VISUAL_TOKENS
    from xclip_core.labels import load_labels
    from xclip_core.scoring import ClipScorer, class_text_features
    from xclip_core.tokenizer import CLIPTokenizer

    enc = Encoder(EncoderConfig(model=model_dir, device="cpu", batch_size=4, store_prompt_features=True), num_threads=1)
    out = enc(decoded)
    n_tok = enc.model.config.vision_config.num_patches
    assert out.schema == encoded_schema(32, 400, num_tokens=n_tok)
    assert VISUAL_TOKENS not in Encoder(EncoderConfig(model=model_dir, device="cpu"), num_threads=1).schema.names
    rows = [r for r in out.to_pylist() if r["kind"] == KIND_CLIP]
    tokens = torch.tensor([r[VISUAL_TOKENS] for r in rows], dtype=torch.float32).view(len(rows), n_tok, 32)
    emb = torch.tensor([r["embedding"] for r in rows])
    text = class_text_features(enc.model, CLIPTokenizer.from_pretrained(model_dir),
                               [[x] for x in load_labels("kinetics400").labels])
    with torch.no_grad():
        probs = ClipScorer(enc.model, text).probs(emb, tokens).numpy()
    np.testing.assert_allclose(probs, [r["probs"] for r in rows], atol=1e-5)
