"""Clips/s of xclip_core.XCLIP vs transformers' XCLIPModel, side by side in one run.

Both models hold the same random weights in the xclip-base-patch32 shape and
score each batch of B clips (T frames, 224 px) against K label prompts.
The label prompts' text features are computed once, before timing, for both:
- ours:          encode_video -> prompt_text -> video_logits
- transformers:  the lines of XCLIPModel.forward minus the text tower
                 (vision_model, visual_projection, mit, prompts_visual_*,
                 prompts_generator, normalise, einsum): the fair equivalent,
                 since XCLIPModel.forward would re-encode all K labels per batch
                 and has no API to reuse text features.
The two are checked to give the same logits before timing. Timing interleaves
the two models round by round and keeps the best round (shared, noisy CPUs).

    python bench/model.py --device cpu --dtype fp32 --batch 2 --iters 3
    python bench/model.py --device cuda --dtype bf16 --batch 128 --compile
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xclip_core.checkpoint import init_weights, preset_config
from xclip_core.fused import fuse
from xclip_core.model import XCLIP

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_models(num_frames: int, device: str, dtype: torch.dtype, seed: int = 0, preset: str = "base-patch32"):
    import transformers

    cfg = preset_config(preset, num_frames=num_frames)
    ours = fuse(init_weights(XCLIP(cfg), seed=seed)).eval()  # as XCLIP.from_pretrained loads it
    hf_cfg = transformers.XCLIPConfig(**cfg.to_dict())
    with torch.device("meta"):
        hf = transformers.XCLIPModel(hf_cfg)
    state = {k: v for k, v in ours.state_dict().items()}
    missing, unexpected = hf.load_state_dict(state, strict=False, assign=True)
    assert not unexpected and all(k.endswith("position_ids") for k in missing), (missing, unexpected)
    for name, buf in list(hf.named_buffers()):  # non-persistent position_ids stayed on meta
        if buf.is_meta:
            mod = hf.get_submodule(name.rsplit(".", 1)[0])
            setattr(mod, name.rsplit(".", 1)[1], torch.arange(buf.shape[-1]).expand(1, -1).clone())
    return ours.to(device, dtype), hf.to(device, dtype).eval(), cfg


def label_ids(k: int, vocab: int, length: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab - 2, (k, length), generator=g)
    ids[:, 0], ids[:, -1] = vocab - 2, vocab - 1  # BOS ... EOS (EOS is the highest id)
    return ids


def ours_step(model: XCLIP, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    feats = model.encode_video(pixels)
    return model.video_logits(feats.video_embeds, model.prompt_text(text, feats.visual_tokens))


def hf_step(hf, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """transformers' XCLIPModel.forward with the text tower's output passed in."""
    B, T, C, H, W = pixels.shape
    vision = hf.vision_model(pixel_values=pixels.reshape(-1, C, H, W))
    video = hf.visual_projection(vision[1]).view(B, T, -1)
    video = hf.mit(video)[1]
    img = hf.prompts_visual_layernorm(vision[0][:, 1:, :]) @ hf.prompts_visual_projection
    img = img.view(B, T, -1, video.shape[-1]).mean(dim=1)
    t = text.unsqueeze(0).expand(B, -1, -1)
    t = t + hf.prompts_generator(t, img)
    video = video / video.norm(p=2, dim=-1, keepdim=True)
    t = t / t.norm(p=2, dim=-1, keepdim=True)
    return torch.einsum("bd,bkd->bk", video, hf.logit_scale.exp() * t)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_iters(fn, iters: int, device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / iters


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=list(DTYPES), default="fp32",
                   help="weights and activations of both models (bf16/fp16: weights cast, no autocast)")
    p.add_argument("--autocast", action="store_true", help="keep fp32 weights and run both under autocast(dtype)")
    p.add_argument("--batch", type=int, default=None, help="clips per batch (default 2 on cpu, 128 on cuda)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--preset", default="base-patch32", help="model shape (xclip_core.checkpoint presets)")
    p.add_argument("--labels", type=int, default=400, help="label prompts K scored per clip")
    p.add_argument("--iters", type=int, default=None, help="timed iterations per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best is kept")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="also time torch.compile(our step), as its own row")
    p.add_argument("--compile-modes", default="default",
                   help="comma-separated torch.compile modes, one row each (e.g. default,max-autotune)")
    p.add_argument("--compile-baseline", action="store_true", help="also time torch.compile(transformers step)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--skip-baseline", action="store_true")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device")
    if a.threads:
        torch.set_num_threads(a.threads)
    batch = a.batch or (128 if a.device == "cuda" else 2)
    iters = a.iters or (10 if a.device == "cuda" else 2)
    dtype = DTYPES[a.dtype]
    weight_dtype = torch.float32 if a.autocast else dtype
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    t0 = time.perf_counter()
    ours, hf, cfg = build_models(a.frames, a.device, weight_dtype, preset=a.preset)
    v = cfg.vision_config
    pixels = torch.randn(batch, a.frames, 3, v.image_size, v.image_size, device=a.device, dtype=weight_dtype)
    ids = label_ids(a.labels, cfg.text_config.vocab_size).to(a.device)

    def amp():
        return torch.autocast(a.device, dtype=dtype, enabled=a.autocast)

    with torch.no_grad(), amp():
        text_ours = ours.encode_text(ids)  # once per label set
        text_hf = hf.get_text_features(input_ids=ids).pooler_output
        ref = hf_step(hf, pixels, text_hf).float()
        out = ours_step(ours, pixels, text_ours).float()
    err = ((out - ref).abs().max() / ref.abs().max()).item()
    print(f"# setup {time.perf_counter() - t0:.1f}s; torch {torch.__version__}; device "
          f"{torch.cuda.get_device_name() if a.device == 'cuda' else f'cpu x{torch.get_num_threads()} threads'}; "
          f"max rel diff of logits ours vs transformers {err:.2e}", flush=True)

    prec = f"{a.dtype}{'-autocast' if a.autocast else ''}"
    print(f"# model {a.preset}, {a.frames} frames x {v.image_size} px; best of {a.rounds} interleaved rounds "
          f"of {iters} iterations")
    print(f"| {'impl':<14} | device | precision | batch | labels | clips/s | ms/batch | vs transformers |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    best: dict[str, float] = {}

    def report(name: str) -> None:
        sec = best[name]
        ratio = f"{best['transformers'] / sec:.2f}x" if "transformers" in best else "-"
        print(f"| {name:<14} | {a.device} | {prec} | {batch} | {a.labels} | {batch / sec:,.1f} | "
              f"{sec * 1e3:.1f} | {ratio} |", flush=True)

    def measure(runs: dict) -> None:
        """Warm up, then interleave the runs round by round, keeping each one's best round."""
        with torch.no_grad(), amp():
            for fn in runs.values():
                for _ in range(a.warmup):
                    fn()
            for _ in range(a.rounds):
                for name, fn in runs.items():
                    best[name] = min(best.get(name, float("inf")), time_iters(fn, iters, a.device))
        for name in runs:
            report(name)

    runs = {"ours": lambda: ours_step(ours, pixels, text_ours)}
    if not a.skip_baseline:
        runs = {"transformers": lambda: hf_step(hf, pixels, text_hf), **runs}
    measure(runs)  # eager rows first, so that a slow compile below cannot lose them

    todo = [("ours", ours_step, ours, text_ours)] if a.compile else []
    if a.compile_baseline:
        todo.append(("transformers", hf_step, hf, text_hf))
    for mode in a.compile_modes.split(",") if todo else []:
        for label, step, model, text in todo:
            compiled = torch.compile(step, mode=mode, dynamic=False)
            name = f"{label}+compile" + ("" if mode == "default" else f"({mode})")
            with torch.no_grad(), amp():
                t1 = time.perf_counter()
                c_out = compiled(model, pixels, text).float()
                c_err = ((c_out - ref).abs().max() / ref.abs().max()).item()
            print(f"# {name}: compiled in {time.perf_counter() - t1:.1f}s; max rel diff of logits vs "
                  f"transformers eager {c_err:.2e}", flush=True)
            measure({name: (lambda c=compiled, m=model, t=text: c(m, pixels, t))})
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
