"""xclip_core: a pure-PyTorch X-CLIP video-text model plus the video decoding
and sampling it needs. A library usable on its own: it never imports ray or lancedb.

    from xclip_core import XCLIP, CLIPTokenizer, PreprocessConfig
    model = XCLIP.from_pretrained("path/or/s3://bucket/prefix/or/microsoft/xclip-base-patch32")
"""
import importlib

# Names are imported on first use (PEP 562), so ``xclip_core.video`` (PyAV +
# numpy) imports without torch, e.g. for bench/decode_digest.py.
_EXPORTS = {
    "XCLIPConfig": "config", "XCLIPTextConfig": "config", "XCLIPVisionConfig": "config",
    "write_random_checkpoint": "checkpoint", "LabelSet": "labels", "load_labels": "labels",
    "CheckpointError": "loading", "resolve_checkpoint": "loading", "weights_sha256": "loading",
    "XCLIP": "model", "VideoFeatures": "model", "XCLIPOutput": "model",
    "PreprocessConfig": "preprocess",  # the function: xclip_core.preprocess.preprocess
    "CLIPTokenizer": "tokenizer", "write_tokenizer_files": "tokenizer",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "XCLIP", "XCLIPConfig", "XCLIPTextConfig", "XCLIPVisionConfig", "XCLIPOutput", "VideoFeatures",
    "CLIPTokenizer", "write_tokenizer_files", "PreprocessConfig", "LabelSet", "load_labels",
    "write_random_checkpoint", "CheckpointError", "resolve_checkpoint", "weights_sha256",
]
__version__ = "0.1.0"
