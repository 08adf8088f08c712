"""write_random_checkpoint: exact HF layout, loads in transformers and in xclip_core with equal logits."""
from __future__ import annotations

import json

import pytest
import torch

import transformers  # the oracle: a broken install must fail, not skip

from xclip_core.checkpoint import parameter_count, preset_config, write_random_checkpoint
from xclip_core.loading import weights_sha256
from xclip_core.model import XCLIP

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("tiny"), preset="tiny", num_frames=8, seed=0)


def tokenize(ckpt_dir, texts):
    from xclip_core.tokenizer import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(ckpt_dir)(texts)


def test_tiny_checkpoint_loads_in_transformers_and_ours(tiny_dir):
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", *TOKENIZER_FILES):
        assert (tiny_dir / name).is_file(), name
    hf = transformers.XCLIPModel.from_pretrained(tiny_dir).eval()
    ours = XCLIP.from_pretrained(tiny_dir)
    tok = tokenize(tiny_dir, ["playing sports", "eating spaghetti", "go shopping"])
    assert int(tok["input_ids"].max()) < hf.config.text_config.vocab_size
    pixels = torch.randn(2, 8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(pixel_values=pixels, **tok)
        out = ours(pixels, tok["input_ids"], tok["attention_mask"])
    err = ((out.logits_per_video - ref.logits_per_video).abs().max() / ref.logits_per_video.abs().max()).item()
    assert err <= 1e-5
    assert torch.allclose(out.video_embeds, ref.video_embeds, atol=1e-6)
    # HF-style init gives a non-degenerate model: different videos and prompts get different scores
    assert ref.logits_per_video.std() > 1e-3
    assert (out.video_embeds[0] - out.video_embeds[1]).abs().max() > 1e-3
    assert ours.logit_scale.item() == pytest.approx(2.6592)


def test_config_and_preprocessor_files(tiny_dir):
    cfg = json.loads((tiny_dir / "config.json").read_text())
    hc = transformers.XCLIPConfig.from_pretrained(tiny_dir)
    assert cfg["model_type"] == "xclip" and hc.vision_config.num_frames == 8
    assert hc.vision_config.image_size == 32 and hc.vision_config.patch_size == 8
    assert hc.vision_config.mit_hidden_size == hc.projection_dim == 32
    vocab = json.loads((tiny_dir / "vocab.json").read_text())
    assert hc.text_config.vocab_size == len(vocab)
    pre = json.loads((tiny_dir / "preprocessor_config.json").read_text())
    assert pre["image_processor_type"] == "VideoMAEImageProcessor"
    assert pre["size"] == {"shortest_edge": 32} and pre["crop_size"] == {"height": 32, "width": 32}
    assert pre["rescale_factor"] == pytest.approx(1 / 255)
    assert pre["image_mean"] == [0.485, 0.456, 0.406] and pre["image_std"] == [0.229, 0.224, 0.225]


def test_seed_is_deterministic(tiny_dir, tmp_path):
    same = write_random_checkpoint(tmp_path / "same", preset="tiny", num_frames=8, seed=0)
    other = write_random_checkpoint(tmp_path / "other", preset="tiny", num_frames=8, seed=1)
    assert weights_sha256(same) == weights_sha256(tiny_dir)
    assert weights_sha256(other) != weights_sha256(tiny_dir)


def test_demo_preset_224px_and_frames(tmp_path):
    d = write_random_checkpoint(tmp_path / "demo", preset="demo", num_frames=16, seed=3)
    pre = json.loads((d / "preprocessor_config.json").read_text())
    assert pre["crop_size"] == {"height": 224, "width": 224}
    ours = XCLIP.from_pretrained(d)
    assert ours.num_frames == 16 and ours.config.vision_config.image_size == 224
    with torch.no_grad():
        feats = ours.encode_video(torch.randn(1, 16, 3, 224, 224))
    assert feats.video_embeds.shape == (1, 64) and feats.visual_tokens.shape == (1, 49, 64)


def test_presets():
    assert parameter_count(preset_config("base-patch32")) == 196_585_729  # = microsoft/xclip-base-patch32
    assert parameter_count(preset_config("demo")) < 10_000_000
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("huge")


def test_projection_dim_override_loads_in_transformers_and_ours(tmp_path):
    # bench/night.py's tiny model with 512-d embeddings (the writer's cost follows the row width)
    d = write_random_checkpoint(tmp_path / "wide", preset="tiny", projection_dim=512)
    hf = transformers.XCLIPModel.from_pretrained(d).eval()
    ours = XCLIP.from_pretrained(d)
    tok = tokenize(d, ["playing sports", "go shopping"])
    pixels = torch.randn(1, 8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(pixel_values=pixels, **tok)
        out = ours(pixels, tok["input_ids"], tok["attention_mask"])
    assert out.video_embeds.shape == ref.video_embeds.shape == (1, 512)
    assert torch.allclose(out.video_embeds, ref.video_embeds, atol=1e-6)
