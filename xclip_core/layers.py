"""Building blocks of X-CLIP. Attribute names equal the Hugging Face checkpoint keys.

One plain forward per block: this is the reference. The inference speed-ups (a fused
q/k/v matmul, an in-place cross-frame layer, folded quick_gelu scales) live in
``xclip_core.fused``, which swaps these blocks for subclasses with the same parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


QUICK_GELU_K = 1.702


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(QUICK_GELU_K * x)


class Attention(nn.Module):
    """Multi-head self-attention with biased q/k/v/out projections (scale head_dim**-0.5)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.num_heads = heads
        self.head_dim = dim // heads
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, N, D] -> q, k, v, each [B, H, N, hd]."""
        B, N, _ = x.shape
        return tuple(lin(x).view(B, N, self.num_heads, self.head_dim).transpose(1, 2)
                     for lin in (self.q_proj, self.k_proj, self.v_proj))

    def attend(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
               is_causal: bool = False) -> torch.Tensor:
        """[B, N, D] -> [B, N, D] attention output before ``out_proj``."""
        B, N, D = x.shape
        q, k, v = self.qkv(x)  # [B, H, N, hd] each
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)  # [B, H, N, hd]
        return y.transpose(1, 2).reshape(B, N, D)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        return self.out_proj(self.attend(x, attn_mask, is_causal))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(quick_gelu(self.fc1(x)))


class EncoderLayer(nn.Module):
    """Pre-LN transformer layer (text encoder and MIT)."""

    def __init__(self, dim: int, hidden: int, heads: int, eps: float):
        super().__init__()
        self.self_attn = Attention(dim, heads)
        self.layer_norm1 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, hidden)
        self.layer_norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), attn_mask, is_causal)
        x = x + self.mlp(self.layer_norm2(x))
        return x


class CrossFrameLayer(EncoderLayer):
    """Vision layer with a cross-frame message token (VideoX's CrossFramelAttentionBlock).

    Input and output are [B*T, N+1, D]: N = 1 + patches real tokens plus one
    slot for the message token, whose content on input is ignored and on
    output is undefined.
    """

    def __init__(self, dim: int, hidden: int, heads: int, eps: float, num_frames: int):
        super().__init__(dim, hidden, heads, eps)
        self.num_frames = num_frames
        self.message_fc = nn.Linear(dim, dim)
        self.message_ln = nn.LayerNorm(dim, eps=eps)
        self.message_attn = Attention(dim, heads)

    def message(self, cls_tokens: torch.Tensor) -> torch.Tensor:
        """[B*T, D] class tokens -> [B*T, D] message tokens (attention across a video's T frames)."""
        BT, D = cls_tokens.shape
        msg = self.message_fc(cls_tokens).view(BT // self.num_frames, self.num_frames, D)  # [B, T, D]
        msg = msg + self.message_attn(self.message_ln(msg))
        return msg.view(BT, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N = x.shape[1] - 1
        msg = self.message(x[:, 0])
        x = torch.cat([x[:, :N], msg.unsqueeze(1)], dim=1)  # [B*T, N+1, D]
        x = x + self.self_attn(self.layer_norm1(x))
        real = x[:, :N]
        real = real + self.mlp(self.layer_norm2(real))
        return torch.cat([real, x[:, N:]], dim=1)


class CrossAttention(nn.Module):
    """Prompt-generator attention: text queries over visual tokens; q/k/v without bias."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.num_heads = heads
        self.head_dim = dim // heads
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        B, K, P = x.shape
        N = visual.shape[1]
        H, hd = self.num_heads, self.head_dim
        q = self.q_proj(x).view(B, K, H, hd).transpose(1, 2)  # [B, H, K, hd]
        k = self.k_proj(visual).view(B, N, H, hd).transpose(1, 2)  # [B, H, N, hd]
        v = self.v_proj(visual).view(B, N, H, hd).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v)  # [B, H, K, hd]
        return self.proj(y.transpose(1, 2).reshape(B, K, P))


class PromptGeneratorLayer(nn.Module):
    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.cross_attn = CrossAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm3 = nn.LayerNorm(dim, eps=eps)
        # Sequential indices 0 and 3 as in the checkpoint (1 = activation, 2 = dropout).
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.Identity(), nn.Identity(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        x = x + self.cross_attn(self.norm1(x), visual)
        x = x + self.mlp[3](quick_gelu(self.mlp[0](self.norm3(x))))
        return x


class PromptGenerator(nn.Module):
    """Video-specific prompt generator (VideoX's VideoSpecificPrompt); returns alpha * x."""

    def __init__(self, dim: int, heads: int, layers: int, alpha: float, eps_visual: float, eps_text: float):
        super().__init__()
        self.layernorm = nn.LayerNorm(dim, eps=eps_visual)
        self.decoder = nn.ModuleList([PromptGeneratorLayer(dim, heads, eps_text) for _ in range(layers)])
        self.alpha = nn.Parameter(torch.full((dim,), float(alpha)))

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        visual = self.layernorm(visual)
        for layer in self.decoder:
            text = layer(text, visual)
        return self.alpha * text
