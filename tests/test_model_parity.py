"""xclip_core.XCLIP against transformers' XCLIPModel (the oracle) with random weights.

Configs keep each family's widths, heads and patch sizes but few layers and
small images so that the whole file runs in seconds on 2 CPU cores.
"""
from __future__ import annotations

import pytest
import torch

import transformers  # the oracle: a broken install must fail, not skip

from xclip_core.config import XCLIPConfig
from xclip_core.fused import FusedCrossFrameLayer, fuse
from xclip_core.model import XCLIP

VOCAB = 1000


def hf_config(*, vision: dict, text: dict, projection_dim: int, prompt_heads: int = 8):
    return transformers.XCLIPConfig(text_config=dict(vocab_size=VOCAB, **text), vision_config=vision,
                                    projection_dim=projection_dim, prompt_num_attention_heads=prompt_heads)


FAMILIES = {
    # xclip-base-patch32 widths, full 224 px input, 8 frames
    "B32-8f": dict(vision=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                               num_hidden_layers=2, patch_size=32, image_size=224, num_frames=8),
                   text=dict(hidden_size=512, intermediate_size=2048, num_attention_heads=8, num_hidden_layers=1),
                   projection_dim=512, batch=2),
    # xclip-base-patch16-16-frames widths, 112 px (7x7 patches)
    "B16-16f": dict(vision=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                num_hidden_layers=1, patch_size=16, image_size=112, num_frames=16),
                    text=dict(hidden_size=512, intermediate_size=2048, num_attention_heads=8, num_hidden_layers=1),
                    projection_dim=512, batch=1),
    # few-shot / zero-shot B/16 models use 32 frames
    "B16-32f": dict(vision=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                num_hidden_layers=1, patch_size=16, image_size=64, num_frames=32),
                    text=dict(hidden_size=512, intermediate_size=2048, num_attention_heads=8, num_hidden_layers=1),
                    projection_dim=512, batch=2),
    # xclip-large-patch14 widths (vision 1024/16 heads, text 768/12 heads, MIT and projection 768)
    "L14-8f": dict(vision=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                               num_hidden_layers=1, patch_size=14, image_size=112, num_frames=8,
                               mit_hidden_size=768, mit_intermediate_size=3072),
                   text=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=1),
                   projection_dim=768, batch=1),
}


def make_pair(family: str, seed: int = 0, fused: bool = True):
    """transformers' model and ours with the same random weights; ``fused``: with the inference
    speed-ups of ``xclip_core.fused`` swapped in, as ``XCLIP.from_pretrained`` loads it."""
    spec = FAMILIES[family]
    torch.manual_seed(seed)
    hc = hf_config(vision=spec["vision"], text=spec["text"], projection_dim=spec["projection_dim"])
    hf = transformers.XCLIPModel(hc).eval()
    ours = XCLIP(XCLIPConfig.from_dict(hc.to_dict())).eval()
    state = {k: v for k, v in hf.state_dict().items() if not k.endswith("position_ids")}
    result = ours.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    if fused:
        fuse(ours)
    return hf, ours, spec


