"""xclip_core.tokenizer against transformers' CLIPTokenizer (test-only oracle)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from xclip_core import tokenizer as tokmod
from xclip_core.tokenizer import CLIPTokenizer, write_tokenizer_files

TEXTS = [
    "a photo of a cat",
    "",
    "   ",
    "  Hello,   WORLD!!  It's 3.14159 o'clock\n\tnew line  ",
    "Café naïve résumé — “quotes” 東京タワー 🙂 Ω≈ç√ Ünïcödé",
    "Cafe\u0301 (NFD) vs Café",
    "passing American football (not in game)",
    "massaging person's head; don't, you'll, we've, I'M, she'd, THEY'RE",
    "1234567890 + 99 bottles = $12.50 @ 10:30pm #tag user@example.com",
    "<|endoftext|> in the middle <|startoftext|>",
    "word " * 100,  # > 77 tokens: truncated, EOS kept last
    "supercalifragilisticexpialidocious " * 20,
]
FILES = {
    "vocab_merges": ["vocab.json", "merges.txt"],
    "tokenizer_json": ["tokenizer.json"],
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Tokenizer dirs per (vocab size, layout), written by write_tokenizer_files."""
    root = tmp_path_factory.mktemp("tok")
    out = {}
    for vocab_size in (49408, 4096):
        full = root / f"full-{vocab_size}"
        assert write_tokenizer_files(full, vocab_size=vocab_size) == vocab_size
        for layout, names in FILES.items():
            d = root / f"{layout}-{vocab_size}"
            d.mkdir()
            for n in names + ["tokenizer_config.json", "special_tokens_map.json"]:
                shutil.copy(full / n, d / n)
            out[vocab_size, layout] = d
    return out


@pytest.fixture(scope="module")
def hf_cls():
    import transformers  # the oracle: a broken install must fail, not skip
    return transformers.CLIPTokenizer


@pytest.mark.parametrize("vocab_size", [49408, 4096])
@pytest.mark.parametrize("layout", list(FILES))
def test_ids_equal_transformers(written, hf_cls, vocab_size, layout):
    d = written[vocab_size, layout]
    ours, ref = CLIPTokenizer.from_pretrained(d), hf_cls.from_pretrained(str(d))
    assert ours.vocab_size == vocab_size == len(ref)
    for padding in (True, "max_length"):
        a = ours(TEXTS, padding=padding, max_length=77)
        b = ref(TEXTS, padding=padding, truncation=True, max_length=77, return_tensors="pt")
        assert a["input_ids"].dtype == torch.long and a["attention_mask"].dtype == torch.long
        assert torch.equal(a["input_ids"], b["input_ids"])
        assert torch.equal(a["attention_mask"], b["attention_mask"])
    # shorter max_length: truncation keeps BOS ... EOS
    a = ours(TEXTS, max_length=8)
    b = ref(TEXTS, padding=True, truncation=True, max_length=8, return_tensors="pt")
    assert torch.equal(a["input_ids"], b["input_ids"])


def test_real_clip_ids(written):
    tok = CLIPTokenizer.from_pretrained(written[49408, "vocab_merges"])
    assert tok(["a photo of a cat"])["input_ids"].tolist() == [[49406, 320, 1125, 539, 320, 2368, 49407]]
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (49406, 49407, 49407)
    # no files needed for the shipped vocabulary
    assert CLIPTokenizer.clip().encode("a photo of a cat") == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_small_vocab_keeps_real_ids_and_eos_is_max(written):
    tok = CLIPTokenizer.from_pretrained(written[4096, "tokenizer_json"])
    assert (tok.bos_token_id, tok.eos_token_id) == (4094, 4095)  # EOS = highest id (argmax pooling)
    ids = tok(TEXTS)["input_ids"]
    assert ids.max().item() == 4095 and ids.min().item() >= 0
    assert tok.encode("a photo of a cat")[1:-1] == [320, 1125, 539, 320, 2368]  # frequent tokens: real ids


