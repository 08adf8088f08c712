"""Frame preprocessing for X-CLIP, in torch (CPU or GPU).

Same steps as transformers' ``VideoMAEImageProcessor`` (what XCLIPProcessor
uses): resize the shortest edge (bilinear, antialiased), center crop, rescale,
normalise. Resizing uses ``F.interpolate(bilinear, antialias=True)`` and rounds
to integers like PIL's uint8 resize; measured agreement with
``VideoMAEImageProcessorPil`` is in tests/test_preprocess.py.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xclip_core.geometry import resize_shape

PREPROCESSOR_CONFIG = "preprocessor_config.json"
_RESAMPLE = {2: "bilinear", 3: "bicubic", "bilinear": "bilinear", "bicubic": "bicubic"}


def _pair(v: Any, what: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, dict) and "height" in v and "width" in v:
        return (int(v["height"]), int(v["width"]))
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return (int(v[0]), int(v[1]))
    raise ValueError(f"unsupported {what}: {v!r} (expected an int or {{'height': h, 'width': w}})")


@dataclass(frozen=True)
class PreprocessConfig:
    shortest_edge: int = 224
    crop_size: tuple[int, int] = (224, 224)  # (height, width)
    rescale_factor: float = 1 / 255
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    do_resize: bool = True
    do_center_crop: bool = True
    do_rescale: bool = True
    do_normalize: bool = True
    resample: str = "bilinear"  # or "bicubic"

    def __post_init__(self):
        object.__setattr__(self, "crop_size", _pair(self.crop_size, "crop_size"))
        object.__setattr__(self, "image_mean", tuple(float(x) for x in self.image_mean))
        object.__setattr__(self, "image_std", tuple(float(x) for x in self.image_std))
        if self.shortest_edge <= 0 or min(self.crop_size) <= 0:
            raise ValueError(f"sizes must be positive: {self.shortest_edge}, {self.crop_size}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("image_mean and image_std need 3 values (RGB)")
        if self.resample not in ("bilinear", "bicubic"):
            raise ValueError(f"unsupported resample {self.resample!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        """Parse a Hugging Face ``preprocessor_config.json`` (VideoMAE / XCLIP):
        ``size`` as ``{"shortest_edge": n}`` or a legacy int, ``crop_size`` as
        int or ``{"height", "width"}``, PIL ``resample`` 2 (bilinear) or 3."""
        kw: dict[str, Any] = {}
        size = d.get("size")
        if size is not None:
            if isinstance(size, int):
                kw["shortest_edge"] = size
            elif isinstance(size, dict) and "shortest_edge" in size:
                kw["shortest_edge"] = int(size["shortest_edge"])
            else:
                raise ValueError(f"unsupported size {size!r}: only a shortest-edge resize is supported")
        if d.get("crop_size") is not None:
            kw["crop_size"] = _pair(d["crop_size"], "crop_size")
        for key in ("rescale_factor",):
            if d.get(key) is not None:
                kw[key] = float(d[key])
        for key in ("image_mean", "image_std"):
            if d.get(key) is not None:
                v = d[key]
                kw[key] = tuple(v) if isinstance(v, (list, tuple)) else (v, v, v)
        for key in ("do_resize", "do_center_crop", "do_rescale", "do_normalize"):
            if d.get(key) is not None:
                kw[key] = bool(d[key])
        if d.get("resample") is not None:
            if d["resample"] not in _RESAMPLE:
                raise ValueError(f"unsupported resample {d['resample']!r} (2 = bilinear, 3 = bicubic)")
            kw["resample"] = _RESAMPLE[d["resample"]]
        return cls(**kw)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "PreprocessConfig":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike) -> "PreprocessConfig":
        """``source``: a local checkpoint dir, an ``s3://`` prefix or a hub id."""
        if os.path.isdir(source):
            d = Path(source)
        else:
            from xclip_core.loading import resolve_checkpoint

            d = Path(resolve_checkpoint(str(source)))
        path = d / PREPROCESSOR_CONFIG
        if not path.is_file():
            raise FileNotFoundError(f"{source}: no {PREPROCESSOR_CONFIG}")
        return cls.from_json_file(path)

    def to_dict(self) -> dict:
        """The Hugging Face form (VideoMAEImageProcessor keys)."""
        return {
            "do_resize": self.do_resize, "size": {"shortest_edge": self.shortest_edge},
            "resample": 2 if self.resample == "bilinear" else 3,
            "do_center_crop": self.do_center_crop,
            "crop_size": {"height": self.crop_size[0], "width": self.crop_size[1]},
            "do_rescale": self.do_rescale, "rescale_factor": self.rescale_factor,
            "do_normalize": self.do_normalize,
            "image_mean": list(self.image_mean), "image_std": list(self.image_std),
            "image_processor_type": "VideoMAEImageProcessor", "processor_class": "XCLIPProcessor",
        }