def make_inputs(spec: dict, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    v = spec["vision"]
    pixels = torch.randn(spec["batch"], v["num_frames"], 3, v["image_size"], v["image_size"], generator=g)
    # 3 prompts of different lengths, right-padded with EOS (= the highest id) as CLIP's tokenizer does
    ids = torch.randint(1, VOCAB - 2, (3, 9), generator=g)
    ids[:, 0] = VOCAB - 2  # BOS
    mask = torch.ones_like(ids)
    for row, n in enumerate((9, 5, 3)):
        ids[row, n - 1:] = VOCAB - 1  # EOS then padding
        mask[row, n:] = 0
    return pixels, ids, mask


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def cosine_err(logits: torch.Tensor, ref: torch.Tensor, hf) -> float:
    """Max abs error of the cosine similarities behind two logit tensors."""
    return ((logits.float() - ref.float()).abs().max() / hf.logit_scale.exp()).item()


@pytest.mark.parametrize("fused", [False, True], ids=["reference", "fused"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_fp32_matches_transformers(family, fused):
    hf, ours, spec = make_pair(family, fused=fused)
    pixels, ids, mask = make_inputs(spec)
    with torch.no_grad():
        ref = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask)
        out = ours(pixels, ids, mask)
    assert out.logits_per_video.shape == (spec["batch"], 3)
    assert out.text_embeds.shape == (spec["batch"], 3, spec["projection_dim"])
    errs = {name: rel_err(getattr(out, name), getattr(ref, name))
            for name in ("logits_per_video", "video_embeds", "text_embeds")}
    print(f"\n[parity fp32 {family} {'fused' if fused else 'reference'}] max relative error {errs}")
    assert max(errs.values()) <= 1e-5, errs
    # the outputs are not degenerate: the three prompts get different logits
    assert ref.logits_per_video.std() > 1e-3


def test_parity_check_detects_a_small_weight_change():
    """Negative control: the parity measure sees a 0.1% change of one projection weight."""
    hf, ours, spec = make_pair("B16-32f")
    pixels, ids, mask = make_inputs(spec)
    with torch.no_grad():
        ours.visual_projection.weight.mul_(1.001)
        ref = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask)
        out = ours(pixels, ids, mask)
    assert rel_err(out.video_embeds, ref.video_embeds) > 1e-5


def test_pieces_match_transformers_feature_api():
    """encode_video / encode_text equal get_video_features / get_text_features; pieces compose to forward."""
    hf, ours, spec = make_pair("B32-8f")
    pixels, ids, mask = make_inputs(spec)
    with torch.no_grad():
        ref_video = hf.get_video_features(pixel_values=pixels).pooler_output
        ref_text = hf.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
        feats = ours.encode_video(pixels)
        text = ours.encode_text(ids, mask)
        assert rel_err(feats.video_embeds, ref_video) <= 1e-5
        assert rel_err(text, ref_text) <= 1e-5
        assert feats.visual_tokens.shape == (2, 49, 512)
        # cached text features reused across video batches give the forward's logits
        logits = ours.video_logits(feats.video_embeds, ours.prompt_text(text, feats.visual_tokens))
        full = ours(pixels, ids, mask).logits_per_video
    assert torch.equal(logits, full)


def test_padding_mask_and_unpadded_texts_agree():
    """Right padding does not change a text's features (causal attention + first-EOS pooling)."""
    _, ours, spec = make_pair("B16-32f")
    _, ids, mask = make_inputs(spec)
    with torch.no_grad():
        padded = ours.encode_text(ids, mask)
        alone = ours.encode_text(ids[2:, :3])  # the 3-token prompt on its own, no mask
    assert rel_err(padded[2:], alone) <= 1e-5


def test_grad_path_equals_inference_path_and_backprops():
    _, ours, spec = make_pair("B16-32f")
    pixels, ids, mask = make_inputs(spec)
    with torch.no_grad():
        fast = ours(pixels, ids, mask).logits_per_video
    out = ours(pixels, ids, mask).logits_per_video  # autograd on: concat path, no caches
    assert rel_err(out.detach(), fast) <= 1e-5
    out.sum().backward()
    grad = ours.vision_model.encoder.layers[0].self_attn.q_proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_from_pretrained_fuses_and_keeps_the_checkpoint_keys(tmp_path):
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.layers import CrossFrameLayer

    ckpt = write_random_checkpoint(tmp_path / "m", preset="tiny", num_frames=4)
    fused, plain = XCLIP.from_pretrained(ckpt), XCLIP.from_pretrained(ckpt, fuse=False)
    assert isinstance(fused.vision_model.encoder.layers[0], FusedCrossFrameLayer)
    assert type(plain.vision_model.encoder.layers[0]) is CrossFrameLayer
    assert list(fused.state_dict()) == list(plain.state_dict())
    pixels = torch.randn(2, 4, 3, fused.config.vision_config.image_size, fused.config.vision_config.image_size)
    with torch.no_grad():
        a, b = fused.encode_video(pixels).video_embeds, plain.encode_video(pixels).video_embeds
    assert rel_err(a, b) <= 1e-5 and not torch.equal(a, b)  # same function, another computation


def test_qkv_cache_follows_weight_updates():
    hf, ours, spec = make_pair("B16-32f")
    pixels, ids, mask = make_inputs(spec)
    with torch.no_grad():
        before = ours(pixels, ids, mask).logits_per_video
        for model in (hf, ours):  # same in-place change in both
            model.vision_model.encoder.layers[0].self_attn.k_proj.weight.mul_(3.0)
        after = ours(pixels, ids, mask).logits_per_video
        ref = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask).logits_per_video
    assert not torch.allclose(before, after)
    assert rel_err(after, ref) <= 1e-5


