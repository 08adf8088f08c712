"""X-CLIP (Ni et al., ECCV 2022) in plain PyTorch, loading Hugging Face checkpoints.

Reads top to bottom: text tower, vision tower (cross-frame message tokens in
every layer), multi-frame integration transformer (MIT), then the model that
ties them together with the video-specific prompt generator. Attribute names
equal the checkpoint's state-dict keys, so ``load_state_dict(strict=True)``
works on a transformers ``XCLIPModel`` state dict.

Shapes: B videos, T frames, K texts, L tokens, D vision width, P projection
dim, N = 1 + patches tokens per frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import XCLIPConfig, XCLIPTextConfig, XCLIPVisionConfig
from .layers import CrossFrameLayer, EncoderLayer, PromptGenerator
from .loading import check_state_dict, load_checkpoint, read_state_shapes


@dataclass
class VideoFeatures:
    video_embeds: torch.Tensor  # [B, P] MIT output, not normalised
    visual_tokens: torch.Tensor  # [B, N-1, P] patch tokens for the prompt generator


@dataclass
class XCLIPOutput:
    logits_per_video: torch.Tensor  # [B, K]
    video_embeds: torch.Tensor  # [B, P] L2-normalised
    text_embeds: torch.Tensor  # [B, K, P] prompted, L2-normalised


# ----------------------------------------------------------------------------- text


class TextEmbeddings(nn.Module):
    def __init__(self, cfg: XCLIPTextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embedding = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        L = input_ids.shape[1]
        if L > self.position_embedding.num_embeddings:
            raise ValueError(f"text length {L} exceeds max_position_embeddings "
                             f"{self.position_embedding.num_embeddings}")
        return self.token_embedding(input_ids) + self.position_embedding.weight[:L]  # [K, L, Dt]


class TextEncoder(nn.Module):
    def __init__(self, cfg: XCLIPTextConfig):
        super().__init__()
        self.layers = nn.ModuleList([
            EncoderLayer(cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.layer_norm_eps)
            for _ in range(cfg.num_hidden_layers)])


class TextTransformer(nn.Module):
    """CLIP text encoder: causal pre-LN transformer, pooled at the first EOS (the max id)."""

    def __init__(self, cfg: XCLIPTextConfig):
        super().__init__()
        self.embeddings = TextEmbeddings(cfg)
        self.encoder = TextEncoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        K, L = input_ids.shape
        x = self.embeddings(input_ids)  # [K, L, Dt]
        mask, causal = None, True
        if attention_mask is not None and not bool(attention_mask.all()):
            # causal AND key-not-padding; the diagonal stays allowed so no row is fully masked
            eye = torch.eye(L, dtype=torch.bool, device=x.device)
            keep = attention_mask.to(torch.bool)[:, None, None, :] | eye  # [K, 1, L, L]
            mask, causal = keep & torch.ones(L, L, dtype=torch.bool, device=x.device).tril(), False
        for layer in self.encoder.layers:
            x = layer(x, mask, causal)
        x = self.final_layer_norm(x)
        eos = input_ids.argmax(dim=-1)  # [K] first position of the highest id (EOS)
        return x[torch.arange(K, device=x.device), eos]  # [K, Dt]


# ----------------------------------------------------------------------------- vision


class VisionEmbeddings(nn.Module):
    def __init__(self, cfg: XCLIPVisionConfig):
        super().__init__()
        D = cfg.hidden_size
        self.class_embedding = nn.Parameter(torch.zeros(D))
        self.patch_embedding = nn.Conv2d(cfg.num_channels, D, kernel_size=cfg.patch_size,
                                         stride=cfg.patch_size, bias=False)
        self.position_embedding = nn.Embedding(cfg.num_patches + 1, D)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """[BT, 3, H, W] -> [BT, N+1, D]; the last slot is left for the message token."""
        BT, C, H, W = pixels.shape
        w = self.patch_embedding.weight  # [D, C, p, p]
        D, p = w.shape[0], w.shape[-1]
        g = H // p
        # the stride-p convolution as one matmul over flattened patches (cuDNN runs a 32x32-kernel
        # conv several times slower than the equivalent GEMM)
        patches = pixels.to(w.dtype).reshape(BT, C, g, p, g, p).permute(0, 2, 4, 1, 3, 5)  # [BT, g, g, C, p, p]
        patches = patches.reshape(BT, g * g, C * p * p) @ w.reshape(D, C * p * p).t()  # [BT, N-1, D]
        pos = self.position_embedding.weight  # [N, D]
        cls = (self.class_embedding + pos[0]).expand(BT, 1, D)
        slot = patches.new_zeros(BT, 1, D)  # spare slot for the message token
        # cat promotes to fp32 under autocast, as transformers' embeddings do
        x = torch.cat([cls, patches + pos[1:], slot], dim=1)  # [BT, N+1, D]
        return x


class VisionEncoder(nn.Module):
    def __init__(self, cfg: XCLIPVisionConfig):
        super().__init__()
        self.layers = nn.ModuleList([
            CrossFrameLayer(cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads,
                            cfg.layer_norm_eps, cfg.num_frames)
            for _ in range(cfg.num_hidden_layers)])


class VisionTransformer(nn.Module):
    def __init__(self, cfg: XCLIPVisionConfig):
        super().__init__()
        self.embeddings = VisionEmbeddings(cfg)
        self.pre_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.encoder = VisionEncoder(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[BT, 3, H, W] -> (pooled [BT, D] after post_layernorm, patch tokens [BT, N-1, D] before it)."""
        x = self.pre_layernorm(self.embeddings(pixels))  # [BT, N+1, D]; message slot is overwritten
        for layer in self.encoder.layers:
            x = layer(x)
        pooled = self.post_layernorm(x[:, 0])
        return pooled, x[:, 1:-1]


