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
