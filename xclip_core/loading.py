"""Find a checkpoint (local dir, ``s3://`` prefix or hub id) and load its safetensors weights strictly.

Only safetensors are read: no pickle is ever unpickled here.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from . import storage
from .config import XCLIPConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
FETCH_SUFFIXES = (".json", ".txt", ".safetensors")  # what s3 / hub copies bring along
SKIPPED_KEY_SUFFIXES = (".position_ids",)  # int64 buffers some checkpoints carry

CONVERT_HINT = (
    "X-CLIP reads safetensors only and never unpickles pytorch_model.bin. Convert it once with "
    "transformers:\n"
    "    from transformers import XCLIPModel\n"
    "    m = XCLIPModel.from_pretrained(d)\n"
    "    m.save_pretrained(d, safe_serialization=True)  # writes model.safetensors\n"
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing files, pickle-only weights, wrong keys or shapes)."""


def cache_root() -> Path:
    return Path(os.environ.get("XCLIP_CACHE") or Path.home() / ".cache" / "xclip_core")


# ----------------------------------------------------------------------------- resolve


def resolve_checkpoint(source: str | os.PathLike) -> Path:
    """A local directory holding the checkpoint; s3 prefixes and hub ids are copied to a cache dir."""
    src = str(source)
    if storage.is_s3(src):
        return _fetch_s3(src)
    path = Path(src).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{src} is a file; pass the checkpoint directory (with {CONFIG_NAME})")
    if _looks_like_hub_id(src):
        return _fetch_hub(src)
    raise FileNotFoundError(f"checkpoint directory not found: {src}")


def _looks_like_hub_id(src: str) -> bool:
    parts = src.split("/")
    return len(parts) == 2 and all(parts) and not src.startswith((".", "/", "~"))


def _fetch_hub(repo_id: str) -> Path:
    from huggingface_hub import HfApi, snapshot_download

    try:
        local = Path(snapshot_download(repo_id, allow_patterns=["*" + s for s in FETCH_SUFFIXES],
                                       cache_dir=os.environ.get("HF_HUB_CACHE") or None))
    except Exception as e:  # offline, unknown repo, no network: all end the same way
        raise CheckpointError(
            f"could not fetch hub checkpoint {repo_id!r} ({type(e).__name__}: {e}). Without hub access, "
            f"pass a local directory in Hugging Face layout or an s3://bucket/prefix copy of it "
            f"({CONFIG_NAME}, {WEIGHTS_NAME}, preprocessor_config.json, tokenizer files)") from e
    names = {p.name for p in local.iterdir()}
    if WEIGHTS_NAME not in names and WEIGHTS_INDEX_NAME not in names:
        try:  # the pickle weights were not downloaded; say so rather than "model.safetensors not found"
            names |= {Path(f).name for f in HfApi().list_repo_files(repo_id)}
        except Exception:  # noqa: BLE001  optional: the file check below says what is missing
            pass
    _check_files(names, f"hub:{repo_id}")
    return local


def _fetch_s3(uri: str) -> Path:
    fs = storage.s3_filesystem()
    prefix = storage.strip_scheme(uri).rstrip("/")
    try:
        listing = fs.ls(prefix, detail=True)
    except FileNotFoundError:
        listing = []
    files = {Path(e["name"]).name: e for e in listing if e.get("type") == "file"}
    _check_files(set(files), uri)
    wanted = sorted(n for n in files if n.endswith(FETCH_SUFFIXES))
    tag = "\n".join([f"s3://{prefix}"] + [f"{n}:{files[n].get('ETag') or files[n].get('size')}" for n in wanted])
    dest = cache_root() / hashlib.sha256(tag.encode()).hexdigest()[:24]
    if (dest / ".complete").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".tmp-"))
    try:
        for n in wanted:
            fs.get(f"{prefix}/{n}", str(tmp / n))
        (tmp / ".complete").write_text(uri + "\n")
        try:
            os.replace(tmp, dest)  # atomic; loses the race harmlessly if another process won it
        except OSError:
            if not (dest / ".complete").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _check_files(names: set[str], where: str) -> None:
    if CONFIG_NAME not in names:
        raise FileNotFoundError(f"{CONFIG_NAME} not found in checkpoint {where}")
    if WEIGHTS_NAME in names or WEIGHTS_INDEX_NAME in names:
        return
    if any(n in names for n in PICKLE_NAMES):
        raise CheckpointError(f"checkpoint {where} has only pytorch_model.bin (pickle), no {WEIGHTS_NAME}. "
                              + CONVERT_HINT)
    raise FileNotFoundError(f"{WEIGHTS_NAME} not found in checkpoint {where}")


# ----------------------------------------------------------------------------- read


def weight_files(ckpt_dir: Path) -> list[Path]:
    """The safetensors files of a resolved checkpoint dir (one file, or the shards of an index)."""
    ckpt_dir = Path(ckpt_dir)
    _check_files({p.name for p in ckpt_dir.iterdir()}, str(ckpt_dir))
    if (ckpt_dir / WEIGHTS_NAME).exists():
        return [ckpt_dir / WEIGHTS_NAME]
    index = json.loads((ckpt_dir / WEIGHTS_INDEX_NAME).read_text())
    shards = sorted(set(index["weight_map"].values()))
    for s in shards:
        if not (ckpt_dir / s).exists():
            raise FileNotFoundError(f"{s} (listed in {WEIGHTS_INDEX_NAME}) not found in {ckpt_dir}")
    return [ckpt_dir / s for s in shards]


def weights_sha256(source_dir: str | os.PathLike) -> str:
    """sha256 hex digest of model.safetensors (of the shards in order, if sharded)."""
    h = hashlib.sha256()
    for path in weight_files(resolve_checkpoint(source_dir)):
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def read_state_dict(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for path in weight_files(ckpt_dir):
        state.update(load_file(str(path)))
    return {k: v for k, v in state.items() if not k.endswith(SKIPPED_KEY_SUFFIXES)}


def read_state_shapes(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    """The state dict as ``meta`` tensors: names and shapes from the safetensors headers, no data read."""
    from safetensors import safe_open

    state: dict[str, torch.Tensor] = {}
    for path in weight_files(ckpt_dir):
        with safe_open(str(path), framework="pt") as f:
            for k in f.keys():
                state[k] = torch.empty(f.get_slice(k).get_shape(), device="meta")
    return {k: v for k, v in state.items() if not k.endswith(SKIPPED_KEY_SUFFIXES)}


def load_checkpoint(source: str | os.PathLike, *, read=read_state_dict
                    ) -> tuple[XCLIPConfig, dict[str, torch.Tensor]]:
    """(config, state dict without position_ids buffers) from any supported source."""
    ckpt_dir = resolve_checkpoint(source)
    if not (ckpt_dir / CONFIG_NAME).exists():
        raise FileNotFoundError(f"{CONFIG_NAME} not found in checkpoint {source}")
    config = XCLIPConfig.from_json_file(ckpt_dir / CONFIG_NAME)
    return config, read(ckpt_dir)


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Raise CheckpointError unless ``state`` has exactly the model's keys with the same shapes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {expected[k]}"
                   for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong or len(state) != len(expected):
        raise CheckpointError(
            f"checkpoint does not match the config: {len(state)} keys vs {len(expected)} expected; "
            f"missing {missing[:10]}{'...' if len(missing) > 10 else ''}; "
            f"unexpected {unexpected[:10]}{'...' if len(unexpected) > 10 else ''}; "
            f"shape mismatches {wrong[:10]}")
