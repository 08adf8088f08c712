"""X-CLIP on CUDA against transformers' XCLIPModel on the same device (skipped without a GPU).

Run on a lent GPU host by bench/gpu.sh; results are recorded in bench/RESULTS.md.
"""
from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

from test_model_parity import FAMILIES, cosine_err, make_inputs, make_pair, rel_err  # noqa: E402

from xclip_core.preprocess import PreprocessConfig, preprocess  # noqa: E402


@pytest.fixture(autouse=True)
def _no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("family", list(FAMILIES))
def test_cuda_fp32_matches_transformers(family):
    hf, ours, spec = make_pair(family)
    hf, ours = hf.cuda(), ours.cuda()
    pixels, ids, mask = (t.cuda() for t in make_inputs(spec))
    with torch.no_grad():
        ref = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask)
        out = ours(pixels, ids, mask)
    errs = {n: rel_err(getattr(out, n), getattr(ref, n)) for n in ("logits_per_video", "video_embeds")}
    print(f"\n[cuda fp32 {family}] max relative error {errs}")
    assert max(errs.values()) <= 1e-4, errs


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_autocast_close_to_fp32(dtype):
    hf, ours, spec = make_pair("B32-8f")
    hf, ours = hf.cuda(), ours.cuda()
    pixels, ids, mask = (t.cuda() for t in make_inputs(spec))
    with torch.no_grad():
        ref = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask)
        with torch.autocast("cuda", dtype=dtype):
            out = ours(pixels, ids, mask)
            hf_amp = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask)
    ours_err = cosine_err(out.logits_per_video, ref.logits_per_video, hf)
    hf_err = cosine_err(hf_amp.logits_per_video, ref.logits_per_video, hf)
    emb = rel_err(out.video_embeds, ref.video_embeds)
    print(f"\n[cuda autocast {dtype}] max cosine err ours {ours_err:.2e} transformers {hf_err:.2e}; "
          f"video_embeds rel err {emb:.2e}")
    assert ours_err < 2e-2 and emb < 5e-2
    assert ours_err < 2 * hf_err + 5e-3


def test_cuda_preprocess_then_encode_equals_cpu():
    """uint8 frames -> preprocess on the GPU -> encode equals the same on CPU."""
    _, ours, spec = make_pair("B32-8f")
    v = spec["vision"]
    g = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (2, v["num_frames"], v["image_size"], v["image_size"], 3),
                           dtype=torch.uint8, generator=g)
    cfg = PreprocessConfig(shortest_edge=v["image_size"], crop_size=(v["image_size"], v["image_size"]))
    with torch.no_grad():
        cpu = ours.encode_video(preprocess(frames, cfg)).video_embeds
        gpu = ours.cuda().encode_video(preprocess(frames.cuda(), cfg)).video_embeds
    assert rel_err(gpu.cpu(), cpu) <= 1e-4
