"""Building blocks of X-CLIP. Attribute names equal the Hugging Face checkpoint keys.

Two things here are about speed, not structure:
- the vision tower's self-attention runs q/k/v as one matmul. The weights stay
  separate parameters (``q_proj``/``k_proj``/``v_proj``, as in the checkpoint);
  the concatenated weight is built on the fly while autograd is on, and cached
  (rebuilt when a weight changes) in inference: 3 D^2 extra values per layer,
  85 MB in fp32 for B/32.
- ``CrossFrameLayer`` has an in-place inference path that keeps the message
  token in a spare slot of one [BT, N+1, D] buffer instead of concatenating
  and slicing in every layer. Both paths compute the same function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


QUICK_GELU_K = 1.702


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(QUICK_GELU_K * x)


def _inference() -> bool:
    """True where derived-weight caches and in-place updates are safe."""
    return not torch.is_grad_enabled() and not torch.compiler.is_compiling()


def derived(module: nn.Module, name: str, params: tuple[torch.Tensor, ...], build):
    """``build()``, cached on ``module`` until one of ``params`` changes (storage, version, dtype, device).

    For weights derived from checkpoint parameters at inference time (a fused
    qkv weight, a scaled bias); the state dict keeps the checkpoint's keys.
    """
    # inference tensors (a model loaded under torch.inference_mode) have no version counter
    key = tuple((p.data_ptr(), None if p.is_inference() else p._version, p.dtype, p.device) for p in params)
    hit = module.__dict__.get(name)
    if hit is None or hit[0] != key:
        hit = (key, build())
        module.__dict__[name] = hit
    return hit[1]


class Attention(nn.Module):
    """Multi-head self-attention with biased q/k/v/out projections (scale head_dim**-0.5)."""

    def __init__(self, dim: int, heads: int, fuse_qkv: bool = False):
        super().__init__()
        self.num_heads = heads
        self.head_dim = dim // heads
        self.fuse_qkv = fuse_qkv  # one cached [3D, D] matmul in inference (costs 3 D^2 extra memory)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def qkv_weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenated [3D, D] weight and [3D] bias, in q, k, v order."""
        params = (self.q_proj.weight, self.k_proj.weight, self.v_proj.weight,
                  self.q_proj.bias, self.k_proj.bias, self.v_proj.bias)
        if not _inference():
            return torch.cat(params[:3]), torch.cat(params[3:])
        return derived(self, "_qkv_cache", params, lambda: (torch.cat(params[:3]), torch.cat(params[3:])))

    def attend(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
               is_causal: bool = False) -> torch.Tensor:
        """[B, N, D] -> [B, N, D] attention output before ``out_proj``."""
        B, N, D = x.shape
        H, hd = self.num_heads, self.head_dim
        if self.fuse_qkv:
            w, b = self.qkv_weight_bias()
            qkv = F.linear(x, w, b).view(B, N, 3, H, hd).permute(2, 0, 3, 1, 4)  # [3, B, H, N, hd]
            q, k, v = qkv.unbind(0)
        else:
            q, k, v = (lin(x).view(B, N, H, hd).transpose(1, 2)  # [B, H, N, hd]
                       for lin in (self.q_proj, self.k_proj, self.v_proj))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)  # [B, H, N, hd]
        return y.transpose(1, 2).reshape(B, N, D)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        return self.out_proj(self.attend(x, attn_mask, is_causal))


def mlp(x: torch.Tensor, fc1: nn.Linear, fc2: nn.Linear, owner: nn.Module) -> torch.Tensor:
    """fc2(quick_gelu(fc1(x))). In inference, quick_gelu(h) = silu(1.702 h) / 1.702 with both scales
    folded into the matmuls: one activation pass instead of three, and the bias adds stay fused."""
    if not _inference():
        return fc2(quick_gelu(fc1(x)))
    shape = x.shape
    b1 = derived(owner, "_scaled_fc1_bias", (fc1.bias,), lambda: fc1.bias * QUICK_GELU_K)
    u = torch.addmm(b1, x.reshape(-1, shape[-1]), fc1.weight.t(), alpha=QUICK_GELU_K)  # 1.702 fc1(x)
    F.silu(u, inplace=True)  # = 1.702 * quick_gelu(fc1(x))
    return torch.addmm(fc2.bias, u, fc2.weight.t(), alpha=1.0 / QUICK_GELU_K).view(*shape[:-1], -1)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mlp(x, self.fc1, self.fc2, self)


class EncoderLayer(nn.Module):
    """Pre-LN transformer layer (text encoder and MIT)."""

    def __init__(self, dim: int, hidden: int, heads: int, eps: float, fuse_qkv: bool = False):
        super().__init__()
        self.self_attn = Attention(dim, heads, fuse_qkv)
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
        super().__init__(dim, hidden, heads, eps, fuse_qkv=True)  # the hot matmuls of the model
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
        if _inference():
            return self._forward_inplace(x, msg)
        x = torch.cat([x[:, :N], msg.unsqueeze(1)], dim=1)  # [B*T, N+1, D]
        x = x + self.self_attn(self.layer_norm1(x))
        real = x[:, :N]
        real = real + self.mlp(self.layer_norm2(real))
        return torch.cat([real, x[:, N:]], dim=1)


    def _forward_inplace(self, x: torch.Tensor, msg: torch.Tensor) -> torch.Tensor:
        """Inference form of forward: updates the caller's buffer ``x`` in place.

        The message token goes into the spare slot (no concat); residual adds are
        fused into the matmuls (``addmm_``); quick_gelu(h) = silu(1.702 h) / 1.702
        with the 1.702 scales folded into the two MLP matmuls. The MLP also runs
        on the message row (one row in N+1, ~2% of its FLOPs): cheaper than
        slicing copies, and that row is overwritten by the next layer.
        """
        BT, N1, D = x.shape
        x[:, N1 - 1] = msg
        flat = x.view(BT * N1, D)  # [BT*(N+1), D] view of the residual stream
        y = self.self_attn.attend(self.layer_norm1(x)).view(BT * N1, D)
        _residual_linear_(flat, y, self.self_attn.out_proj)
        h = self.layer_norm2(flat)
        fc1, fc2 = self.mlp.fc1, self.mlp.fc2
        b1 = derived(self.mlp, "_scaled_fc1_bias", (fc1.bias,), lambda: fc1.bias * QUICK_GELU_K)
        u = torch.addmm(b1, h, fc1.weight.t(), alpha=QUICK_GELU_K)  # 1.702 fc1(h); beta=1 keeps cuBLASLt's bias epilogue
        F.silu(u, inplace=True)  # = 1.702 * quick_gelu(fc1(h))
        _residual_linear_(flat, u, fc2, alpha=1.0 / QUICK_GELU_K)
        return x



def _residual_linear_(out: torch.Tensor, x: torch.Tensor, lin: nn.Linear, alpha: float = 1.0) -> None:
    """out += alpha * x @ W.T + b in place, the residual add fused into the matmul where dtypes match."""
    w = lin.weight
    if out.dtype == x.dtype == w.dtype:
        out.addmm_(x, w.t(), alpha=alpha)
    else:  # autocast: the matmul runs in the autocast dtype, the residual stream stays fp32
        out.add_(torch.mm(x, w.t()), alpha=alpha)
    out.add_(lin.bias)


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
        x = x + mlp(self.norm3(x), self.mlp[0], self.mlp[3], self)
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