def test_padding_mask_and_truncation(written):
    tok = CLIPTokenizer.from_pretrained(written[4096, "vocab_merges"])
    out = tok(["a cat", "a photo of a dog running", "word " * 200])
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == mask.shape == (3, 77)
    lengths = mask.sum(1).tolist()
    assert lengths[0] < lengths[1] < lengths[2] == 77
    for row, n in zip(ids.tolist(), lengths):
        assert row[0] == tok.bos_token_id and row[n - 1] == tok.eos_token_id
        assert all(x == tok.pad_token_id for x in row[n:])
        assert tok.eos_token_id not in row[1:n - 1]
    assert mask[0].tolist() == [1] * lengths[0] + [0] * (77 - lengths[0])
    short = tok(["a cat", "a photo of a dog running"], padding=True)
    assert short["input_ids"].shape == (2, lengths[1])
    fixed = tok(["a cat"], padding="max_length", max_length=16)
    assert fixed["input_ids"].shape == (1, 16) and fixed["attention_mask"].sum().item() == lengths[0]
    assert tok("a cat")["input_ids"].shape == (1, lengths[0])  # a single string is a batch of one
    assert tok([], padding=True)["input_ids"].shape == (0, 0)
    assert tok.decode(tok.encode("Hello,   World!")) == "hello , world !"


def test_padding_false_and_errors(written, tmp_path):
    tok = CLIPTokenizer.from_pretrained(written[4096, "vocab_merges"])
    assert tok(["a cat", "a dog"], padding=False)["input_ids"].shape == (2, 4)
    with pytest.raises(ValueError, match="different lengths"):
        tok(["a cat", "a photo of a dog"], padding=False)
    with pytest.raises(ValueError, match="padding"):
        tok(["a"], padding="left")
    with pytest.raises(TypeError):
        tok(["a", 3])
    with pytest.raises(ValueError):
        tok(["a"], max_length=1)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        CLIPTokenizer.from_pretrained(tmp_path)
    with pytest.raises(ValueError):
        write_tokenizer_files(tmp_path / "x", vocab_size=100)


def test_writer_is_deterministic_and_hf_layout(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert write_tokenizer_files(a) == write_tokenizer_files(b) == tokmod.DEFAULT_VOCAB_SIZE
    names = ["vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    vocab = json.loads((a / "vocab.json").read_text(encoding="utf-8"))
    merges = (a / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0] == "#version: 0.2" and len(merges) - 1 == len(vocab) - 514
    assert vocab["<|endoftext|>"] == len(vocab) - 1 and vocab["<|startoftext|>"] == len(vocab) - 2
    cfg = json.loads((a / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "CLIPTokenizer" and cfg["model_max_length"] == 77


def test_model_max_length_from_config(tmp_path):
    write_tokenizer_files(tmp_path)
    cfg_path = tmp_path / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model_max_length"] = 1000000000000000019884624838656  # transformers' "unset" value
    cfg_path.write_text(json.dumps(cfg))
    assert CLIPTokenizer.from_pretrained(tmp_path).model_max_length == 77
    cfg["model_max_length"] = 32
    cfg_path.write_text(json.dumps(cfg))
    assert CLIPTokenizer.from_pretrained(tmp_path)(["word " * 100])["input_ids"].shape == (1, 32)


def test_non_local_sources_go_through_resolve_checkpoint(tmp_path, monkeypatch):
    import xclip_core.loading as loading

    write_tokenizer_files(tmp_path)
    seen = []

    def fake_resolve(source):
        seen.append(source)
        return Path(tmp_path)

    monkeypatch.setattr(loading, "resolve_checkpoint", fake_resolve)
    tok = CLIPTokenizer.from_pretrained("s3://bucket/ckpt")
    assert seen == ["s3://bucket/ckpt"] and tok.vocab_size == tokmod.DEFAULT_VOCAB_SIZE
    CLIPTokenizer.from_pretrained("microsoft/xclip-base-patch32")
    assert seen[-1] == "microsoft/xclip-base-patch32"


def test_picklable_for_workers():
    import pickle

    tok = CLIPTokenizer.clip(vocab_size=4096)
    again = pickle.loads(pickle.dumps(tok))
    assert torch.equal(again(TEXTS)["input_ids"], tok(TEXTS)["input_ids"])