# ----------------------------------------------------------------------------- MIT


class MITEncoder(nn.Module):
    def __init__(self, cfg: XCLIPVisionConfig):
        super().__init__()
        self.layers = nn.ModuleList([
            EncoderLayer(cfg.mit_hidden_size, cfg.mit_intermediate_size, cfg.mit_num_attention_heads,
                         cfg.layer_norm_eps)
            for _ in range(cfg.mit_num_hidden_layers)])


class MultiframeIntegrationTransformer(nn.Module):
    def __init__(self, cfg: XCLIPVisionConfig):
        super().__init__()
        self.position_embedding = nn.Parameter(torch.zeros(1, cfg.num_frames, cfg.mit_hidden_size))
        self.encoder = MITEncoder(cfg)

    def forward(self, cls_features: torch.Tensor) -> torch.Tensor:
        """[B, T, P] per-frame features -> [B, P] video embedding."""
        x = cls_features + self.position_embedding
        for layer in self.encoder.layers:
            x = layer(x)
        x = x.to(cls_features.dtype) + cls_features  # residual onto the input without positions
        return x.mean(dim=1)


# ----------------------------------------------------------------------------- X-CLIP


class XCLIP(nn.Module):
    def __init__(self, config: XCLIPConfig):
        super().__init__()
        self.config = config
        t, v, P = config.text_config, config.vision_config, config.projection_dim
        self.text_model = TextTransformer(t)
        self.vision_model = VisionTransformer(v)
        self.visual_projection = nn.Linear(v.hidden_size, P, bias=False)
        self.text_projection = nn.Linear(t.hidden_size, P, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.prompts_visual_layernorm = nn.LayerNorm(v.hidden_size, eps=v.layer_norm_eps)
        self.prompts_visual_projection = nn.Parameter(torch.zeros(v.hidden_size, P))  # used as x @ W
        self.mit = MultiframeIntegrationTransformer(v)
        self.prompts_generator = PromptGenerator(P, config.prompt_num_attention_heads, config.prompt_layers,
                                                 config.prompt_alpha, v.layer_norm_eps, t.layer_norm_eps)

    @property
    def num_frames(self) -> int:
        return self.config.vision_config.num_frames

    def check_pixels(self, pixel_values: torch.Tensor) -> None:
        v = self.config.vision_config
        if pixel_values.ndim != 5:
            raise ValueError(f"pixel_values must be [B, T, C, H, W], got shape {tuple(pixel_values.shape)}")
        B, T, C, H, W = pixel_values.shape
        if T != v.num_frames:
            raise ValueError(f"num_frames mismatch: pixel_values has T={T} frames but the checkpoint was "
                             f"trained with num_frames={v.num_frames} (its MIT position embedding is "
                             f"[1, {v.num_frames}, P]); sample {v.num_frames} frames per clip")
        if C != v.num_channels or H != v.image_size or W != v.image_size:
            raise ValueError(f"pixel_values frames are {C}x{H}x{W}, the model expects "
                             f"{v.num_channels}x{v.image_size}x{v.image_size}")

    def encode_video(self, pixel_values: torch.Tensor) -> VideoFeatures:
        """[B, T, 3, H, W] -> VideoFeatures(video_embeds [B, P], visual_tokens [B, N-1, P])."""
        self.check_pixels(pixel_values)
        B, T = pixel_values.shape[:2]
        pooled, tokens = self.vision_model(pixel_values.flatten(0, 1))  # [BT, D], [BT, N-1, D]; frame b*T+t
        cls_features = self.visual_projection(pooled).view(B, T, -1)  # [B, T, P]
        video_embeds = self.mit(cls_features)  # [B, P]
        img = self.prompts_visual_layernorm(tokens) @ self.prompts_visual_projection  # [BT, N-1, P]
        img = img.view(B, T, img.shape[1], img.shape[2]).mean(dim=1)  # [B, N-1, P]
        return VideoFeatures(video_embeds=video_embeds, visual_tokens=img)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[K, L] token ids -> [K, P] projected text features (no video prompting)."""
        return self.text_projection(self.text_model(input_ids, attention_mask))

    def prompt_text(self, text_features: torch.Tensor, visual_tokens: torch.Tensor) -> torch.Tensor:
        """text [K, P] + visual tokens [B, N-1, P] -> video-specific text features [B, K, P]."""
        B = visual_tokens.shape[0]
        text = text_features.to(visual_tokens.dtype).unsqueeze(0).expand(B, -1, -1)  # [B, K, P]
        return text + self.prompts_generator(text, visual_tokens)

    def video_logits(self, video_embeds: torch.Tensor, prompted_text: torch.Tensor) -> torch.Tensor:
        """video [B, P] x prompted text [B, K, P] -> logits_per_video [B, K] (cosine * logit_scale.exp())."""
        v = F.normalize(video_embeds, dim=-1)
        t = F.normalize(prompted_text, dim=-1)
        return torch.einsum("bd,bkd->bk", v, self.logit_scale.exp() * t)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> XCLIPOutput:
        video = self.encode_video(pixel_values)
        text = self.encode_text(input_ids, attention_mask)  # [K, P]
        prompted = self.prompt_text(text, video.visual_tokens)  # [B, K, P]
        return XCLIPOutput(logits_per_video=self.video_logits(video.video_embeds, prompted),
                           video_embeds=F.normalize(video.video_embeds, dim=-1),
                           text_embeds=F.normalize(prompted, dim=-1))

    @classmethod
    def from_pretrained(cls, source: str | Path, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, fuse: bool = True) -> "XCLIP":
        """Load from a local HF-layout dir, ``s3://bucket/prefix`` or a hub id, in eval mode.

        Weights come from safetensors only and must match the config exactly (names, count,
        shapes). ``dtype`` is the weights' dtype on ``device`` whatever the file stores
        (fp32 by default; bf16/fp16 for half-precision inference, or use autocast).
        ``fuse``: swap in the inference speed-ups of ``xclip_core.fused`` (same function and
        parameters; the reference forward runs while autograd is on).
        """
        config, state = load_checkpoint(source)
        model = cls._checked_on_meta(config, state)
        model.load_state_dict(state, strict=True, assign=True)
        if fuse:
            from .fused import fuse as fuse_blocks

            fuse_blocks(model)
        return model.to(device=device, dtype=dtype).eval()

    @classmethod
    def _checked_on_meta(cls, config: XCLIPConfig, state: dict[str, torch.Tensor]) -> "XCLIP":
        """The model on the meta device (no memory), after ``check_state_dict``: key count,
        names and shapes of ``state`` against it, with a readable error."""
        with torch.device("meta"):
            model = cls(config)
        check_state_dict(model, state)
        return model


def inspect_checkpoint(source: str | Path) -> XCLIPConfig:
    """The config of a checkpoint whose weights would load strictly (key count, names, shapes),
    checked from the file headers alone: for a driver that only needs to validate."""
    config, state = load_checkpoint(source, read=read_state_shapes)
    XCLIP._checked_on_meta(config, state)
    return config
