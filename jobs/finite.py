"""No ``ok`` row with a non-finite or null embedding.

* :func:`probe_model` (driver, part of the model check before anything is
  listed or written): loads the weights once on the CPU in fp32, encodes the
  prompts of the first ``PROBE_LABELS`` labels and two probe clips (mid-gray and
  a gradient), and scores them (all 400 prompts of kinetics400 would cost tens
  of seconds on a CPU; a NaN in one label's text only shows per clip, below).
  Any NaN or infinity (corrupt weights, a broken conversion) is a ``ModelError``:
  ``xclip-index`` exits 3 and writes nothing.
* :func:`nonfinite_rows` (encoder actors): clips whose embedding or label
  probabilities are not finite (e.g. a half-precision overflow on one input)
  get an error instead of vectors, so the assembler fails their video with
  that reason (``jobs.assembler``), which checks again before an ``ok`` row.
"""
from __future__ import annotations

import numpy as np

NONFINITE = "non-finite model output (NaN or infinity)"
PROBE_LABELS = 16


def nonfinite_rows(*arrays: np.ndarray) -> np.ndarray:
    """bool [n]: rows where any of ``arrays`` (each [n, ...]) holds a NaN or an infinity."""
    bad = np.zeros(len(arrays[0]), bool)
    for a in arrays:
        if a is not None and a.size:
            bad |= ~np.isfinite(a.reshape(len(a), -1).astype(np.float32)).all(axis=1)
    return bad


def probe_model(local_dir, config, prompts) -> str | None:
    """None when the model's outputs are finite on the probe; else what was not finite."""
    import torch

    from xclip_core.model import XCLIP
    from xclip_core.preprocess import PreprocessConfig, preprocess
    from xclip_core.scoring import ClipScorer, class_text_features
    from xclip_core.tokenizer import CLIPTokenizer

    model = XCLIP.from_pretrained(local_dir)
    pre = PreprocessConfig.from_pretrained(local_dir)
    t, s = int(config.vision_config.num_frames), int(config.vision_config.image_size)
    gray = np.full((t, s, s, 3), 128, np.uint8)
    ramp = np.broadcast_to(np.linspace(0, 255, s, dtype=np.float32).astype(np.uint8)[None, None, :, None],
                           (t, s, s, 3))
    clips = torch.from_numpy(np.stack([gray, ramp]))
    prompts = list(prompts)[:PROBE_LABELS]
    with torch.inference_mode():
        text = class_text_features(model, CLIPTokenizer.from_pretrained(local_dir), prompts)
        if not torch.isfinite(text).all():
            bad = int((~torch.isfinite(text).all(dim=-1)).sum())
            return f"the text features of {bad} of {len(prompts)} labels"
        feats = model.encode_video(preprocess(clips, pre))
        probs = ClipScorer(model, text).probs(feats.video_embeds, feats.visual_tokens)
    for name, x in (("the video embeddings", feats.video_embeds), ("the visual tokens", feats.visual_tokens),
                    ("the label probabilities", probs)):
        if not torch.isfinite(x).all():
            return name
    return None
