"""CLIP byte-level BPE tokenizer on the ``tokenizers`` library (no transformers).

The pipeline is the one transformers' ``CLIPTokenizer`` (v5, tokenizers backend)
builds, so ids are identical for the same vocabulary and merges:

- normaliser: NFC, collapse whitespace runs to one space, lowercase;
- pre-tokeniser: CLIP's regex split, then ByteLevel (no prefix space);
- model: BPE with ``</w>`` as end-of-word suffix, ``<|endoftext|>`` as unk;
- ``<|startoftext|>`` / ``<|endoftext|>`` around every text; EOS is also the pad.

Like transformers, the vocabulary and merges are taken from the checkpoint's
``tokenizer.json`` when present (only its ``model`` section is read), else from
``vocab.json`` + ``merges.txt``; the pipeline itself is always the CLIP one.

``write_tokenizer_files`` writes a CLIP tokenizer in the Hugging Face layout,
using the real CLIP merges shipped in ``xclip_core/data/clip_bpe_merges.txt``
(MIT, OpenAI), optionally truncated to a smaller vocabulary for tiny models.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MAX_LENGTH = 77
CLIP_VOCAB_SIZE = 49408
DEFAULT_VOCAB_SIZE = 4096
MIN_VOCAB_SIZE = 514  # 256 bytes + 256 "</w>" variants + 2 specials, no merges
CLIP_SPLIT_PATTERN = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)
_MERGES_DATA = Path(__file__).with_name("data") / "clip_bpe_merges.txt"

Merges = list[tuple[str, str]]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode character table, in CLIP's order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


@functools.lru_cache(maxsize=1)
def _clip_merges() -> tuple[tuple[str, str], ...]:
    lines = _MERGES_DATA.read_text(encoding="utf-8").split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("#version")) + 1
    merges = tuple(tuple(line.split(" ")) for line in lines[start:] if line)
    assert len(merges) == CLIP_VOCAB_SIZE - MIN_VOCAB_SIZE, len(merges)
    return merges  # type: ignore[return-value]


def clip_vocab_and_merges(vocab_size: int = CLIP_VOCAB_SIZE) -> tuple[dict[str, int], Merges]:
    """The real CLIP vocabulary, or its first ``vocab_size`` tokens (the first
    ``vocab_size - 514`` merges), with the two specials as the last two ids."""
    if not MIN_VOCAB_SIZE <= vocab_size <= CLIP_VOCAB_SIZE:
        raise ValueError(f"vocab_size must be in [{MIN_VOCAB_SIZE}, {CLIP_VOCAB_SIZE}], got {vocab_size}")
    merges = list(_clip_merges()[: vocab_size - MIN_VOCAB_SIZE])
    tokens = list(bytes_to_unicode().values())
    tokens += [t + "</w>" for t in tokens]
    tokens += ["".join(m) for m in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == vocab_size
    return vocab, merges


def build_backend(vocab: dict[str, int], merges: Merges) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` with the CLIP pipeline (post-processor included)."""
    for tok in (BOS_TOKEN, EOS_TOKEN):
        if tok not in vocab:
            raise ValueError(f"tokenizer vocabulary lacks the special token {tok!r}")
    tk = Tokenizer(BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                       end_of_word_suffix="</w>", fuse_unk=False, unk_token=EOS_TOKEN))
    tk.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_SPLIT_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(BOS_TOKEN, special=True, normalized=False),
                           AddedToken(EOS_TOKEN, special=True, normalized=False)])
    tk.post_processor = processors.RobertaProcessing(
        (EOS_TOKEN, vocab[EOS_TOKEN]), (BOS_TOKEN, vocab[BOS_TOKEN]), trim_offsets=False, add_prefix_space=False)
    return tk


def _read_tokenizer_json(path: Path) -> tuple[dict[str, int], Merges]:
    model = json.loads(path.read_text(encoding="utf-8")).get("model") or {}
    if model.get("type", "BPE") != "BPE" or "vocab" not in model:
        raise ValueError(f"{path}: not a BPE tokenizer.json (model type {model.get('type')!r})")
    vocab = model["vocab"]
    if isinstance(vocab, list):
        vocab = {(t[0] if isinstance(t, list) else t): i for i, t in enumerate(vocab)}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
    return dict(vocab), merges  # type: ignore[return-value]


def _local_dir(source: str | os.PathLike) -> Path:
    if os.path.isdir(source):
        return Path(source)
    from xclip_core.loading import resolve_checkpoint  # s3:// prefixes and hub ids

    return Path(resolve_checkpoint(str(source)))