def _center_crop(x: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    """transformers' numpy center_crop on [N, C, H, W]: floor offsets, zero padding
    when the image is smaller than the crop."""
    h, w = x.shape[-2:]
    ch, cw = crop
    top, left = (h - ch) // 2, (w - cw) // 2
    if top >= 0 and left >= 0:
        return x[..., top:top + ch, left:left + cw]
    nh, nw = max(ch, h), max(cw, w)
    top_pad, left_pad = math.ceil((nh - h) / 2), math.ceil((nw - w) / 2)
    out = x.new_zeros(x.shape[:-2] + (nh, nw))
    out[..., top_pad:top_pad + h, left_pad:left_pad + w] = x
    top, left = top + top_pad, left + left_pad
    return out[..., top:top + ch, left:left + cw]


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Antialiased resize of uint8 [N, 3, H, W] to integer values (PIL resizes
    uint8 images to uint8). On CPU, bilinear uses torch's uint8 kernel: ~10x
    faster than float and the closest to PIL; elsewhere float, then round."""
    if x.device.type == "cpu" and mode == "bilinear":
        return F.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False)
    return _resize_float(x, size, mode)


def _resize_float(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    y = F.interpolate(x.float(), size=size, mode=mode, antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255)


def preprocess(frames: torch.Tensor | np.ndarray, cfg: PreprocessConfig | None = None, *,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 frames ``[..., T, H, W, 3]`` -> float ``[..., T, 3, crop_h, crop_w]``,
    on the frames' device, in ``dtype``.

    Frames that already have the crop size (what the decode stage emits) are
    taken as resized and cropped: no resize, no crop, only scale and normalise.
    """
    cfg = cfg or PreprocessConfig()
    x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"frames must be a torch tensor or numpy array, got {type(frames).__name__}")
    if x.dtype != torch.uint8:
        raise TypeError(f"frames must be uint8 RGB, got {x.dtype}")
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"frames must be [..., H, W, 3], got shape {tuple(x.shape)}")
    lead, (h, w) = x.shape[:-3], x.shape[-3:-1]
    x = x.reshape(-1, h, w, 3).permute(0, 3, 1, 2)  # [N, 3, H, W] (a view)
    pre_cropped = (h, w) == cfg.crop_size
    if cfg.do_resize and not pre_cropped:
        new_w, new_h = resize_shape(w, h, cfg.shortest_edge)
        size = (new_h, new_w)
        if size != (h, w):
            x = _resize(x, size, cfg.resample)
    if cfg.do_center_crop and not pre_cropped:
        x = _center_crop(x, cfg.crop_size)
    x = x.to(torch.float32)
    scale = torch.full((3,), cfg.rescale_factor if cfg.do_rescale else 1.0, device=x.device)
    bias = torch.zeros(3, device=x.device)
    if cfg.do_normalize:
        std = torch.tensor(cfg.image_std, device=x.device)
        scale, bias = scale / std, -torch.tensor(cfg.image_mean, device=x.device) / std
    x = torch.addcmul(bias.view(1, 3, 1, 1), x, scale.view(1, 3, 1, 1))
    return x.to(dtype).reshape(*lead, 3, *x.shape[-2:]).contiguous()
