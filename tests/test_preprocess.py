"""xclip_core.preprocess against transformers' VideoMAEImageProcessorPil (test-only oracle).

Measured tolerance (torch 2.13 CPU, pillow 13, transformers 5.24; random-noise
and structured frames, W x H = 320x240, 240x320, 640x360, 1920x1080, 176x144,
210x200 and 16x16, all resized to 224 and center-cropped):

- Frames that need no resize (shortest edge already 224, or already at crop
  size): identical (max |diff| 0, up to float rounding < 1e-5).
- Resized frames, CPU (torch's uint8 antialiased bilinear kernel): max |diff| =
  1 level of 0..255 (0.0175 in normalised units, 1 / (255 * 0.224)) for every
  size above except upscaled noise frames, where 2 levels (0.0342) occur
  (210x200; 16x16 with another seed). Only 0.08-3.5 % of values differ at all;
  mean |diff| <= 0.0006 normalised.
- Resized frames, float path (what runs on GPU: interpolate in float32, then
  round): max |diff| = 1 level, on ~19 % of values.

The tests assert these bounds.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xclip_core import preprocess as pp
from xclip_core.preprocess import PreprocessConfig, preprocess

CFG = PreprocessConfig()
STD = torch.tensor(CFG.image_std).view(3, 1, 1)
LEVEL = 1 / (255 * min(CFG.image_std))  # one 0..255 level in normalised units (0.0175)


def _frames(t, h, w, seed, structured):
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    if not structured:
        return noise
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 64 * 4], -1)
    edges = ((x // 7 + y // 5)[None] + np.arange(t)[:, None, None]) % 3 == 0
    return np.where(edges[..., None], noise, base[None]).astype(np.uint8)


@pytest.fixture(scope="module")
def hf():
    import PIL  # noqa: F401  the oracle needs pillow (dev extra)
    import transformers  # the oracle: a broken install must fail, not skip

    def run(frames, cfg=CFG):
        proc = transformers.VideoMAEImageProcessorPil(**{k: v for k, v in cfg.to_dict().items()
                                                         if k not in ("image_processor_type", "processor_class")})
        return proc(list(frames), return_tensors="pt")["pixel_values"][0]
    return run


@pytest.mark.parametrize("h,w", [(240, 320), (320, 240), (360, 640), (16, 16), (144, 176), (200, 210), (1080, 1920)])
@pytest.mark.parametrize("structured", [False, True])
def test_matches_videomae_pil_processor(hf, h, w, structured):
    frames = _frames(4, h, w, seed=h * w, structured=structured)
    ours, ref = preprocess(frames, CFG), hf(frames)
    assert ours.shape == ref.shape == (4, 3, 224, 224) and ours.dtype == torch.float32
    diff = (ours - ref).abs()
    assert diff.max().item() <= 2 * LEVEL + 1e-5
    assert (diff * STD * 255).max().item() <= 2 + 1e-3  # in 0..255 levels
    assert (diff > 1e-4).float().mean().item() < 0.05
    assert diff.mean().item() < 1e-3


@pytest.mark.parametrize("h,w", [(224, 224), (224, 300), (400, 224)])
def test_exact_when_no_resize_is_needed(hf, h, w):
    frames = _frames(3, h, w, seed=1, structured=False)
    assert torch.allclose(preprocess(frames, CFG), hf(frames), atol=1e-5, rtol=0)


def test_float_resize_path_used_on_gpu_matches_pil():
    from PIL import Image

    for h, w, size in [(240, 320, (224, 298)), (16, 16, (224, 224)), (360, 640, (224, 398))]:
        img = _frames(1, h, w, seed=7, structured=False)[0]
        ref = np.asarray(Image.fromarray(img).resize(size[::-1], Image.BILINEAR)).astype(np.int64)
        x = torch.from_numpy(img).permute(2, 0, 1)[None]
        got = pp._resize_float(x, size, "bilinear")[0].permute(1, 2, 0).numpy().astype(np.int64)
        assert np.abs(got - ref).max() <= 1


def test_precropped_frames_skip_resize(monkeypatch):
    frames = torch.randint(0, 256, (2, 8, 224, 224, 3), dtype=torch.uint8)

    def boom(*a, **k):
        raise AssertionError("resized frames that already have the crop size")

    monkeypatch.setattr(pp.F, "interpolate", boom)
    out = preprocess(frames, CFG)
    assert out.shape == (2, 8, 3, 224, 224) and out.is_contiguous()
    mean, std = torch.tensor(CFG.image_mean), torch.tensor(CFG.image_std)
    want = (frames.permute(0, 1, 4, 2, 3).float() / 255 - mean.view(3, 1, 1)) / std.view(3, 1, 1)
    assert torch.allclose(out, want, atol=1e-5)


def test_shapes_dtypes_and_inputs():
    frames = torch.randint(0, 256, (2, 3, 4, 48, 64, 3), dtype=torch.uint8)
    cfg = PreprocessConfig(shortest_edge=32, crop_size=(32, 32))
    out = preprocess(frames, cfg)
    assert out.shape == (2, 3, 4, 3, 32, 32) and out.device == frames.device
    assert torch.equal(preprocess(frames.numpy(), cfg), out)  # numpy accepted
    assert torch.equal(preprocess(frames[1, 2], cfg), out[1, 2])  # batch dims are independent
    half = preprocess(frames, cfg, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and torch.allclose(half.float(), out, atol=0.05)
    with pytest.raises(TypeError, match="uint8"):
        preprocess(frames.float(), cfg)
    with pytest.raises(ValueError, match="3"):
        preprocess(frames[..., :2], cfg)


def test_crop_larger_than_resized_image_pads_like_transformers(hf):
    cfg = PreprocessConfig(shortest_edge=200, crop_size=(224, 240))
    frames = _frames(2, 240, 320, seed=3, structured=True)
    ours, ref = preprocess(frames, cfg), hf(frames, cfg)
    assert ours.shape == ref.shape == (2, 3, 224, 240)
    assert (ours - ref).abs().max().item() <= 2 * LEVEL + 1e-5


def test_flags_off(hf):
    cfg = PreprocessConfig(do_normalize=False, do_center_crop=False, shortest_edge=64)
    frames = _frames(2, 48, 96, seed=5, structured=True)
    ours, ref = preprocess(frames, cfg), hf(frames, cfg)
    assert ours.shape == ref.shape == (2, 3, 64, 128)
    assert (ours - ref).abs().max().item() <= 2 / 255 + 1e-6
    raw = preprocess(frames, PreprocessConfig(do_resize=False, do_center_crop=False,
                                              do_rescale=False, do_normalize=False))
    assert torch.equal(raw, torch.from_numpy(frames).permute(0, 3, 1, 2).float())


def test_config_from_dict_forms(tmp_path):
    legacy = {  # microsoft/xclip-base-patch32 preprocessor_config.json
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "VideoMAEFeatureExtractor", "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225], "processor_class": "XCLIPProcessor", "resample": 2, "size": 224,
    }
    assert PreprocessConfig.from_dict(legacy) == CFG
    new = {"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 200},
           "rescale_factor": 0.5, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3}
    cfg = PreprocessConfig.from_dict(new)
    assert (cfg.shortest_edge, cfg.crop_size, cfg.rescale_factor, cfg.resample) == (256, (224, 200), 0.5, "bicubic")
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    assert PreprocessConfig.from_dict({}) == CFG
    with pytest.raises(ValueError, match="shortest-edge"):
        PreprocessConfig.from_dict({"size": {"height": 224, "width": 224}})
    with pytest.raises(ValueError, match="resample"):
        PreprocessConfig.from_dict({"resample": 0})
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(new))
    assert PreprocessConfig.from_pretrained(tmp_path) == cfg
    with pytest.raises(FileNotFoundError):
        PreprocessConfig.from_pretrained(tmp_path / "missing-dir")
    hash(cfg)  # frozen and hashable


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    frames = torch.from_numpy(_frames(8, 360, 640, seed=11, structured=True))
    cpu = preprocess(frames, CFG)
    gpu = preprocess(frames.cuda(), CFG, dtype=torch.float16)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float16
    assert (gpu.float().cpu() - cpu).abs().max().item() <= 3 * LEVEL + 0.01
    pre = torch.randint(0, 256, (8, 224, 224, 3), dtype=torch.uint8)
    assert torch.allclose(preprocess(pre.cuda(), CFG).cpu(), preprocess(pre, CFG), atol=1e-5)