class CLIPTokenizer:
    """Callable like transformers' tokenizer: ``tok(texts)`` ->
    ``{"input_ids": LongTensor[K, L], "attention_mask": LongTensor[K, L]}``."""

    def __init__(self, vocab: dict[str, int], merges: Merges, *, model_max_length: int = MAX_LENGTH):
        self._backend = build_backend(vocab, merges)
        self.vocab_size = len(vocab)
        self.bos_token_id = vocab[BOS_TOKEN]
        self.eos_token_id = vocab[EOS_TOKEN]
        self.pad_token_id = self.eos_token_id
        self.model_max_length = int(model_max_length)

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike) -> "CLIPTokenizer":
        """``source``: a local Hugging Face checkpoint dir, an ``s3://`` prefix or a hub id."""
        d = _local_dir(source)
        if (d / "tokenizer.json").is_file():
            vocab, merges = _read_tokenizer_json(d / "tokenizer.json")
        elif (d / "vocab.json").is_file() and (d / "merges.txt").is_file():
            vocab, merges = BPE.read_file(str(d / "vocab.json"), str(d / "merges.txt"))
        else:
            raise FileNotFoundError(f"{source}: no tokenizer.json, nor vocab.json + merges.txt")
        max_len = MAX_LENGTH
        cfg_path = d / "tokenizer_config.json"
        if cfg_path.is_file():
            cfg_len = json.loads(cfg_path.read_text(encoding="utf-8")).get("model_max_length")
            if isinstance(cfg_len, (int, float)) and 2 <= cfg_len < 1_000_000:
                max_len = int(cfg_len)
        return cls(vocab, merges, model_max_length=max_len)

    @classmethod
    def clip(cls, vocab_size: int = CLIP_VOCAB_SIZE) -> "CLIPTokenizer":
        """The shipped real CLIP vocabulary (optionally truncated), no files needed."""
        return cls(*clip_vocab_and_merges(vocab_size))

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Ids of one text with BOS/EOS, truncated to ``max_length`` (EOS kept last)."""
        return self._encode_batch([text], max_length)[0]

    def _encode_batch(self, texts: Sequence[str], max_length: int | None) -> list[list[int]]:
        max_length = self.model_max_length if max_length is None else int(max_length)
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (BOS + EOS), got {max_length}")
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"texts must be strings, got {type(t).__name__}")
        encs = self._backend.encode_batch(list(texts), add_special_tokens=False)
        keep = max_length - 2
        return [[self.bos_token_id, *e.ids[:keep], self.eos_token_id] for e in encs]

    def __call__(self, texts: str | Iterable[str], padding: bool | str = True,
                 max_length: int | None = None, truncation: bool = True,
                 return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        if return_tensors != "pt":
            raise ValueError("only return_tensors='pt' is supported")
        if not truncation:
            raise ValueError("truncation=False is not supported: the text model has 77 positions")
        texts = [texts] if isinstance(texts, str) else list(texts)
        max_length = self.model_max_length if max_length is None else int(max_length)
        ids = self._encode_batch(texts, max_length)
        if padding == "max_length":
            width = max_length
        elif padding in (True, "longest"):
            width = max((len(x) for x in ids), default=0)
        elif padding in (False, "do_not_pad"):
            width = max((len(x) for x in ids), default=0)
            if any(len(x) != width for x in ids):
                raise ValueError("texts have different lengths; use padding=True or 'max_length'")
        else:
            raise ValueError(f"padding must be True, False, 'longest' or 'max_length', got {padding!r}")
        input_ids = torch.full((len(ids), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, : len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        text = self._backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        return text.replace("</w>", " ").strip()


def write_tokenizer_files(directory: str | os.PathLike, *, vocab_size: int = DEFAULT_VOCAB_SIZE) -> int:
    """Write a CLIP tokenizer in the Hugging Face layout (vocab.json, merges.txt,
    tokenizer.json, tokenizer_config.json, special_tokens_map.json) and return its
    vocabulary size. The tokens are the first ``vocab_size`` of the real CLIP
    vocabulary (``vocab_size=49408``: the full CLIP tokenizer, same ids as
    openai/clip-vit-base-patch32); BOS/EOS are the last two ids. Deterministic."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab_and_merges(vocab_size)
    (d / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (d / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    build_backend(vocab, merges).save(str(d / "tokenizer.json"))
    special = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "pad_token": EOS_TOKEN, "unk_token": EOS_TOKEN}
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_LENGTH,
        "do_lower_case": True,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        "add_prefix_space": False,
        **special,
    }
    (d / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (d / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
    return len(vocab)
