"""Write a random X-CLIP checkpoint in exact Hugging Face layout (tests, demos, benchmarks).

The files load in transformers' ``XCLIPModel.from_pretrained`` and in
``XCLIP.from_pretrained``. Weights are initialised as transformers'
``XCLIPPreTrainedModel._init_weights`` does, so outputs are non-degenerate.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import torch
from torch import nn

from .config import XCLIPConfig, XCLIPTextConfig, XCLIPVisionConfig
from .layers import Attention, MLP
from .model import XCLIP, MultiframeIntegrationTransformer, TextEmbeddings, VisionEmbeddings

PRESETS = ("tiny", "demo", "base-patch32")


def preset_config(preset: str, *, num_frames: int = 8, vocab_size: int = 49408) -> XCLIPConfig:
    """Config of a named preset: "tiny" (32 px, widths 32), "demo" (224 px, small widths), "base-patch32"."""
    if preset == "tiny":
        text = XCLIPTextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=4)
        vision = XCLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, mit_hidden_size=32, mit_intermediate_size=64,
                                   mit_num_attention_heads=4, image_size=32, patch_size=8, num_frames=num_frames)
        return XCLIPConfig(text_config=text, vision_config=vision, projection_dim=32, prompt_num_attention_heads=4)
    if preset == "demo":
        text = XCLIPTextConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=256,
                               num_hidden_layers=2, num_attention_heads=4)
        vision = XCLIPVisionConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                                   num_attention_heads=4, mit_hidden_size=64, mit_intermediate_size=256,
                                   mit_num_attention_heads=4, image_size=224, patch_size=32, num_frames=num_frames)
        return XCLIPConfig(text_config=text, vision_config=vision, projection_dim=64, prompt_num_attention_heads=4)
    if preset == "base-patch32":
        return XCLIPConfig(text_config=XCLIPTextConfig(vocab_size=vocab_size),
                           vision_config=XCLIPVisionConfig(num_frames=num_frames))
    raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")


@torch.no_grad()
def init_weights(model: XCLIP, seed: int = 0) -> XCLIP:
    """Random init following transformers' XCLIPPreTrainedModel._init_weights."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    f = cfg.initializer_factor

    def normal(t: torch.Tensor, std: float) -> None:
        t.copy_(torch.randn(t.shape, generator=g) * std)

    def n_layers(mod: nn.Module) -> int:  # attention / MLP modules belong to one of three towers
        for prefix, n in (("text_model.", cfg.text_config.num_hidden_layers),
                          ("vision_model.", cfg.vision_config.num_hidden_layers),
                          ("mit.", cfg.vision_config.mit_num_hidden_layers)):
            if names[mod].startswith(prefix):
                return n
        raise AssertionError(names[mod])

    names = {m: n for n, m in model.named_modules()}
    for m in model.modules():  # defaults first: Linear normal(0.02) / zero bias, LayerNorm 1 / 0
        if isinstance(m, nn.Linear):
            normal(m.weight, 0.02 * f)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.LayerNorm):
            m.weight.fill_(1.0)
            m.bias.zero_()
    for m in model.modules():
        if isinstance(m, TextEmbeddings):
            normal(m.token_embedding.weight, 0.02 * f)
            normal(m.position_embedding.weight, 0.02 * f)
        elif isinstance(m, VisionEmbeddings):
            D = m.class_embedding.shape[0]
            normal(m.class_embedding, D ** -0.5 * f)
            normal(m.patch_embedding.weight, cfg.vision_config.initializer_range * f)
            normal(m.position_embedding.weight, cfg.vision_config.initializer_range * f)
        elif isinstance(m, Attention):
            D = m.q_proj.in_features
            for lin in (m.q_proj, m.k_proj, m.v_proj):
                normal(lin.weight, D ** -0.5 * (2 * n_layers(m)) ** -0.5 * f)
            normal(m.out_proj.weight, D ** -0.5 * f)
        elif isinstance(m, MLP):
            D = m.fc1.in_features
            normal(m.fc1.weight, (2 * D) ** -0.5 * f)
            normal(m.fc2.weight, D ** -0.5 * (2 * n_layers(m)) ** -0.5 * f)
        elif isinstance(m, MultiframeIntegrationTransformer):
            normal(m.position_embedding, f)
    Dt, Dv = cfg.text_config.hidden_size, cfg.vision_config.hidden_size
    normal(model.text_projection.weight, Dt ** -0.5 * f)
    normal(model.visual_projection.weight, Dv ** -0.5 * f)
    normal(model.prompts_visual_projection, Dv ** -0.5 * f)
    model.prompts_generator.alpha.fill_(cfg.prompt_alpha)
    model.logit_scale.fill_(cfg.logit_scale_init_value)
    return model


def preprocessor_config(size: int) -> dict:
    """HF VideoMAEImageProcessor settings of the X-CLIP hub checkpoints, for ``size`` px input."""
    return {
        "do_resize": True,
        "size": {"shortest_edge": size},
        "resample": 2,  # bilinear
        "do_center_crop": True,
        "crop_size": {"height": size, "width": size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "image_processor_type": "VideoMAEImageProcessor",
        "processor_class": "XCLIPProcessor",
    }


def write_random_checkpoint(path: str | os.PathLike, *, preset: str = "tiny", num_frames: int = 8,
                            seed: int = 0, projection_dim: int | None = None) -> Path:
    """Write config.json, model.safetensors, preprocessor_config.json and tokenizer files to ``path``.
    ``projection_dim`` overrides the preset's embedding width (a tiny model with 512-d embeddings)."""
    from safetensors.torch import save_file

    from .tokenizer import write_tokenizer_files

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    # tiny/demo: the tokenizer's small default vocabulary; base-patch32: the full CLIP one
    vocab_size = write_tokenizer_files(out, **({"vocab_size": 49408} if preset == "base-patch32" else {}))
    config = preset_config(preset, num_frames=num_frames, vocab_size=vocab_size)
    if projection_dim is not None:
        vision = dataclasses.replace(config.vision_config, mit_hidden_size=projection_dim,
                                     mit_intermediate_size=4 * projection_dim)
        config = dataclasses.replace(config, vision_config=vision, projection_dim=projection_dim)
    model = init_weights(XCLIP(config), seed=seed)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = config.to_dict()
    cfg["torch_dtype"] = "float32"
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    pre = preprocessor_config(config.vision_config.image_size)
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
    return out


def parameter_count(config: XCLIPConfig) -> int:
    with torch.device("meta"):
        return sum(math.prod(p.shape) for p in XCLIP(config).parameters())
