"""Config parsing and XCLIP.from_pretrained: local dirs, s3:// (loopback server), clear errors."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

import transformers  # the oracle: a broken install must fail, not skip

from xclip_core.config import XCLIPConfig
from xclip_core.loading import CheckpointError, resolve_checkpoint, weights_sha256
from xclip_core.model import XCLIP, inspect_checkpoint

VOCAB = 1000
T = 4


def tiny_hf_config(num_frames: int = T):
    return transformers.XCLIPConfig(
        text_config=dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           mit_hidden_size=32, mit_intermediate_size=64, mit_num_attention_heads=4,
                           image_size=32, patch_size=8, num_frames=num_frames),
        projection_dim=32, prompt_num_attention_heads=4)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A checkpoint written by transformers' own save_pretrained, and the model that wrote it."""
    torch.manual_seed(0)
    model = transformers.XCLIPModel(tiny_hf_config()).eval()
    d = tmp_path_factory.mktemp("hf_ckpt")
    model.save_pretrained(d)
    return d, model


def inputs():
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, T, 3, 32, 32, generator=g)
    ids = torch.tensor([[VOCAB - 2, 5, 6, 7, VOCAB - 1], [VOCAB - 2, 9, VOCAB - 1, VOCAB - 1, VOCAB - 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    return pixels, ids, mask


def assert_same_logits(ours: XCLIP, hf) -> None:
    pixels, ids, mask = inputs()
    with torch.no_grad():
        ref = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask).logits_per_video
        out = ours(pixels, ids, mask).logits_per_video
    assert ((out - ref).abs().max() / ref.abs().max()).item() <= 1e-5


def copy_ckpt(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name not in skip:
            shutil.copy(f, dst / f.name)
    return dst


# ----------------------------------------------------------------------------- config


def test_config_roundtrip_with_transformers_large_variant():
    hc = transformers.XCLIPConfig(
        text_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12),
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           patch_size=14, image_size=336, num_frames=16, mit_hidden_size=768,
                           mit_intermediate_size=3072),
        projection_dim=768)
    cfg = XCLIPConfig.from_dict(json.loads(hc.to_json_string()))
    assert cfg.vision_config.num_patches == 24 * 24 and cfg.vision_config.num_frames == 16
    assert cfg.text_config.hidden_size == 768 and cfg.projection_dim == 768
    back = transformers.XCLIPConfig(**cfg.to_dict())  # transformers accepts what we write
    assert back.vision_config.patch_size == 14 and back.text_config.num_attention_heads == 12
    assert XCLIPConfig.from_dict(cfg.to_dict()) == cfg


def test_config_defaults_and_legacy_dict_keys():
    cfg = XCLIPConfig.from_dict({})
    assert cfg.projection_dim == 512 and cfg.vision_config.patch_size == 32 and cfg.text_config.vocab_size == 49408
    # older hub config.json files carry *_config_dict, which win over *_config
    cfg = XCLIPConfig.from_dict({"text_config": {"hidden_size": 8}, "text_config_dict": {"hidden_size": 512},
                                 "vision_config_dict": {"patch_size": [16, 16], "num_frames": 32}})
    assert cfg.text_config.hidden_size == 512
    assert cfg.vision_config.patch_size == 16 and cfg.vision_config.num_frames == 32
    with pytest.raises(ValueError, match="mit_hidden_size"):
        XCLIPConfig.from_dict({"projection_dim": 256})


# ----------------------------------------------------------------------------- local


def test_save_pretrained_checkpoint_loads_strictly(hf_dir):
    d, hf = hf_dir
    ours = XCLIP.from_pretrained(d)
    assert not ours.training
    hf_keys = {k for k in hf.state_dict() if not k.endswith("position_ids")}
    assert set(ours.state_dict()) == hf_keys
    assert_same_logits(ours, hf)
    assert weights_sha256(d) == hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()


def test_dtype_option(hf_dir, tmp_path):
    ours = XCLIP.from_pretrained(hf_dir[0], dtype=torch.bfloat16)
    assert ours.logit_scale.dtype == torch.bfloat16
    # a half-precision file still loads as fp32 unless asked otherwise
    half = transformers.XCLIPModel.from_pretrained(hf_dir[0]).half()
    half.save_pretrained(tmp_path / "half")
    ours = XCLIP.from_pretrained(tmp_path / "half")
    assert {p.dtype for p in ours.parameters()} == {torch.float32}


# ----------------------------------------------------------------------------- s3


def upload(dir_: Path, bucket: str, prefix: str) -> None:
    import boto3

    s3 = boto3.client("s3")
    for f in dir_.iterdir():
        s3.upload_file(str(f), bucket, f"{prefix}/{f.name}")


def test_from_s3(hf_dir, s3_bucket, tmp_path, monkeypatch):
    d, hf = hf_dir
    monkeypatch.setenv("XCLIP_CACHE", str(tmp_path / "cache"))
    upload(d, s3_bucket, "models/tiny")
    uri = f"s3://{s3_bucket}/models/tiny"
    ours = XCLIP.from_pretrained(uri)
    assert_same_logits(ours, hf)
    local = resolve_checkpoint(uri)
    assert local.parent == tmp_path / "cache"
    assert (local / "model.safetensors").read_bytes() == (d / "model.safetensors").read_bytes()
    assert resolve_checkpoint(uri + "/") == local  # cached, same key
    assert weights_sha256(uri) == weights_sha256(d)
    # new weights under the same URI get a new cache entry (the key holds the ETags)
    other = copy_ckpt(d, tmp_path / "other")
    sd = transformers.XCLIPModel(tiny_hf_config()).state_dict()
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items() if "position_ids" not in k}, str(other / "model.safetensors"))
    upload(other, s3_bucket, "models/tiny")
    assert resolve_checkpoint(uri) != local


