"""Label sets: the texts a video is scored against.

Built in (``xclip_core/data/<name>.txt``, standard order, index = class id; each
file's header says where the list comes from): ``kinetics400`` (400),
``kinetics600`` (600), ``ucf101`` (101), ``hmdb51`` (51).

Any other argument is a local path or an ``s3://`` URI of a UTF-8 file:

* plain text (any extension but .yaml/.yml): one label per line; blank lines
  and lines starting with ``#`` are ignored. Each label is turned into one
  prompt by the job's ``prompt_template`` (default ``"{}"``: the label itself).
* YAML (``.yaml`` / ``.yml``): a mapping label -> one prompt or a list of
  prompts, used verbatim (``prompt_template`` does not apply); a class with
  several prompts is scored with their averaged text feature
  (``xclip_core.scoring.class_text_features``)::

      "riding a bike": ["a video of a person riding a bike", "cycling"]
      "swimming": "a video of a person swimming"

``LabelSet.sha256`` identifies the set: for plain files the digest of the
labels (``labels_sha256``); for YAML it covers the prompts too.
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
BUILTIN_LABEL_SETS = {name: _DATA_DIR / f"{name}.txt" for name in ("kinetics400", "kinetics600", "ucf101", "hmdb51")}
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LabelSet:
    name: str
    labels: tuple[str, ...]
    sha256: str
    prompts: tuple[tuple[str, ...], ...] | None = None  # YAML sets: the prompts per label, verbatim

    def __len__(self) -> int:
        return len(self.labels)

    def class_prompts(self, template: str = "{}") -> list[list[str]]:
        """The prompt texts per class: YAML prompts verbatim, else ``template.format(label)``."""
        if self.prompts is not None:
            return [list(p) for p in self.prompts]
        return [[template.format(label)] for label in self.labels]


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
    if src.lower().endswith(YAML_SUFFIXES):
        labels, prompts = parse_yaml_labels(text, src)
        return LabelSet(name=name, labels=labels, sha256=prompts_sha256(labels, prompts), prompts=prompts)
    labels = parse_labels(text, src)
    return LabelSet(name=name, labels=labels, sha256=labels_sha256(labels))


def prompts_sha256(labels, prompts) -> str:
    """Digest of a YAML label set: labels and their prompts, in order."""
    import json

    doc = [[normalize_label(label), [normalize_label(p) for p in ps]] for label, ps in zip(labels, prompts)]
    return hashlib.sha256(json.dumps(doc, ensure_ascii=False).encode("utf-8")).hexdigest()


def parse_yaml_labels(text: str, source: str = "<labels.yaml>") -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """A YAML mapping label -> prompt | [prompts] -> (labels, prompts per label).
    Raises ValueError naming the file and the label on anything else."""
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        seen = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node)
            if isinstance(key, str):
                k = normalize_label(key).casefold()
                if k in seen:
                    raise ValueError(f"{source}:{key_node.start_mark.line + 1}: duplicate label {key!r} "
                                     f"(first on line {seen[k]})")
                seen[k] = key_node.start_mark.line + 1
        return loader.construct_mapping(node)

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise ValueError(f"{source}: invalid YAML ({e})") from None
    if not isinstance(doc, dict) or not doc:
        raise ValueError(f"{source}: expected a mapping of label -> prompt or list of prompts, "
                         f"got {type(doc).__name__}")
    labels, prompts = [], []
    for key, value in doc.items():
        if not isinstance(key, str) or not normalize_label(key):
            raise ValueError(f"{source}: label {key!r} must be a non-empty string")
        label = normalize_label(key)
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values:
            raise ValueError(f"{source}: label {label!r}: expected a prompt or a non-empty list of prompts, "
                             f"got {value!r}")
        ps = []
        for v in values:
            if not isinstance(v, str):
                raise ValueError(f"{source}: label {label!r}: prompt {v!r} is not a string")
            if not normalize_label(v):
                raise ValueError(f"{source}: label {label!r}: empty prompt")
            ps.append(normalize_label(v))
        labels.append(label)
        prompts.append(tuple(ps))
    return tuple(labels), tuple(prompts)
