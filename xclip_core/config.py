"""X-CLIP configuration: frozen dataclasses read from a checkpoint's ``config.json``.

The JSON format is Hugging Face's ``XCLIPConfig`` (``text_config`` and
``vision_config`` nested dicts; older hub files carry ``text_config_dict`` /
``vision_config_dict`` instead or as well, which win). Missing keys take
XCLIPConfig's defaults, which describe microsoft/xclip-base-patch32.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _known(cls, d: dict) -> dict:
    """The keys of ``d`` that are fields of ``cls`` (extra HF keys are ignored)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in (d or {}).items() if k in names}


def _square(v: Any, name: str) -> int:
    """HF allows image_size / patch_size as int or [h, w]; only square is supported."""
    if isinstance(v, (list, tuple)):
        if len(v) != 2 or v[0] != v[1]:
            raise ValueError(f"{name}={v!r}: only square sizes are supported")
        return int(v[0])
    return int(v)


@dataclass(frozen=True)
class XCLIPTextConfig:
    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    initializer_factor: float = 1.0
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2

    @classmethod
    def from_dict(cls, d: dict) -> "XCLIPTextConfig":
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class XCLIPVisionConfig:
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    mit_hidden_size: int = 512
    mit_intermediate_size: int = 2048
    mit_num_hidden_layers: int = 1
    mit_num_attention_heads: int = 8
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32
    num_frames: int = 8
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    initializer_factor: float = 1.0

    @classmethod
    def from_dict(cls, d: dict) -> "XCLIPVisionConfig":
        kw = _known(cls, d)
        for k in ("image_size", "patch_size"):
            if k in kw:
                kw[k] = _square(kw[k], k)
        return cls(**kw)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class XCLIPConfig:
    text_config: XCLIPTextConfig = field(default_factory=XCLIPTextConfig)
    vision_config: XCLIPVisionConfig = field(default_factory=XCLIPVisionConfig)
    projection_dim: int = 512
    prompt_layers: int = 2
    prompt_alpha: float = 0.1
    prompt_hidden_act: str = "quick_gelu"
    prompt_num_attention_heads: int = 8
    logit_scale_init_value: float = 2.6592
    initializer_factor: float = 1.0

    def __post_init__(self):
        t, v = self.text_config, self.vision_config
        for name, act in (("text", t.hidden_act), ("vision", v.hidden_act), ("prompt", self.prompt_hidden_act)):
            if act != "quick_gelu":
                raise ValueError(f"{name} hidden_act={act!r}: only quick_gelu is implemented")
        if v.mit_hidden_size != self.projection_dim:
            raise ValueError(f"vision_config.mit_hidden_size ({v.mit_hidden_size}) must equal "
                             f"projection_dim ({self.projection_dim})")
        for name, width, heads in (("text", t.hidden_size, t.num_attention_heads),
                                   ("vision", v.hidden_size, v.num_attention_heads),
                                   ("mit", v.mit_hidden_size, v.mit_num_attention_heads),
                                   ("prompt", self.projection_dim, self.prompt_num_attention_heads)):
            if width % heads:
                raise ValueError(f"{name}: width {width} is not divisible by {heads} heads")
        if v.image_size % v.patch_size:
            raise ValueError(f"image_size {v.image_size} is not a multiple of patch_size {v.patch_size}")

    @classmethod
    def from_dict(cls, d: dict) -> "XCLIPConfig":
        text = dict(d.get("text_config") or {})
        text.update(d.get("text_config_dict") or {})
        vision = dict(d.get("vision_config") or {})
        vision.update(d.get("vision_config_dict") or {})
        top = _known(cls, d)
        top.pop("text_config", None)
        top.pop("vision_config", None)
        return cls(text_config=XCLIPTextConfig.from_dict(text),
                   vision_config=XCLIPVisionConfig.from_dict(vision), **top)

    @classmethod
    def from_json_file(cls, path: str | Path) -> "XCLIPConfig":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> dict:
        """HF XCLIPConfig-style dict (what ``transformers.XCLIPConfig(**d)`` accepts)."""
        d = dataclasses.asdict(self)
        d["text_config"]["model_type"] = "xclip_text_model"
        d["vision_config"]["model_type"] = "xclip_vision_model"
        d["model_type"] = "xclip"
        d["architectures"] = ["XCLIPModel"]
        return d

    def replace(self, **changes) -> "XCLIPConfig":
        return dataclasses.replace(self, **changes)
