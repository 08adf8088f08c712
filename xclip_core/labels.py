"""Label sets: the texts a video is scored against.

``load_labels("kinetics400")`` returns the 400 Kinetics-400 class names shipped
in ``xclip_core/data/kinetics400.txt`` (standard order, index = class id).
Any other argument is a local path or an ``s3://`` URI of a UTF-8 text file
with one label per line; blank lines and lines starting with ``#`` are ignored.
"""
from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from xclip_core import storage

_DATA_DIR = Path(__file__).with_name("data")
BUILTIN_LABEL_SETS = {"kinetics400": _DATA_DIR / "kinetics400.txt"}


@dataclass(frozen=True)
class LabelSet:
    name: str
    labels: tuple[str, ...]
    sha256: str

    def __len__(self) -> int:
        return len(self.labels)


def normalize_label(label: str) -> str:
    """NFC, whitespace runs collapsed to one space, stripped. Case is kept."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", label)).strip()


def labels_sha256(labels: tuple[str, ...] | list[str]) -> str:
    """Stable digest of a label list (order matters): sha256 of the normalised
    labels joined by newlines, UTF-8."""
    return hashlib.sha256("\n".join(normalize_label(x) for x in labels).encode("utf-8")).hexdigest()


def parse_labels(text: str, source: str = "<labels>") -> tuple[str, ...]:
    """One label per line; blank lines and ``#`` comment lines skipped.
    Raises ValueError on an empty list or a duplicate (case-insensitive, since
    the CLIP tokenizer lowercases)."""
    labels: list[str] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        label = normalize_label(raw)
        if not label or label.startswith("#"):
            continue
        key = label.casefold()
        if key in seen:
            raise ValueError(f"{source}:{lineno}: duplicate label {label!r} (first on line {seen[key]})")
        seen[key] = lineno
        labels.append(label)
    if not labels:
        raise ValueError(f"{source}: no labels (empty file, or only blank/comment lines)")
    return tuple(labels)


def load_labels(name_or_path: str | os.PathLike) -> LabelSet:
    """A built-in label set by name (``"kinetics400"``), or a label file
    (local path or ``s3://`` URI)."""
    src = str(name_or_path)
    if src in BUILTIN_LABEL_SETS:
        name, data = src, BUILTIN_LABEL_SETS[src].read_bytes()
    elif storage.is_s3(src):
        name, data = PurePosixPath(storage.strip_scheme(src)).stem, storage.read_bytes(src)
    elif os.path.isfile(src):
        name, data = Path(src).stem, Path(src).read_bytes()
    else:
        raise FileNotFoundError(
            f"label set {src!r}: not a built-in name ({', '.join(sorted(BUILTIN_LABEL_SETS))}) "
            "and no such file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{src}: label file is not UTF-8 ({e})") from None
    labels = parse_labels(text, src)
    return LabelSet(name=name, labels=labels, sha256=labels_sha256(labels))
