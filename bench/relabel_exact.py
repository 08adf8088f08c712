"""How close is an exact relabel (``xclip_search.relabel``) to a fresh run? Per checkpoint size.

    python bench/relabel_exact.py [--presets tiny demo base-patch32] [--clips 16] [--labels kinetics400]

Random checkpoints (``xclip_core.checkpoint``) with the logit scale of a trained X-CLIP (100) and the
random-init one (14.3). Random pixel clips. Max absolute difference in label probability between:

  store    a fresh fp32 run with --store-prompt-features: probs from the fp16-rounded visual tokens
           it stores (jobs.encoder), scored in batches of 4
  nostore  a fresh fp32 run without it: probs from the fp32 tokens
  bf16     a fresh bf16 run (the CUDA default), tokens rounded to fp16 as stored, scored in bf16
and the relabel: the stored (L2-normalised fp32) embedding and the stored fp16 tokens, fp32, in
batches of 256 (as ``xclip_search.relabel``). Also whether the top-5 labels agree.
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time

import torch
import torch.nn.functional as F


def measure(preset: str, n_clips: int, labels: str, logit_scale: float, seed: int = 0) -> dict:
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.labels import load_labels
    from xclip_core.model import XCLIP
    from xclip_core.preprocess import PreprocessConfig, preprocess
    from xclip_core.scoring import ClipScorer, class_text_features
    from xclip_core.tokenizer import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        path = write_random_checkpoint(f"{tmp}/m", preset=preset, num_frames=8)
        model = XCLIP.from_pretrained(path).eval()
        tok = CLIPTokenizer.from_pretrained(path)
        pre = PreprocessConfig.from_pretrained(path)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(logit_scale))
    ls = load_labels(labels)
    g = torch.Generator().manual_seed(seed)
    size = model.config.vision_config.image_size
    frames = torch.randint(0, 256, (n_clips, 8, size, size, 3), generator=g, dtype=torch.uint8)
    out = {}
    with torch.inference_mode():
        text = class_text_features(model, tok, ls.class_prompts("{}"))
        scorer = ClipScorer(model, text)
        px = preprocess(frames, pre, dtype=torch.float32)
        feats = [model.encode_video(px[i:i + 4]) for i in range(0, n_clips, 4)]
        emb = torch.cat([f.video_embeds for f in feats])
        tok32 = torch.cat([f.visual_tokens for f in feats])
        tok16 = tok32.to(torch.float16)
        store = torch.cat([scorer.probs(emb[i:i + 4], tok16[i:i + 4].float()) for i in range(0, n_clips, 4)])
        nostore = torch.cat([scorer.probs(emb[i:i + 4], tok32[i:i + 4]) for i in range(0, n_clips, 4)])
        stored_emb = F.normalize(emb.float(), dim=-1)
        relabel = scorer.probs(stored_emb, tok16.float())
        model_bf = model.to(torch.bfloat16)
        scorer_bf = ClipScorer(model_bf, text.to(torch.bfloat16))
        f_bf = [model_bf.encode_video(px[i:i + 4].to(torch.bfloat16)) for i in range(0, n_clips, 4)]
        bf16 = torch.cat([scorer_bf.probs(f.video_embeds, f.visual_tokens.to(torch.float16).to(torch.bfloat16))
                          for f in f_bf]).float()
        model.float()
    top = lambda p: p.topk(5, dim=-1).indices  # noqa: E731
    for name, p in (("store", store), ("nostore", nostore), ("bf16", bf16)):
        out[name] = {"max_abs": float((p - relabel).abs().max()), "top5_equal": bool((top(p) == top(relabel)).all()),
                     "max_prob": float(p.max())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+", default=["tiny", "demo", "base-patch32"])
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--labels", default="kinetics400")
    ap.add_argument("--scales", nargs="+", type=float, default=[100.0, 1 / 0.07])
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"{args.clips} random clips, label set {args.labels}; max |p - p_relabel| (top-5 equal?)")
    for preset in args.presets:
        for scale in args.scales:
            t0 = time.perf_counter()
            r = measure(preset, args.clips, args.labels, scale)
            cells = "  ".join(f"{k} {v['max_abs']:.2e} ({'yes' if v['top5_equal'] else 'NO'})" for k, v in r.items())
            print(f"{preset:13s} logit scale {scale:5.1f}: {cells}  [max prob {r['store']['max_prob']:.3f}, "
                  f"{time.perf_counter() - t0:.0f}s]", flush=True)


if __name__ == "__main__":
    main()
