"""``xclip-index serve`` over real HTTP (uvicorn on loopback) on a real job's index: access
control, the JSON API, media with Range, traversal, escaping, reviews, the runs page, S3 media."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
import requests

from tests.conftest import own_ray
from tests.jobs_helpers import read_lance
from tests.serve_helpers import HOSTILE, HOSTILE_LABEL, TOKEN, index_copy, serving

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def built(s3_server, tmp_path_factory):
    with own_ray():  # for the second run (test_runs_page_...)
        yield index_copy(tmp_path_factory, "serve-app")


@pytest.fixture(scope="module")
def server(built):
    with serving(built["out"]) as s:
        yield s


@pytest.fixture(scope="module")
def browser_session(server):
    """A requests session logged in through the form, with its CSRF token."""
    s = requests.Session()
    r = s.post(f"{server.url}/login", data={"token": TOKEN, "reviewer": "ana"}, allow_redirects=False)
    assert r.status_code == 303 and "xclip_session" in s.cookies
    csrf = re.search(r'name="csrf" value="([^"]+)"', s.get(f"{server.url}/review").text)
    assert csrf, "the review page has no CSRF field"
    s.csrf = csrf.group(1)
    return s


def _videos(built):
    return {v["uri"].rsplit("/", 1)[-1]: v for v in read_lance(built["out"], "videos").to_pylist()}


def test_no_token_gives_401_and_pages_redirect_to_login(server, built):
    vid = _videos(built)["plays.webm"]["video_id"]
    for path in ("/api/search?q=a+dog", "/api/review", f"/media/{vid}", "/thumb/" + vid + ":000000"):
        assert requests.get(server.url + path).status_code == 401, path
        assert requests.get(server.url + path, headers={"Authorization": "Bearer wrong-token-xxxxxxxxxx"}) \
            .status_code == 401, path
    r = requests.post(f"{server.url}/api/review/{vid}", json={"action": "allow", "reason": "x"})
    assert r.status_code == 401
    for path in ("/", "/review", "/runs"):
        r = requests.get(server.url + path, allow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    r = requests.post(f"{server.url}/login", data={"token": "wrong-token-xxxxxxxxxx", "reviewer": "x"},
                      allow_redirects=False)
    assert r.status_code == 401 and "xclip_session" not in r.cookies
    login = requests.get(f"{server.url}/login")
    assert login.status_code == 200 and built["out"] not in login.text and TOKEN not in login.text


def test_forms_need_the_csrf_token_and_the_same_origin(server, built, browser_session):
    vid = _videos(built)["other.webm"]["video_id"]
    url = f"{server.url}/review/{vid}"
    assert browser_session.post(url, data={"action": "allow", "reason": "r"}, allow_redirects=False).status_code == 403
    assert browser_session.post(url, data={"action": "allow", "reason": "r", "csrf": "forged"},
                                allow_redirects=False).status_code == 403
    r = browser_session.post(url, data={"action": "allow", "reason": "r", "csrf": browser_session.csrf},
                             headers={"Origin": "http://evil.example"}, allow_redirects=False)
    assert r.status_code == 403
    # the API with a session cookie needs the CSRF header too
    assert browser_session.post(f"{server.url}/api/review/{vid}", json={"action": "allow", "reason": "r"}) \
        .status_code == 403
    assert not any(r["video_id"] == vid for r in _reviews(built))


def _reviews(built):
    import lancedb

    db = lancedb.connect(f"{built['out']}/lancedb")
    return db.open_table("reviews").to_arrow().to_pylist() if "reviews" in db.list_tables().tables else []


def test_api_search_has_the_keys_and_hits_of_search_json(server, built, capsys):
    from xclip_cli import main

    assert main(["search", "--index", built["out"], "a person cooking", "--limit", "5", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    r = requests.get(f"{server.url}/api/search", params={"q": "a person cooking", "limit": 5}, headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert re.fullmatch(r"search;dur=[0-9.]+", r.headers["server-timing"])
    api = r.json()
    assert len(api) == 5 and [sorted(h) for h in api] == [sorted(h) for h in cli]
    assert [h["segment_id"] for h in api] == [h["segment_id"] for h in cli]
    assert [h["score"] for h in api] == pytest.approx([h["score"] for h in cli])
    label = api[0]["labels"][0]
    only = requests.get(f"{server.url}/api/search", params={"q": "x", "label": label, "limit": 50}, headers=AUTH).json()
    assert only and all(label in h["labels"] for h in only)
    prefix = str(built["videos"] / "plays")
    mine = requests.get(f"{server.url}/api/search", params={"q": "x", "prefix": prefix, "limit": 50}, headers=AUTH).json()
    assert mine and {h["uri"] for h in mine} == {prefix + ".webm"}
    assert requests.get(f"{server.url}/api/search", params={"q": ""}, headers=AUTH).status_code == 400
    assert requests.get(f"{server.url}/api/search", params={"q": "x", "limit": "0"}, headers=AUTH).status_code == 400


def test_media_serves_the_indexed_file_with_ranges(server, built):
    v = _videos(built)["plays.webm"]
    data = open(v["uri"], "rb").read()
    url = f"{server.url}/media/{v['video_id']}"
    full = requests.get(url, headers=AUTH)
    assert full.status_code == 200 and full.content == data and full.headers["content-type"] == "video/webm"
    part = requests.get(url, headers={**AUTH, "Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == data[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(data)}"
    tail = requests.get(url, headers={**AUTH, "Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    assert requests.get(url, headers={**AUTH, "Range": f"bytes={len(data) + 10}-"}).status_code == 416


def test_traversal_and_unknown_ids_give_404(server, built, browser_session):
    vid = _videos(built)["plays.webm"]["video_id"]
    paths = ["/media/../../../../etc/passwd", "/media/..%2F..%2F..%2Fetc%2Fpasswd", "/media/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
             "/media/" + "0" * 40, "/media/" + vid.upper(), "/media/" + vid + "%00", "/thumb/..%2F..%2Flancedb",
             "/thumb/" + vid + ":999999", "/runs/..%2Frun-1.json", "/runs/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
             "/runs/run-1.json", "/runs/..%2F..%2Fvideos%2Fplays.webm", "/static/..%2Fapp.py",
             "/static/../app.py", "/watch/" + "f" * 40]
    for p in paths:
        r = browser_session.get(server.url + p, allow_redirects=False)
        assert r.status_code == 404, (p, r.status_code)
        assert b"passwd" not in r.content and b"import" not in r.content


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_hostile_file_name_and_label_stay_escaped(server, built, browser_session):
    hostile = _videos(built)[HOSTILE]
    pages = [browser_session.get(f"{server.url}/", params={"q": "a video", "limit": 50}).text,
             browser_session.get(f"{server.url}/", params={"q": "a video", "label": HOSTILE_LABEL}).text,
             browser_session.get(f"{server.url}/review").text, browser_session.get(f"{server.url}/runs").text,
             browser_session.get(f"{server.url}/watch/{hostile['video_id']}").text]
    for i, text in enumerate(pages):
        p = _Tags()
        p.feed(text)
        scripts = [a.get("src") for t, a in p.tags if t == "script"]
        assert scripts == ["/static/app.js"], (i, scripts)
        assert not any(k.startswith("on") for _, a in p.tags for k in a), i
        assert HOSTILE not in text and HOSTILE_LABEL not in text and "<img src=x" not in text
    first = "".join(_feed(pages[0]).text)
    assert HOSTILE in first  # shown, as text
    assert any(HOSTILE_LABEL in t for t in _feed(pages[1]).text)
    assert HOSTILE in "".join(_feed(pages[2]).text) and HOSTILE in "".join(_feed(pages[4]).text)


def _feed(text):
    p = _Tags()
    p.feed(text)
    return p


def test_review_api_records_reviews_and_the_queue_shrinks(server, built):
    vids = _videos(built)
    queue = requests.get(f"{server.url}/api/review", headers=AUTH).json()
    by = {i["uri"].rsplit("/", 1)[-1]: i for i in queue}
    assert set(by) == {"plays.webm", HOSTILE, "other.webm", "broken.mp4"}
    assert by["broken.mp4"]["decision"] == "error" and "failed" in by["broken.mp4"]["reason"]
    assert by["plays.webm"]["decision"] == "review" and by["plays.webm"]["flags"]
    assert [i["video_id"] for i in requests.get(f"{server.url}/api/review", params={"decision": "error"},
                                                 headers=AUTH).json()] == [vids["broken.mp4"]["video_id"]]
    target = vids["other.webm"]["video_id"]
    url = f"{server.url}/api/review/{target}"
    assert requests.post(url, json={"action": "delete", "reason": "x"}, headers=AUTH).status_code == 400
    assert requests.post(url, json={"action": "allow", "reason": "  "}, headers=AUTH).status_code == 400
    assert requests.post(f"{server.url}/api/review/{'0' * 40}", json={"action": "allow", "reason": "x"},
                         headers=AUTH).status_code == 404
    r = requests.post(url, json={"action": "escalate", "reason": "not sure"}, headers={**AUTH, "X-Reviewer": "bo"})
    assert r.status_code == 201
    esc = requests.get(f"{server.url}/api/review", params={"decision": "escalate"}, headers=AUTH).json()
    assert [i["video_id"] for i in esc] == [target]  # escalated: still pending
    r = requests.post(url, json={"action": "allow", "reason": "a cat, not a weapon"}, headers=AUTH)
    assert r.status_code == 201 and r.json()["model_decision"] == "review"
    left = {i["video_id"] for i in requests.get(f"{server.url}/api/review", headers=AUTH).json()}
    assert target not in left and len(left) == 3
    rows = [x for x in _reviews(built) if x["video_id"] == target]
    assert [(x["action"], x["reviewer"], x["model_decision"]) for x in rows] == \
        [("escalate", "bo", "review"), ("allow", "api", "review")]
    assert rows[1]["reason"] == "a cat, not a weapon" and rows[1]["policy_hash"].startswith("sha256:")
    logged = read_parquet_log(built["out"])
    assert sorted(logged) == sorted(x["review_id"] for x in _reviews(built))


def read_parquet_log(out):
    import pyarrow.dataset as ds

    return ds.dataset(f"{out}/parquet/reviews", format="parquet").to_table().column("review_id").to_pylist()


def test_moderate_keeps_reviews_and_writes_report_queue_and_manifest(server, built, tmp_path):
    from xclip_cli import main

    before = _reviews(built)
    allowed = {r["video_id"] for r in before if r["action"] == "allow"}
    assert allowed
    queue = tmp_path / "queue.jsonl"
    assert main(["moderate", "--index", built["out"], "--policy", str(built["root"] / "policy.yaml"),
                 "--run-id", "mod-2", "--review-out", str(queue)]) == 0
    assert _reviews(built) == before  # a rerun never touches reviews
    items = [json.loads(x) for x in queue.read_text().splitlines()]
    assert {i["video_id"] for i in items} & allowed == set() and len(items) == 3  # allowed left the queue
    assert [i["name"] for i in items if i["decision"] == "error"] == ["broken.mp4"]  # the broken upload, named
    manifest = json.loads(open(f"{built['out']}/runs/mod-2.json").read())
    assert manifest["kind"] == "moderate" and manifest["counts"]["review"] == 3
    assert manifest["counts_after_review"]["allow"] == 1 and manifest["counts_after_review"]["error"] == 1
    report = open(f"{built['out']}/runs/mod-2-moderation.html", encoding="utf-8").read()
    assert manifest["report"].endswith("runs/mod-2-moderation.html")
    p = _feed(report)
    text = "".join(p.text)
    assert "broken.mp4" in text and "failed" in text  # errors named, with their reason
    assert HOSTILE in text and "<img src=x" not in report
    links = [a["href"] for t, a in p.tags if t == "a" and "moment" in a.get("class", "")]
    assert links and all(re.fullmatch(r"file:///\S+#t=[0-9.]+,[0-9.]+", h) for h in links)
    # still open in the app: the queue is unchanged by the rerun
    left = {i["video_id"] for i in requests.get(f"{server.url}/api/review", headers=AUTH).json()}
    assert left & allowed == set() and len(left) == 3


def test_runs_page_lists_runs_failures_deletions_and_reports(server, built, browser_session):
    from jobs.runner import index_videos

    gone = built["videos"] / "other.webm"
    data = gone.read_bytes()
    gone.unlink()  # from the shared video folder: put back below
    try:
        index_videos([str(built["videos"])], built["out"], built["model"], labels=str(built["root"] / "labels.txt"),
                     run_id="run-2", decoder={"window_s": 1.0},  # on the module's Ray (fixture `built`)
                     encoder={"batch_size": 8, "top_k": 3, "policy": str(built["root"] / "policy.yaml")},
                     writer={"max_delete_share": 1.0})  # 1 of 4 videos gone: above the 10% guard
    finally:
        gone.write_bytes(data)
    page = browser_session.get(f"{server.url}/runs").text
    rows = re.findall(r'<tr data-run-id="([^"]+)">(.*?)</tr>', page, re.S)
    assert [r for r, _ in rows] == ["run-2", "mod-2", "run-1"]
    body = dict(rows)
    assert str(gone) in body["run-2"] and str(gone) not in body["run-1"]
    assert "broken.mp4" in body["run-1"]  # example URI of the failure group
    reason = re.search(r'class="failure"><b>1</b> (.*?)<br>', body["run-1"]).group(1)
    assert reason.startswith("failed: ") and str(built["videos"]) not in reason
    for name in ("run-1.html", "run-1-moderation.html", "mod-2-moderation.html"):
        assert f'href="/runs/{name}"' in page
        r = browser_session.get(f"{server.url}/runs/{name}")
        assert r.status_code == 200 and "<h1>" in r.text and "unsafe-inline" in r.headers["content-security-policy"]
    # a rerun that decided only the broken file: its report still lists every pending video (cumulative)
    report = open(f"{built['out']}/runs/run-2-moderation.html", encoding="utf-8").read()
    assert "this run decided 1</p>" in report
    assert report.count('data-decision="review"') == 2 and "broken.mp4" in report


def test_s3_media_redirects_to_a_presigned_url(built, s3_bucket, s3_server, tmp_path):
    import shutil

    import boto3
    import lancedb

    out = tmp_path / "s3index"
    shutil.copytree(built["out"], out)
    v = _videos(built)["plays.webm"]
    data = open(v["uri"], "rb").read()
    boto3.client("s3", endpoint_url=s3_server).put_object(Bucket=s3_bucket, Key="v/plays 1.webm", Body=data)
    lancedb.connect(str(out / "lancedb")).open_table("videos").update(
        where=f"video_id = '{v['video_id']}'", values={"uri": f"s3://{s3_bucket}/v/plays 1.webm"})
    with serving(str(out)) as s:
        r = requests.get(f"{s.url}/media/{v['video_id']}", headers=AUTH, allow_redirects=False)
        assert r.status_code == 307
        loc = r.headers["location"]
        assert loc.startswith(f"{s3_server}/{s3_bucket}/v/plays%201.webm?") and "Signature" in loc
        assert "testing-secret" not in loc
        got = requests.get(loc)
        assert got.status_code == 200 and got.content == data
        assert s3_server.split("//")[1] in r.headers["content-security-policy"]


def test_cli_errors_are_one_line(built, capsys, monkeypatch):
    from xclip_cli import main

    monkeypatch.setenv("XCLIP_INDEX_TOKEN", "short")
    assert main(["serve", "--index", built["out"], "--port", "0"]) == 2
    assert capsys.readouterr().err.strip().startswith("xclip-index: error: XCLIP_INDEX_TOKEN: at least 16")
    monkeypatch.delenv("XCLIP_INDEX_TOKEN")
    assert main(["serve", "--index", str(built["root"] / "nothing"), "--port", "0"]) == 4  # as every command
    err = capsys.readouterr().err.strip()
    assert err.startswith("xclip-index: error: no runs/*.json") and "\n" not in err


def test_watch_page_checks_its_times(server, built, browser_session):
    vid = _videos(built)["plays.webm"]["video_id"]
    ok = browser_session.get(f"{server.url}/watch/{vid}", params={"t": "1.5", "end": "2.5"})
    assert ok.status_code == 200 and 'data-start="1.500"' in ok.text and f"/media/{vid}#t=1.50,2.50" in ok.text
    for bad in ({"t": "nan"}, {"t": "inf"}, {"t": "1", "end": "x"}):
        assert browser_session.get(f"{server.url}/watch/{vid}", params=bad).status_code == 400, bad
