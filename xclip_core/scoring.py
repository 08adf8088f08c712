"""Zero-shot scoring of clips against classes, each described by one or more text prompts.

One rule for every consumer: the job's labels, a moderation policy's categories, and
relabel / moderate from stored features. Pure torch; ``model`` is an ``xclip_core.model.XCLIP``.

Class text features (``class_text_features``): every prompt is encoded once
(``encode_text``). A class with one prompt uses that feature as is, which is exactly what
X-CLIP does. A class with several prompts averages them in normalised space: the mean of the
L2-normalised features, scaled to the mean norm of the raw features, so the prompt generator
sees a feature of the usual size.

Scores (``ClipScorer``):
  exact        X-CLIP's own logits, when the clip's visual tokens are known (at encode time,
               or stored with ``--store-prompt-features``):
               ``video_logits(video_embeds, prompt_text(text, visual_tokens))``
  approximate  without visual tokens (no video-specific prompting):
               ``logit_scale.exp() * cos(video_embeds, text)``
Probabilities are the softmax over the classes (per clip).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

EXACT = "exact"
APPROXIMATE = "approximate"


def class_text_features(model, tokenizer, prompts: Sequence[Sequence[str]], *,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """One entry of ``prompts`` per class (its prompt texts) -> text features [K, P]."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every class needs at least one prompt")
    device = device or next(model.parameters()).device
    flat = [p for ps in prompts for p in ps]
    with torch.no_grad():
        enc = tokenizer(flat)
        feats = model.encode_text(enc["input_ids"].to(device), enc["attention_mask"].to(device))  # [sum, P]
    out, i = [], 0
    for ps in prompts:
        f = feats[i:i + len(ps)]
        i += len(ps)
        if len(ps) == 1:
            out.append(f[0])
        else:
            f32 = f.float()
            out.append((F.normalize(f32, dim=-1).mean(0) * f32.norm(dim=-1).mean()).to(f.dtype))
    return torch.stack(out)  # [K, P]


class ClipScorer:
    """``ClipScorer(model, text_features [K, P])``; ``probs(video_embeds [B, P], visual_tokens
    [B, N, P] | None) -> [B, K]`` (exact with tokens, approximate without; see module doc)."""

    def __init__(self, model, text_features: torch.Tensor):
        self.model = model
        self.text = text_features

    def logits(self, video_embeds: torch.Tensor, visual_tokens: torch.Tensor | None = None) -> torch.Tensor:
        if visual_tokens is not None:
            prompted = self.model.prompt_text(self.text, visual_tokens)  # [B, K, P]
            return self.model.video_logits(video_embeds, prompted)
        v = F.normalize(video_embeds.float(), dim=-1)
        t = F.normalize(self.text.float(), dim=-1)
        return self.model.logit_scale.exp().float() * (v @ t.T)

    def probs(self, video_embeds: torch.Tensor, visual_tokens: torch.Tensor | None = None) -> torch.Tensor:
        return torch.softmax(self.logits(video_embeds, visual_tokens).float(), dim=-1)


class ScaleOnly:
    """What approximate scoring needs of a model (``logit_scale``): ``ClipScorer(ScaleOnly(model), text)``
    is small enough to ship to many workers."""

    def __init__(self, model):
        self.logit_scale = model.logit_scale.detach().clone()
