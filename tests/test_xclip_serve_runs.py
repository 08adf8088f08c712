"""xclip_serve.runs.normalise_reason: one failure cause is one group, whatever the path."""
from __future__ import annotations

from xclip_serve.runs import REPORT_NAME, normalise_reason


def test_paths_and_uris_are_replaced():
    a = normalise_reason("cannot open container: InvalidDataError: [Errno 1094995529] Invalid data found when "
                         "processing input: '/tmp/x/videos/broken.mp4'", "/tmp/x/videos/broken.mp4")
    b = normalise_reason("cannot open container: InvalidDataError: [Errno 1094995529] Invalid data found when "
                         "processing input: '/srv/other dir/b.mp4'", "/srv/other dir/b.mp4")
    assert a == b == ("cannot open container: InvalidDataError: [Errno 1094995529] Invalid data found when "
                      "processing input: '<path>'")
    assert normalise_reason("NoSuchKey: s3://bucket/a/b.mp4 gone\nTraceback ...") == "NoSuchKey: <path> gone"
    assert normalise_reason(None) == normalise_reason("  ") == "no reason given"
    assert normalise_reason("timeout after 30 s") == "timeout after 30 s"


def test_report_names_are_plain_file_names():
    assert REPORT_NAME.fullmatch("run-1.html") and REPORT_NAME.fullmatch("mod-2-moderation.html")
    for bad in ("../x.html", "a/b.html", ".hidden.html", "x.json", "run-1.html/", "%2e%2e.html"):
        assert not REPORT_NAME.fullmatch(bad), bad
