"""A moderation policy: YAML, validated, versioned by the sha256 of its normalised content.

    version: 1                   # optional, informational
    categories:                  # at least one
      - name: weapons            # unique
        prompts: ["a person holding a gun", ...]   # one or more non-empty texts
        min_confidence: 0.7      # in [0, 1]: a clip above it counts for the category
        min_duration_s: 0.0      # >= 0: shorter flagged ranges are dropped (default 0)
        action: block            # review | block
    neutral:                     # required, non-empty: background prompts
      - "people talking"
    snap_to_shots: false         # optional: widen each flagged range to the shots it touches
                                 # (videos indexed with --segments shots; moderation.snap)

How a clip is scored (``Policy.class_prompts`` / ``moderation.scoring``): the classes are the
categories followed by one class per neutral prompt; each class's prompts are averaged into
one text feature (``xclip_core.scoring.class_text_features``) and a clip's probabilities are
the softmax over all those classes (``ClipScorer``: exact when the clip's visual tokens are
known). A category's confidence for the clip is its class probability.

Why neutral classes: a softmax over the harmful categories alone sums to 1 over them, so
every clip, harmless or not, would give some category a large share (with 2 categories at
least 0.5). The neutral classes give a harmless clip somewhere to put its probability mass.

``policy_hash`` is the sha256 of the policy as canonical JSON (sorted keys, defaults filled
in), so reformatting or reordering keys of the YAML does not change it.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from importlib import resources

ACTIONS = ("review", "block")
_TOP_KEYS = {"version", "categories", "neutral", "snap_to_shots"}
_CAT_KEYS = {"name", "prompts", "min_confidence", "min_duration_s", "action"}
EXAMPLE = "example"


class PolicyError(ValueError):
    """The policy file is invalid; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class Category:
    name: str
    prompts: tuple[str, ...]
    min_confidence: float
    action: str
    min_duration_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class Policy:
    categories: tuple[Category, ...]
    neutral: tuple[str, ...]
    version: int | str | None = None
    source: str = ""
    snap_to_shots: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    @property
    def class_prompts(self) -> list[list[str]]:
        """Prompts per scored class: one class per category, then one per neutral prompt."""
        return [list(c.prompts) for c in self.categories] + [[p] for p in self.neutral]

    @property
    def num_classes(self) -> int:
        return len(self.categories) + len(self.neutral)

    def normalised(self) -> dict:
        out = {"version": self.version, "neutral": list(self.neutral),
               "categories": [dataclasses.asdict(c) | {"prompts": list(c.prompts)} for c in self.categories]}
        if self.snap_to_shots:  # only when on: the hash of a policy without it is unchanged
            out["snap_to_shots"] = True
        return out

    @functools.cached_property  # frozen: computed once (decision_row asks per video)
    def sha256(self) -> str:
        text = json.dumps(self.normalised(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def policy_hash(self) -> str:
        return "sha256:" + self.sha256


def _prompts(value, where: str, fail) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        fail(f"{where}: must be a non-empty list of prompts")
    out = []
    for i, p in enumerate(value):
        if not isinstance(p, str) or not p.strip():
            fail(f"{where}[{i}]: a prompt must be a non-empty string, got {p!r}")
        out.append(p.strip())
    return tuple(out)


def _number(value, where: str, fail, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        fail(f"{where}: must be a number, got {value!r}")
    if not lo <= value <= hi:
        fail(f"{where}: must be in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def parse_policy(doc, source: str = "<policy>") -> Policy:
    """A parsed YAML document -> ``Policy`` (raises ``PolicyError``)."""
    def fail(msg: str):
        raise PolicyError(f"policy {source}: {msg}")

    if not isinstance(doc, dict):
        fail("must be a mapping with 'categories' and 'neutral'")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        fail(f"unknown key(s) {sorted(unknown)}; known: {sorted(_TOP_KEYS)}")
    cats = doc.get("categories")
    if not isinstance(cats, list) or not cats:
        fail("categories: must be a non-empty list")
    categories, seen = [], set()
    for i, c in enumerate(cats):
        where = f"categories[{i}]"
        if not isinstance(c, dict):
            fail(f"{where}: must be a mapping")
        unknown = set(c) - _CAT_KEYS
        if unknown:
            fail(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_CAT_KEYS)}")
        name = c.get("name")
        if not isinstance(name, str) or not name.strip():
            fail(f"{where}.name: a non-empty name is required")
        name = name.strip()
        where = f"categories[{i}] ({name})"
        if name in seen:
            fail(f"{where}.name: duplicate category name {name!r}")
        seen.add(name)
        if "prompts" not in c:
            fail(f"{where}.prompts: required")
        if "min_confidence" not in c:
            fail(f"{where}.min_confidence: required")
        action = c.get("action")
        if action not in ACTIONS:
            fail(f"{where}.action: expected one of {list(ACTIONS)}, got {action!r}")
        categories.append(Category(
            name=name, prompts=_prompts(c["prompts"], f"{where}.prompts", fail),
            min_confidence=_number(c["min_confidence"], f"{where}.min_confidence", fail, 0.0, 1.0),
            min_duration_s=_number(c.get("min_duration_s", 0.0), f"{where}.min_duration_s", fail, 0.0, math.inf),
            action=action))
    if "neutral" not in doc:
        fail("neutral: required (background prompts, so harmless clips are not forced into a category)")
    neutral = _prompts(doc["neutral"], "neutral", fail)
    overlap = set(neutral) & {p for c in categories for p in c.prompts}
    if overlap:
        fail(f"neutral: prompt(s) {sorted(overlap)} also belong to a category")
    version = doc.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, (int, str))):
        fail(f"version: must be an integer or a string, got {version!r}")
    snap = doc.get("snap_to_shots", False)
    if not isinstance(snap, bool):
        fail(f"snap_to_shots: must be true or false, got {snap!r}")
    return Policy(categories=tuple(categories), neutral=neutral, version=version, source=source, snap_to_shots=snap)


def load_policy(path: str) -> Policy:
    """Load a policy file (local path or ``s3://``), or ``"example"`` for the packaged example."""
    import yaml

    from xclip_core import storage

    if path == EXAMPLE:
        text = resources.files("moderation").joinpath("policies/example.yaml").read_text("utf-8")
    else:
        try:
            text = storage.read_bytes(path).decode("utf-8")
        except (OSError, FileNotFoundError, UnicodeDecodeError) as e:
            raise PolicyError(f"policy {path}: cannot read ({type(e).__name__}: {e})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolicyError(f"policy {path}: invalid YAML: {e}") from None
    return parse_policy(doc, source=path)
