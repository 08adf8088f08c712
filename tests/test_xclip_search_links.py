"""xclip_search.links.moment_url: file:// links with a media fragment, s3:// through a template."""
from __future__ import annotations

from xclip_search.links import MEDIA_URL_ENV, moment_url


def test_local_files_get_an_encoded_file_url_with_the_time_range():
    assert moment_url("/data/a b/<x>\"'.mp4", 1, 2.5) == "file:///data/a%20b/%3Cx%3E%22%27.mp4#t=1.00,2.50"
    assert moment_url("/v/ü.mkv", 0.0, None) == "file:///v/%C3%BC.mkv#t=0.00,0.00"


def test_s3_needs_a_template(monkeypatch):
    monkeypatch.delenv(MEDIA_URL_ENV, raising=False)
    assert moment_url("s3://b/k.mp4", 1, 2) is None
    monkeypatch.setenv(MEDIA_URL_ENV, "https://cdn.example.com/{bucket}/{key}#t={start},{end}")
    assert moment_url("s3://b/dir/a b#1.mp4", 3, 4.25) == "https://cdn.example.com/b/dir/a%20b%231.mp4#t=3.00,4.25"
    assert moment_url("s3://b/k.mp4", 0, 1, template="https://x/?u={uri}") == "https://x/?u=s3%3A%2F%2Fb%2Fk.mp4"
    assert moment_url("http://host/v.mp4", 0, 1) is None and moment_url("relative.mp4", 0, 1) is None
