"""xclip_core: a pure-PyTorch X-CLIP video-text model plus the video decoding
and sampling it needs. A library usable on its own: it never imports ray or lancedb.

    from xclip_core import XCLIP, CLIPTokenizer, PreprocessConfig
    model = XCLIP.from_pretrained("path/or/s3://bucket/prefix/or/microsoft/xclip-base-patch32")
"""
from .config import XCLIPConfig, XCLIPTextConfig, XCLIPVisionConfig
from .checkpoint import write_random_checkpoint
from .labels import LabelSet, load_labels
from .loading import CheckpointError, resolve_checkpoint, weights_sha256
from .model import XCLIP, VideoFeatures, XCLIPOutput
from .preprocess import PreprocessConfig  # the function: xclip_core.preprocess.preprocess
from .tokenizer import CLIPTokenizer, write_tokenizer_files

__all__ = [
    "XCLIP", "XCLIPConfig", "XCLIPTextConfig", "XCLIPVisionConfig", "XCLIPOutput", "VideoFeatures",
    "CLIPTokenizer", "write_tokenizer_files", "PreprocessConfig", "LabelSet", "load_labels",
    "write_random_checkpoint", "CheckpointError", "resolve_checkpoint", "weights_sha256",
]
__version__ = "0.1.0"
