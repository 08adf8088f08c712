"""The ``xclip-index serve`` web app (Starlette): pages, JSON API, media.

    from xclip_serve.app import create_app
    app = create_app(ServeConfig(index="s3://bucket/index"), token="...")   # an ASGI app for uvicorn

Pages (HTML, Jinja2 templates with autoescaping, a little JS in static/app.js):
    /             search: text box, filters, hits (thumbnail, score, time range, labels, "similar")
    /watch/{id}   the player, started at ``t`` and stopped at ``end`` (Media Fragments + JS)
    /review       the pending moderation decisions of every run, oldest first, with actions
    /runs         history across runs; /runs/{name}.html the run and moderation reports
API (JSON): GET /api/search, GET /api/review, POST /api/review/{video_id}.
Media: GET /media/{video_id} (Range / presigned redirect), GET /thumb/{segment_id}
(both in ``xclip_serve.api``).
Everything but /login and /static needs the token (``xclip_serve.auth``).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import pathlib
import threading
import time
import urllib.parse

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from xclip_serve import media
from xclip_serve.auth import COOKIE, SESSION_TTL_S, Auth, same_origin
from xclip_serve.search import SearchError, SearchForm, run_search

log = logging.getLogger("xclip_serve")
HERE = pathlib.Path(__file__).parent
QUEUE_PAGE = 50
STRIP = 8  # thumbnails per queue item


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    index: str
    host: str = "127.0.0.1"
    port: int = 8080
    model: str | None = None
    precision: str = "fp32"

    def __post_init__(self):
        if not self.index:
            raise ValueError("--index: required")
        if not 0 <= int(self.port) <= 65535:
            raise ValueError(f"--port: expected 0..65535, got {self.port}")


def _csp() -> str:
    from xclip_core import storage

    media_src = "'self' https://*.amazonaws.com"
    ep = storage.endpoint_url()
    if ep:
        u = urllib.parse.urlsplit(ep)
        media_src += f" {u.scheme}://{u.netloc}"
    return (f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"media-src {media_src}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class State:
    def __init__(self, cfg: ServeConfig, index, auth: Auth):
        from jinja2 import Environment, FileSystemLoader, select_autoescape

        self.cfg, self.index, self.auth = cfg, index, auth
        self.env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                               autoescape=select_autoescape(default=True, default_for_string=True))
        self.env.filters["q"] = lambda d: urllib.parse.urlencode(d, doseq=True)
        self.write_lock = threading.Lock()
        self.csp = _csp()

    def page(self, request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
        session = getattr(request.state, "session", None)
        text = self.env.get_template(name).render(
            session=session, csrf=session["csrf"] if session else "", index_uri=self.index.uri, **ctx)
        return HTMLResponse(text, status_code=status)

    def decisions(self) -> list[dict]:
        from moderation.reviews import current_decisions

        return current_decisions(self.index.uri)


# ------------------------------------------------------------------ access control
PUBLIC = ("/login", "/static/")


def _authorise(request: Request) -> Response | None:
    """None when the request may go on; else the 401/403 (or the redirect to /login)."""
    st: State = request.app.state.xs
    path = request.url.path
    request.state.session = st.auth.session(request)
    if path.startswith(PUBLIC):
        return None
    api = path.startswith("/api/")
    if st.auth.bearer_ok(request):  # API clients (browsers never add this header on their own: no CSRF)
        request.state.reviewer = request.headers.get("x-reviewer") or "api"
        return None
    s = request.state.session
    if s is None:
        if api or path.startswith(("/media/", "/thumb/")) or request.method != "GET":
            return JSONResponse({"error": "authentication required: Authorization: Bearer <token>"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return RedirectResponse("/login?" + urllib.parse.urlencode({"next": _local(str(request.url))}),
                                status_code=303)
    request.state.reviewer = s["reviewer"]
    if request.method not in ("GET", "HEAD"):
        if not same_origin(request):
            return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
        if api and not st.auth.csrf_ok(s, request.headers.get("x-csrf-token")):
            return JSONResponse({"error": "CSRF token missing or wrong"}, status_code=403)
    return None


def _local(url: str) -> str:
    """A same-site path for ``next`` redirects (never another host: no ``//``, no backslash)."""
    u = urllib.parse.urlsplit(url)
    path = u.path if u.path.startswith("/") and not u.path.startswith("//") and "\\" not in u.path else "/"
    return path + (f"?{u.query}" if u.query else "")


class Guard:
    """ASGI middleware: access control, security headers, no credential in errors."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope, receive)
        st: State = scope["app"].state.xs
        denied = _authorise(request)
        csp = st.csp if not scope["path"].startswith("/runs/") else \
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                for k, v in (("content-security-policy", csp), ("x-content-type-options", "nosniff"),
                             ("referrer-policy", "same-origin"), ("x-frame-options", "DENY"),
                             ("cache-control", "no-store")):
                    headers.append((k.encode(), v.encode()))
            await send(message)

        if denied is not None:
            return await denied(scope, receive, send_with_headers)
        return await self.app(scope, receive, send_with_headers)


# ------------------------------------------------------------------ pages
def login_page(request: Request):
    st: State = request.app.state.xs
    return st.page(request, "login.html", next=_local(request.query_params.get("next") or "/"), failed=False)


async def login_post(request: Request):
    st: State = request.app.state.xs
    if not same_origin(request):
        return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
    form = await request.form()
    reviewer = (form.get("reviewer") or "").strip() or "reviewer"
    sid = st.auth.login(form.get("token"), reviewer)
    nxt = _local(form.get("next") or "/")
    if sid is None:
        log.warning("login refused (wrong token) from %s", request.client.host if request.client else "?")
        return st.page(request, "login.html", status=401, next=nxt, failed=True)
    r = RedirectResponse(nxt, status_code=303)
    r.set_cookie(COOKIE, sid, max_age=SESSION_TTL_S, httponly=True, samesite="strict", path="/")
    return r


def logout(request: Request):
    request.app.state.xs.auth.logout(request)
    r = RedirectResponse("/login", status_code=303)
    r.delete_cookie(COOKIE, path="/")
    return r


def _decision_map(st: State, form: SearchForm) -> dict | None:
    return {r["video_id"]: r["effective"] for r in st.decisions()} if form.decision else None


def search_page(request: Request):
    st: State = request.app.state.xs
    t0 = time.perf_counter()
    error, hits, form = None, [], SearchForm()
    try:
        form = SearchForm.from_params(request.query_params)
        hits = run_search(st.index, form, _decision_map(st, form))
    except SearchError as e:
        error = str(e)
    page = st.page(request, "search.html", form=form, hits=hits, error=error, status=400 if error else 200)
    page.headers["server-timing"] = f"search;dur={(time.perf_counter() - t0) * 1000:.1f}"
    return page


def watch_page(request: Request):
    st: State = request.app.state.xs
    vid = request.path_params["video_id"]
    uri = media.video_uri(st.index, vid)
    if uri is None:
        raise HTTPException(404)
    try:
        start = float(request.query_params.get("t") or 0.0)
        end = float(request.query_params["end"]) if request.query_params.get("end") else None
        if not math.isfinite(start) or (end is not None and not math.isfinite(end)):
            raise ValueError
        start = max(0.0, start)
    except ValueError:
        raise HTTPException(400, "t and end: seconds") from None
    row = next((r for r in st.decisions() if r["video_id"] == vid), None)
    return st.page(request, "watch.html", video_id=vid, uri=uri, start=start, end=end, row=row)


def review_page(request: Request):
    from moderation.reviews import pending

    st: State = request.app.state.xs
    decision, category = request.query_params.get("decision") or "", request.query_params.get("category") or ""
    rows = st.decisions()
    items = pending(rows, decision=decision or None, category=category or None)
    categories = sorted({f["category"] for r in pending(rows) for f in (r["flags"] or [])})
    shown = items[:QUEUE_PAGE]
    return st.page(request, "review.html", items=shown, total=len(items), decision=decision, category=category,
                   categories=categories, strips=_strips(st, shown), done=request.query_params.get("done"))


def _strips(st: State, items: list[dict]) -> dict[str, list[str]]:
    """video_id -> up to STRIP segment ids spread over the video (for thumbnails)."""
    from schemas.output import VIDEOS_TABLE, segment_id
    from schemas.sql import sql_list

    if not items:
        return {}
    rows = st.index.table(VIDEOS_TABLE).search().where(
        f"video_id IN ({sql_list(i['video_id'] for i in items)})").select(["video_id", "num_segments"]) \
        .limit(None).to_arrow().to_pylist()
    out = {}
    for r in rows:
        n = int(r["num_segments"] or 0)
        picks = range(n) if n <= STRIP else sorted({round(k * (n - 1) / (STRIP - 1)) for k in range(STRIP)})
        out[r["video_id"]] = [segment_id(r["video_id"], k) for k in picks]
    return out


async def review_post(request: Request):
    """The review form: CSRF checked, then the same as the API."""
    st: State = request.app.state.xs
    form = await request.form()
    if not st.auth.csrf_ok(request.state.session, form.get("csrf")):
        return JSONResponse({"error": "CSRF token missing or wrong"}, status_code=403)
    vid = request.path_params["video_id"]
    result = await _record(request, vid, form.get("action"), form.get("reason"))
    if isinstance(result, Response):
        return result
    back = _local(form.get("back") or "/review")
    sep = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{sep}done={vid}", status_code=303)


async def _record(request: Request, vid: str, action, reason):
    from starlette.concurrency import run_in_threadpool

    from moderation.reviews import ReviewError, add_review

    st: State = request.app.state.xs
    if not media.VIDEO_ID.fullmatch(vid):
        raise HTTPException(404)

    def write():
        with st.write_lock:
            return add_review(st.index.uri, vid, str(action or ""), reason=str(reason or ""),
                              reviewer=request.state.reviewer)
    try:
        return await run_in_threadpool(write)
    except ReviewError as e:
        status = 404 if "not in this index" in str(e) else 400
        return JSONResponse({"error": str(e)}, status_code=status)


def runs_page(request: Request):
    from xclip_serve.runs import history

    st: State = request.app.state.xs
    return st.page(request, "runs.html", runs=history(st.index))


def run_report(request: Request):
    from xclip_serve.runs import report_html

    text = report_html(request.app.state.xs.index, request.path_params["name"])
    if text is None:
        raise HTTPException(404)
    return HTMLResponse(text)


async def http_error(request: Request, exc: HTTPException):
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return HTMLResponse(f"<!doctype html><title>{exc.status_code}</title><h1>{exc.status_code}</h1>",
                        status_code=exc.status_code)


async def internal_error(request: Request, exc: Exception):
    log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
    return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server log"}, status_code=500)


def create_app(cfg: ServeConfig, *, token: str, index=None) -> Starlette:
    """The ASGI app over ``cfg.index`` (opened here unless ``index`` is given)."""
    from xclip_serve.api import api_review, api_review_post, api_search, media_get, thumb_get

    if index is None:
        from xclip_search import open_index

        index = open_index(cfg.index, model=cfg.model, precision=cfg.precision)
    routes = [
        Route("/", search_page), Route("/login", login_page), Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/watch/{video_id}", watch_page), Route("/review", review_page),
        Route("/review/{video_id}", review_post, methods=["POST"]),
        Route("/runs", runs_page), Route("/runs/{name}", run_report),
        Route("/api/search", api_search), Route("/api/review", api_review),
        Route("/api/review/{video_id}", api_review_post, methods=["POST"]),
        Route("/media/{video_id}", media_get), Route("/thumb/{segment_id}", thumb_get),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal_error})
    app.state.xs = State(cfg, index, Auth(token))
    app.add_middleware(Guard)
    return app