def test_weights_made_under_inference_mode_run():
    """Weights that are inference tensors (a copy or cast made under torch.inference_mode) have no
    version counter; the derived-weight caches must still work and give the same result."""
    hf, ours, spec = make_pair("B16-32f")
    pixels, ids, mask = make_inputs(spec)
    with torch.inference_mode():
        ref = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask).logits_per_video
        copy = fuse(XCLIP(ours.config).eval())
        copy.load_state_dict({k: v.clone() for k, v in ours.state_dict().items()})
        assert copy.vision_model.encoder.layers[0].self_attn.q_proj.weight.is_inference()
        out = copy(pixels, ids, mask).logits_per_video
    assert rel_err(out, ref) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_close_to_fp32(dtype):
    """Mixed precision: measured error against the fp32 oracle, with a loose bound."""
    hf, ours, spec = make_pair("B32-8f")
    pixels, ids, mask = make_inputs(spec)
    with torch.no_grad():
        ref = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask)
        with torch.autocast("cpu", dtype=dtype):
            out = ours(pixels, ids, mask)
            hf_amp = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask)
    ours_err = rel_err(out.logits_per_video, ref.logits_per_video)
    hf_err = rel_err(hf_amp.logits_per_video, ref.logits_per_video)
    cos_err = cosine_err(out.logits_per_video, ref.logits_per_video, hf)
    emb_err = rel_err(out.video_embeds, ref.video_embeds)
    print(f"\n[autocast {dtype}] logits: max rel err ours {ours_err:.2e} (transformers under the same "
          f"autocast {hf_err:.2e}), max cosine err {cos_err:.2e}; video_embeds max rel err {emb_err:.2e}")
    assert torch.isfinite(out.logits_per_video).all()
    # random-init cosines are near 0, so logits relative to their max are a harsh measure: bound the
    # cosine error, and require no worse than transformers itself under the same autocast
    assert cos_err < 2e-2 and emb_err < 5e-2
    assert ours_err < 2 * hf_err + 1e-2


def test_bf16_weights_run():
    hf, ours, spec = make_pair("B16-32f")
    pixels, ids, mask = make_inputs(spec)
    with torch.no_grad():
        ref = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask).logits_per_video
        out = ours.to(torch.bfloat16)(pixels.bfloat16(), ids, mask).logits_per_video
    assert out.dtype == torch.bfloat16
    assert cosine_err(out, ref, hf) < 2e-2


def test_wrong_num_frames_is_a_clear_error():
    _, ours, spec = make_pair("B16-32f")
    pixels, ids, mask = make_inputs(spec)
    with pytest.raises(ValueError, match="num_frames mismatch"):
        ours(pixels[:, :16], ids, mask)
    with pytest.raises(ValueError, match="expects 3x64x64"):
        ours(pixels[..., :32, :32], ids, mask)