def test_s3_missing_prefix(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("XCLIP_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        XCLIP.from_pretrained(f"s3://{s3_bucket}/nothing/here")


def test_s3_pickle_only(hf_dir, s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("XCLIP_CACHE", str(tmp_path / "cache"))
    d = copy_ckpt(hf_dir[0], tmp_path / "pkl", skip=("model.safetensors",))
    (d / "pytorch_model.bin").write_bytes(b"not unpickled")
    upload(d, s3_bucket, "pkl")
    with pytest.raises(CheckpointError, match="safe_serialization=True"):
        XCLIP.from_pretrained(f"s3://{s3_bucket}/pkl")


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_missing_file_is_named(hf_dir, tmp_path, missing):
    d = copy_ckpt(hf_dir[0], tmp_path / "ckpt", skip=(missing,))
    with pytest.raises(FileNotFoundError, match=f"{missing} not found"):
        XCLIP.from_pretrained(d)


def test_pickle_only_checkpoint_says_how_to_convert(hf_dir, tmp_path):
    d = copy_ckpt(hf_dir[0], tmp_path / "ckpt", skip=("model.safetensors",))
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04 never unpickled")
    with pytest.raises(CheckpointError, match="pytorch_model.bin") as e:
        XCLIP.from_pretrained(d)
    assert "save_pretrained(d, safe_serialization=True)" in str(e.value)


def test_missing_and_unexpected_keys(hf_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    d = copy_ckpt(hf_dir[0], tmp_path / "ckpt")
    state = load_file(str(d / "model.safetensors"))
    state.pop("logit_scale")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(d / "model.safetensors"))
    for load in (XCLIP.from_pretrained, inspect_checkpoint):  # full load and header-only check agree
        with pytest.raises(CheckpointError, match=r"missing \['logit_scale'\].*unexpected \['extra.weight'\]"):
            load(d)


def test_config_weights_shape_mismatch(hf_dir, tmp_path):
    d = copy_ckpt(hf_dir[0], tmp_path / "ckpt")
    cfg = json.loads((d / "config.json").read_text())
    cfg["vision_config"]["num_frames"] = 8  # the weights hold a [1, 4, P] MIT position embedding
    (d / "config.json").write_text(json.dumps(cfg))
    for load in (XCLIP.from_pretrained, inspect_checkpoint):
        with pytest.raises(CheckpointError, match=r"mit.position_embedding: checkpoint \(1, 4, 32\)"):
            load(d)


def test_inspect_checkpoint_returns_the_loadable_config(hf_dir):
    """The driver's check: the config of a loadable checkpoint, with no weight materialised."""
    config = inspect_checkpoint(hf_dir[0])
    assert config == XCLIP.from_pretrained(hf_dir[0]).config


def test_wrong_num_frames_input(hf_dir):
    ours = XCLIP.from_pretrained(hf_dir[0])
    pixels, ids, mask = inputs()
    with pytest.raises(ValueError, match="num_frames mismatch.*T=8.*num_frames=4"):
        ours(torch.cat([pixels, pixels], dim=1), ids, mask)


def test_missing_local_dir_and_offline_hub_id(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="checkpoint directory not found"):
        XCLIP.from_pretrained(tmp_path / "nope")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="pass a local directory"):
        XCLIP.from_pretrained("microsoft/xclip-base-patch32-does-not-exist")


def test_hub_id_from_the_hub_cache(hf_dir, tmp_path, monkeypatch):
    """A hub id resolves through huggingface_hub's snapshot cache (offline here, as in CI)."""
    d, hf = hf_dir
    commit = "0" * 40
    repo = tmp_path / "hub" / "models--someorg--xclip-tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    copy_ckpt(d, repo / "snapshots" / commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_checkpoint("someorg/xclip-tiny") == repo / "snapshots" / commit
    assert_same_logits(XCLIP.from_pretrained("someorg/xclip-tiny"), hf)


def test_imports_go_one_way_model_to_loading():
    """loading never imports model, not even inside a function (no import circle)."""
    import ast

    import xclip_core.loading as loading

    tree = ast.parse(Path(loading.__file__).read_text())
    imported = {(n.module or "", n.level) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {(a.name, 0) for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not [m for m in imported if m in {("model", 1), ("xclip_core.model", 0)}], imported
    assert {("config", 1)} <= imported  # the walk does see loading's own relative imports
