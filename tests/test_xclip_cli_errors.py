"""xclip_cli.errors: the one exit-code map, redaction and the one error line."""
from __future__ import annotations

import importlib
import importlib.util

import pytest

from xclip_cli import errors


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def test_every_mapped_class_exists_and_is_an_exception():
    for name, code in errors.EXIT_CODES.items():
        module, cls = name.rsplit(".", 1)
        if not _installed(module.split(".")[0]):  # a package of a branch not merged yet (xclip_store)
            continue
        obj = getattr(importlib.import_module(module), cls)  # a stale entry (a moved class) fails here
        assert isinstance(obj, type) and issubclass(obj, BaseException), name
        assert code in (errors.EXIT_PIPELINE, errors.EXIT_CONFIG, errors.EXIT_MODEL, errors.EXIT_OUTPUT,
                        errors.EXIT_INTERNAL, errors.EXIT_INPUT, errors.EXIT_LOCKED), name


def test_codes_follow_the_class_hierarchy():
    from jobs.config import ConfigError
    from jobs.runner import InternalError, PipelineError
    from xclip_search.index import IndexError_

    class Sub(ConfigError):
        pass

    assert errors.exit_code(Sub("x")) == errors.EXIT_CONFIG
    assert errors.exit_code(InternalError("x")) == errors.EXIT_INTERNAL  # before its base, PipelineError
    assert errors.exit_code(PipelineError("x")) == errors.EXIT_PIPELINE
    assert errors.exit_code(IndexError_("x")) == errors.EXIT_OUTPUT
    assert errors.exit_code(FileNotFoundError(2, "No such file")) == errors.EXIT_OUTPUT
    assert errors.exit_code(OSError(28, "No space left on device")) == errors.EXIT_OUTPUT
    assert errors.exit_code(errors.CliError(errors.EXIT_LOCKED, "x")) == errors.EXIT_LOCKED
    assert errors.exit_code(TypeError("x")) is None  # a bug


def test_redaction(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "tok-value-123")
    text = errors.redact("key s3cr3t-value, token tok-value-123, url s3://me:pa55word@host/x and https://u:p@h/")
    assert "s3cr3t" not in text and "tok-value" not in text and "pa55word" not in text and "u:p@" not in text
    assert "s3://***@host/x" in text


def test_one_line_for_every_kind_of_failure(capsys, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.delenv("XCLIP_INDEX_TRACEBACK", raising=False)
    from jobs.runner import PipelineError

    cases = [(PipelineError("pipeline error: x\n2 videos: 1 ok"), errors.EXIT_PIPELINE, "pipeline error: x"),
             (OSError(28, "No space left on device"), errors.EXIT_OUTPUT,
              "cannot read or write the index/output: OSError: [Errno 28] No space left"),
             (RuntimeError("lance error: LanceError(IO): No space left on device (os error 28), /root/x.rs:1:2"),
              errors.EXIT_OUTPUT, "cannot read or write the index/output: RuntimeError: lance error"),
             (TypeError("bad s3cr3t-value"), errors.EXIT_INTERNAL, "internal error (a bug in xclip-index"),
             (errors.Terminated(), errors.EXIT_TERMINATED, "terminated (SIGTERM)"),
             (KeyboardInterrupt(), errors.EXIT_INTERRUPTED, "interrupted")]
    for exc, code, text in cases:
        assert errors.handle(exc) == code
        out, err = capsys.readouterr()
        assert err.count("\n") == 1 and err.startswith(f"xclip-index: error: {text}"), err
        assert "s3cr3t" not in err
    errors.handle(PipelineError("pipeline error: x\n2 videos: 1 ok"))
    assert "2 videos: 1 ok" in capsys.readouterr().out  # a failed run's summary: on stdout


def test_traceback_on_request(capsys, monkeypatch):
    monkeypatch.setenv("XCLIP_INDEX_TRACEBACK", "1")
    try:
        raise TypeError("boom")
    except TypeError as e:
        assert errors.handle(e) == errors.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("xclip-index: error: internal error")


def test_flag_files_are_checked_before_any_work(tmp_path):
    errors.check_writable("--html", str(tmp_path / "page.html"))
    errors.check_writable("--html", "s3://bucket/page.html")  # checked when written
    for path, why in [(tmp_path / "no" / "page.html", "no such folder"), (tmp_path, "is a folder")]:
        with pytest.raises(errors.CliError, match=why) as e:
            errors.check_writable("--html", str(path))
        assert e.value.code == errors.EXIT_CONFIG
