"""xclip_core.labels: the shipped Kinetics-400 list and custom label files."""
from __future__ import annotations

import pytest

from xclip_core.labels import LabelSet, labels_sha256, load_labels


def test_kinetics400():
    ls = load_labels("kinetics400")
    assert isinstance(ls, LabelSet) and ls.name == "kinetics400"
    assert len(ls) == len(ls.labels) == 400 and len(set(ls.labels)) == 400
    assert ls.labels[:3] == ("abseiling", "air drumming", "answering questions")
    assert ls.labels[-3:] == ("yawning", "yoga", "zumba")
    # spot checks of ids used by the published evaluation (0-based class index)
    assert ls.labels.index("eating spaghetti") == 116
    assert ls.labels.index("passing American football (in game)") == 208
    assert ls.labels.index("massaging person's head") == 196
    assert ls.labels[207] == "parkour"
    assert (ls.labels[339], ls.labels[345]) == ("swimming backstroke", "sword fighting")
    assert list(ls.labels) == sorted(ls.labels, key=str.lower)  # the standard (alphabetical) order
    assert all(x == x.strip() and "  " not in x and "_" not in x for x in ls.labels)
    assert ls.sha256 == labels_sha256(ls.labels) and len(ls.sha256) == 64
    assert load_labels("kinetics400") == ls  # stable


def test_custom_file(tmp_path):
    p = tmp_path / "my_actions.txt"
    p.write_text("# my labels\n\nrunning  fast\n  jumping\n\n# another comment\nCafe\u0301 dancing\n",
                 encoding="utf-8")
    ls = load_labels(p)
    assert ls.name == "my_actions"
    assert ls.labels == ("running fast", "jumping", "Café dancing")  # whitespace collapsed, NFC
    assert ls.sha256 == labels_sha256(["running fast", "jumping", "Café dancing"])
    # same normalised list -> same digest; order matters
    q = tmp_path / "other.txt"
    q.write_text("\ufeffrunning fast\r\njumping\r\nCafé dancing\r\n", encoding="utf-8")  # BOM, CRLF
    assert load_labels(str(q)).sha256 == ls.sha256
    assert labels_sha256(["jumping", "running fast", "Café dancing"]) != ls.sha256


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="kinetics400"):
        load_labels("kinetics-9000")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="no labels"):
        load_labels(empty)
    only_comments = tmp_path / "c.txt"
    only_comments.write_text("# nothing\n\n   \n")
    with pytest.raises(ValueError, match="no labels"):
        load_labels(only_comments)
    dup = tmp_path / "dup.txt"
    dup.write_text("running\njumping\nRunning\n")
    with pytest.raises(ValueError, match=r"dup.txt:3: duplicate label 'Running' \(first on line 1\)"):
        load_labels(dup)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9\n")
    with pytest.raises(ValueError, match="UTF-8"):
        load_labels(bad)


def test_s3_label_file(s3_bucket, s3_server):
    import boto3

    boto3.client("s3", endpoint_url=s3_server).put_object(
        Bucket=s3_bucket, Key="labels/sports.txt", Body="surfing\nskiing\n".encode())
    ls = load_labels(f"s3://{s3_bucket}/labels/sports.txt")
    assert ls.name == "sports" and ls.labels == ("surfing", "skiing")
    with pytest.raises(FileNotFoundError):
        load_labels(f"s3://{s3_bucket}/labels/missing.txt")


@pytest.mark.parametrize("name,count,first,last", [
    ("kinetics400", 400, "abseiling", "zumba"),
    ("kinetics600", 600, "abseiling", "zumba"),
    ("ucf101", 101, "Apply Eye Makeup", "Yo Yo"),
    ("hmdb51", 51, "brush hair", "wave"),
])
def test_builtin_label_sets(name, count, first, last):
    ls = load_labels(name)
    assert ls.name == name and len(ls) == count and len({x.casefold() for x in ls.labels}) == count
    assert (ls.labels[0], ls.labels[-1]) == (first, last) and ls.prompts is None
    assert ls.class_prompts("a video of {}")[0] == [f"a video of {first}"]


