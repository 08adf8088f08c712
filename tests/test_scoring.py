"""xclip_core.scoring: class text features and exact/approximate scores against the model's own forward."""
import torch
import torch.nn.functional as F

from xclip_core.scoring import ClipScorer, class_text_features


class _Tok:
    def __call__(self, texts):
        ids = torch.tensor([[1 + sum(map(ord, t)) % 50, 2 + len(t) % 40, 127] for t in texts])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _model():
    from xclip_core.checkpoint import init_weights, preset_config
    from xclip_core.model import XCLIP

    return init_weights(XCLIP(preset_config("tiny", num_frames=4, vocab_size=128)), seed=0)


def test_single_prompt_classes_equal_the_models_forward():
    torch.manual_seed(0)
    model = _model().eval()
    tok = _Tok()
    texts = ["a dog", "a cat", "a car"]
    px = torch.randn(2, model.num_frames, 3, model.config.vision_config.image_size,
                     model.config.vision_config.image_size)
    enc = tok(texts)
    with torch.inference_mode():
        ref = model(px, enc["input_ids"], enc["attention_mask"]).logits_per_video
        feats = model.encode_video(px)
        scorer = ClipScorer(model, class_text_features(model, tok, [[t] for t in texts]))
        got = scorer.logits(feats.video_embeds, feats.visual_tokens)
        probs = scorer.probs(feats.video_embeds, feats.visual_tokens)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert torch.allclose(probs.sum(-1), torch.ones(2))


def test_several_prompts_average_in_normalised_space_and_approximate_mode():
    model = _model().eval()
    tok = _Tok()
    with torch.no_grad():
        raw = model.encode_text(tok(["a", "bb"])["input_ids"])
        avg = class_text_features(model, tok, [["a", "bb"]])[0]
    want = F.normalize(raw, dim=-1).mean(0) * raw.norm(dim=-1).mean()
    torch.testing.assert_close(avg, want)
    v = torch.randn(3, raw.shape[1])
    with torch.no_grad():
        approx = ClipScorer(model, raw).logits(v)
    torch.testing.assert_close(approx, model.logit_scale.exp() * F.normalize(v, dim=-1) @ F.normalize(raw, dim=-1).T)
