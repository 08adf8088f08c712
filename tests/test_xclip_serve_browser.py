"""``xclip-index serve`` in a real browser (Playwright driving Debian's chromium): log in, search,
click a hit and the video plays from the hit's start; review a queued item and see it leave the
queue and land in ``reviews``; the runs page; the static ``search --html`` page's thumbnails.

Screenshots of every page go to ``tests/artifacts/`` (not committed). Skipped, with the reason, only
when no chromium is installed (``apt-get install -y chromium``; ``CHROMIUM`` names another binary).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.serve_helpers import TOKEN, index_copy, serving

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("no chromium binary (apt-get install -y chromium, or set CHROMIUM=/path/to/chromium)",
                allow_module_level=True)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"
REVIEWER = "Ana <Tester>"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return index_copy(tmp_path_factory, "serve-browser")


@pytest.fixture(scope="module")
def server(built):
    with serving(built["out"]) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, server):
    """One logged-in page (the login form, as a user would)."""
    ctx = browser.new_context(viewport={"width": 1100, "height": 800})
    pg = ctx.new_page()
    pg.set_default_timeout(15_000)
    pg.goto(server.url + "/")
    assert "/login" in pg.url
    pg.screenshot(path=str(ARTIFACTS / "login.png"))
    pg.fill("input[name=token]", TOKEN)
    pg.fill("input[name=reviewer]", REVIEWER)
    pg.click("button[type=submit]")
    pg.wait_for_url(server.url + "/")
    yield pg
    ctx.close()


def test_query_to_the_playing_moment_in_two_clicks(page, server):
    page.fill("#q", "a person riding a bike")
    page.press("#q", "Enter")  # click 1 (the search)
    page.wait_for_selector("li.hit")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(ARTIFACTS / "search.png"), full_page=True)
    hits = page.query_selector_all("li.hit")
    assert len(hits) >= 5
    widths = page.eval_on_selector_all("li.hit img", "els => els.map(e => e.clientWidth)")
    assert widths and all(w == 160 for w in widths)
    later = [h for h in hits if float(h.get_attribute("data-start")) >= 1.0]
    assert later, "no hit starts after 1 s"
    start = float(later[0].get_attribute("data-start"))
    end = float(later[0].query_selector("a.thumb").get_attribute("href").split("end=")[1])
    later[0].query_selector("a.thumb").click()  # click 2: the hit
    page.wait_for_url("**/watch/**")
    # where playback began (the player records its currentTime once it can play: data-arrived);
    # it autoplays, so the live currentTime moves on, but only up to the moment's end (then pauses)
    at = float(page.wait_for_function("document.getElementById('player').dataset.arrived").json_value())
    assert abs(at - start) < 0.5
    now = page.evaluate("document.getElementById('player').currentTime")
    assert start - 0.5 < now <= end + 0.25
    page.screenshot(path=str(ARTIFACTS / "watch.png"), full_page=True)
    assert f"{start:.2f} s" in page.inner_text("p.range")


def test_review_a_queued_item(page, server, built):
    import lancedb

    page.goto(server.url + "/review")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)
    items = page.query_selector_all("li.item")
    assert len(items) == 4  # 3 review + 1 error
    error = page.query_selector("li.item[data-decision=error]")
    assert "broken.mp4" in error.inner_text() and "failed" in error.query_selector(".reason").inner_text()
    item = page.query_selector("li.item[data-decision=review]")
    vid = item.get_attribute("data-video-id")
    loaded = item.eval_on_selector_all(".strip img", "els => els.map(e => e.complete && e.naturalWidth > 0)")
    assert len(loaded) >= 3 and all(loaded) and item.query_selector_all("a.moment")  # videos of 3-4 clips
    item.query_selector("input[name=reason]").fill("harmless: a test pattern")
    item.query_selector("button[value=block]").click()
    page.wait_for_selector("p.done")
    assert page.query_selector(f'li.item[data-video-id="{vid}"]') is None
    assert len(page.query_selector_all("li.item")) == 3
    page.screenshot(path=str(ARTIFACTS / "review-after.png"), full_page=True)
    rows = lancedb.connect(f"{built['out']}/lancedb").open_table("reviews").to_arrow().to_pylist()
    assert [(r["video_id"], r["action"], r["reviewer"], r["reason"], r["model_decision"]) for r in rows] == \
        [(vid, "block", REVIEWER, "harmless: a test pattern", "review")]


def test_runs_page_and_report(page, server):
    page.goto(server.url + "/runs")
    page.screenshot(path=str(ARTIFACTS / "runs.png"), full_page=True)
    assert page.query_selector('tr[data-run-id="run-1"]')
    page.click('a[href="/runs/run-1-moderation.html"]')
    page.wait_for_selector("h1")
    assert "Moderation report" in page.inner_text("h1")
    page.screenshot(path=str(ARTIFACTS / "moderation-report.png"), full_page=True)


def test_static_search_page_shows_160px_thumbnails_linked_to_moments(browser, built, tmp_path):
    from xclip_cli import main

    out = tmp_path / "hits.html"
    assert main(["search", "--index", built["out"], "a person cooking", "--limit", "6", "--html", str(out)]) == 0
    pg = browser.new_page()
    pg.goto(out.as_uri())
    pg.screenshot(path=str(ARTIFACTS / "search-static.png"), full_page=True)
    widths = pg.eval_on_selector_all("li.hit img", "els => els.map(e => e.clientWidth)")
    hrefs = pg.eval_on_selector_all("a.moment", "els => els.map(e => e.href)")
    pg.close()
    assert len(widths) == 6 and all(w == 160 for w in widths)  # a stray "}" once left them at 32 px
    assert len(hrefs) == 12 and all(h.startswith("file:///") and "#t=" in h for h in hrefs)
