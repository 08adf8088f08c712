"""jobs.gpu_defaults: what "auto" means for the encoder on CUDA and on CPU."""
from __future__ import annotations

import pytest

from jobs.config import ConfigError, EncoderConfig
from jobs.gpu_defaults import encoder_uses_cuda, resolve_encoder


def test_auto_settings_by_device():
    cfg = EncoderConfig(model="m")
    assert (cfg.precision, cfg.batch_size, cfg.compile) == ("auto", None, None)
    gpu = resolve_encoder(cfg, cuda=True)
    assert (gpu.precision, gpu.batch_size, gpu.compile) == ("bf16", 128, True)
    cpu = resolve_encoder(cfg, cuda=False)
    assert (cpu.precision, cpu.batch_size, cpu.compile) == ("fp32", 16, False)


def test_explicit_settings_are_kept():
    cfg = EncoderConfig(model="m", precision="fp16", batch_size=8, compile=False)
    assert resolve_encoder(cfg, cuda=True) == cfg
    assert resolve_encoder(EncoderConfig(model="m", precision="bf16"), cuda=False).precision == "bf16"


def test_device_rule():
    assert encoder_uses_cuda(EncoderConfig(model="m"), 1) and not encoder_uses_cuda(EncoderConfig(model="m"), 0)
    assert not encoder_uses_cuda(EncoderConfig(model="m", device="cpu"), 4)
    assert encoder_uses_cuda(EncoderConfig(model="m", device="cuda"), 0)


def test_invalid_values_still_rejected():
    with pytest.raises(ConfigError, match="encoder.batch_size"):
        EncoderConfig(model="m", batch_size=0)
    with pytest.raises(ConfigError, match="encoder.precision"):
        EncoderConfig(model="m", precision="fp8")