def test_builtin_spot_checks():
    k600 = load_labels("kinetics600").labels
    assert set(load_labels("kinetics400").labels) - set(k600) != set()  # K600 renamed some K400 classes
    assert "acting in play" in k600 and "zumba" in k600
    ucf = load_labels("ucf101").labels
    assert ucf.index("Basketball") == 7 and ucf.index("Tai Chi") == 90  # classInd.txt ids 8 and 91, 0-based
    hmdb = load_labels("hmdb51").labels
    assert list(hmdb) == sorted(hmdb) and "ride bike" in hmdb


def test_yaml_label_set(tmp_path):
    p = tmp_path / "acts.yaml"
    p.write_text('"riding a bike": ["a video of a person riding a bike", "cycling"]\n'
                 'swimming: a video of a person swimming\n', encoding="utf-8")
    ls = load_labels(p)
    assert ls.name == "acts" and ls.labels == ("riding a bike", "swimming")
    assert ls.prompts == (("a video of a person riding a bike", "cycling"), ("a video of a person swimming",))
    # prompts are verbatim: the job's template applies to plain files only
    assert ls.class_prompts("a photo of {}") == [["a video of a person riding a bike", "cycling"],
                                                  ["a video of a person swimming"]]
    # the digest covers the prompts; the same labels in a plain file hash as before
    q = tmp_path / "acts2.yml"
    q.write_text('"riding a bike": ["a video of a person riding a bike"]\n'
                 'swimming: a video of a person swimming\n', encoding="utf-8")
    assert load_labels(q).sha256 != ls.sha256 and load_labels(p).sha256 == ls.sha256
    plain = tmp_path / "acts.txt"
    plain.write_text("riding a bike\nswimming\n")
    assert load_labels(plain).sha256 == labels_sha256(["riding a bike", "swimming"]) != ls.sha256


@pytest.mark.parametrize("body,match", [
    ('a: x\nA: y\n', r"bad\.yaml:2: duplicate label 'A'"),
    ('a: ""\n', r"bad\.yaml: label 'a': empty prompt"),
    ('a: []\n', r"label 'a': expected a prompt or a non-empty list"),
    ('a: [x, 3]\n', r"label 'a': prompt 3 is not a string"),
    ('a: {b: c}\n', r"label 'a': expected a prompt"),
    ('1: x\n', r"label 1 must be a non-empty string"),
    ('- a\n- b\n', r"expected a mapping"),
    ('a: [x\n', r"invalid YAML"),
])
def test_yaml_errors_name_the_file_and_label(tmp_path, body, match):
    p = tmp_path / "bad.yaml"
    p.write_text(body)
    with pytest.raises(ValueError, match=match):
        load_labels(p)


def test_encoder_averages_yaml_prompts_with_class_text_features(tmp_path):
    import torch

    from jobs.config import EncoderConfig
    from jobs.encoder import Encoder, inspect_model
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.model import XCLIP
    from xclip_core.tokenizer import CLIPTokenizer

    model_dir = str(write_random_checkpoint(tmp_path / "m", preset="tiny", num_frames=4))
    p = tmp_path / "acts.yaml"
    p.write_text('bike: ["riding a bike", "cycling"]\nswim: "swimming"\n')
    cfg = EncoderConfig(model=model_dir, labels=str(p), prompt_template="a photo of {}", device="cpu")
    info = inspect_model(cfg)
    assert info.prompts == (("riding a bike", "cycling"), ("swimming",))
    enc = Encoder(cfg, labels=info.labels, prompts=info.prompts, num_threads=1)
    model, tok = XCLIP.from_pretrained(model_dir), CLIPTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        enc_ids = tok(["riding a bike", "cycling", "swimming"])
        raw = model.encode_text(enc_ids["input_ids"], enc_ids["attention_mask"])
    bike = torch.nn.functional.normalize(raw[:2], dim=-1).mean(0) * raw[:2].norm(dim=-1).mean()
    torch.testing.assert_close(enc.text, torch.stack([bike, raw[2]]), rtol=1e-5, atol=1e-5)
    # a plain file gets the template
    plain = tmp_path / "acts.txt"
    plain.write_text("bike\nswim\n")
    assert inspect_model(EncoderConfig(model=model_dir, labels=str(plain), prompt_template="a photo of {}")
                         ).prompts == (("a photo of bike",), ("a photo of swim",))
