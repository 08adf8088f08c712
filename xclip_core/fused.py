"""Inference speed-ups for the blocks of ``xclip_core.layers``, kept apart from the reference.

``fuse(model)`` swaps, in place, the class of each block for a subclass below. The subclasses
hold no new parameters (state-dict keys are unchanged) and compute the same function; each
falls back to the reference forward while autograd is on or under ``torch.compile`` (which
does its own fusion). ``XCLIP.from_pretrained`` applies it unless told not to.

- ``FusedAttention`` (the vision tower's self-attention, the model's hot matmuls): q/k/v as one
  matmul on a concatenated [3D, D] weight, cached until a weight changes (3 D^2 extra values
  per layer: 85 MB in fp32 for B/32).
- ``FusedMLP`` / ``FusedPromptGeneratorLayer``: quick_gelu(h) = silu(1.702 h) / 1.702 with both
  scales folded into the two matmuls: one activation pass instead of three, bias adds fused.
- ``FusedCrossFrameLayer``: updates the caller's [BT, N+1, D] buffer in place, with the message
  token in its spare slot (no concatenation or slicing per layer) and the residual adds fused
  into the matmuls (``addmm_``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import QUICK_GELU_K, Attention, CrossFrameLayer, MLP, PromptGeneratorLayer


def _inference() -> bool:
    """True where derived-weight caches and in-place updates are safe."""
    return not torch.is_grad_enabled() and not torch.compiler.is_compiling()


def derived(module: nn.Module, name: str, params: tuple[torch.Tensor, ...], build):
    """``build()``, cached on ``module`` until one of ``params`` changes (storage, version, dtype, device).

    For weights derived from checkpoint parameters at inference time (a fused qkv weight, a
    scaled bias); the state dict keeps the checkpoint's keys.
    """
    # inference tensors (a model built under torch.inference_mode) have no version counter
    key = tuple((p.data_ptr(), None if p.is_inference() else p._version, p.dtype, p.device) for p in params)
    hit = module.__dict__.get(name)
    if hit is None or hit[0] != key:
        hit = (key, build())
        module.__dict__[name] = hit
    return hit[1]


def fused_mlp(x: torch.Tensor, fc1: nn.Linear, fc2: nn.Linear, owner: nn.Module) -> torch.Tensor:
    """fc2(quick_gelu(fc1(x))) with the 1.702 scales folded into the matmuls (inference only)."""
    shape = x.shape
    b1 = derived(owner, "_scaled_fc1_bias", (fc1.bias,), lambda: fc1.bias * QUICK_GELU_K)
    u = torch.addmm(b1, x.reshape(-1, shape[-1]), fc1.weight.t(), alpha=QUICK_GELU_K)  # 1.702 fc1(x)
    F.silu(u, inplace=True)  # = 1.702 * quick_gelu(fc1(x))
    return torch.addmm(fc2.bias, u, fc2.weight.t(), alpha=1.0 / QUICK_GELU_K).view(*shape[:-1], -1)


class FusedAttention(Attention):
    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not _inference():
            return super().qkv(x)
        B, N, _ = x.shape
        params = (self.q_proj.weight, self.k_proj.weight, self.v_proj.weight,
                  self.q_proj.bias, self.k_proj.bias, self.v_proj.bias)
        w, b = derived(self, "_qkv_cache", params, lambda: (torch.cat(params[:3]), torch.cat(params[3:])))
        qkv = F.linear(x, w, b).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return tuple(qkv.unbind(0))  # [B, H, N, hd] each


class FusedMLP(MLP):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_mlp(x, self.fc1, self.fc2, self) if _inference() else super().forward(x)


class FusedPromptGeneratorLayer(PromptGeneratorLayer):
    def forward(self, x: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        if not _inference():
            return super().forward(x, visual)
        x = x + self.cross_attn(self.norm1(x), visual)
        return x + fused_mlp(self.norm3(x), self.mlp[0], self.mlp[3], self)


class FusedCrossFrameLayer(CrossFrameLayer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _inference():
            return super().forward(x)
        BT, N1, D = x.shape
        x[:, N1 - 1] = self.message(x[:, 0])  # the spare slot; the MLP also runs on this row (one
        flat = x.view(BT * N1, D)             # row in N+1, ~2% of its FLOPs): cheaper than slicing
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


def fuse(model: nn.Module) -> nn.Module:
    """Swap every block of ``model`` for its fused subclass, in place; returns ``model``.
    Only the cross-frame layers' self-attention gets the fused q/k/v (the hot matmuls; elsewhere
    the cached weight's memory is not worth it)."""
    for m in model.modules():
        if type(m) is CrossFrameLayer:
            m.__class__ = FusedCrossFrameLayer
            m.self_attn.__class__ = FusedAttention
        if type(m) is MLP:
            m.__class__ = FusedMLP
        elif type(m) is PromptGeneratorLayer:
            m.__class__ = FusedPromptGeneratorLayer
    return model
