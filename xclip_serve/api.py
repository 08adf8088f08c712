"""The JSON API and the media routes of ``xclip-index serve`` (see ``xclip_serve.app``).

    GET  /api/search?q=&limit=&label=&match=&prefix=&decision=&per_video=   hits, as ``search --json``
    GET  /api/review[?decision=&category=]                                 pending items
    POST /api/review/{video_id}  {"action": "block"|"allow"|"escalate", "reason": "..."}   201 + the row
    GET  /media/{video_id}       the video (Range for local files; 307 to a presigned URL for s3://)
    GET  /thumb/{segment_id}     the clip's JPEG thumbnail
"""
from __future__ import annotations

import json
import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from xclip_serve import media
from xclip_serve.app import State, _decision_map, _record
from xclip_serve.search import SearchError, SearchForm, run_search


def api_search(request: Request):
    st: State = request.app.state.xs
    t0 = time.perf_counter()
    try:
        form = SearchForm.from_params(request.query_params)
        if form.empty:
            raise SearchError("q: a query text (or similar=VIDEO_ID) is required")
        hits = run_search(st.index, form, _decision_map(st, form))
    except SearchError as e:
        return JSONResponse({"error": str(e)}, status_code=400)
    ms = (time.perf_counter() - t0) * 1000
    return Response(json.dumps(hits, default=str), media_type="application/json",
                    headers={"server-timing": f"search;dur={ms:.1f}"})


def api_review(request: Request):
    from moderation.reviews import pending

    st: State = request.app.state.xs
    items = pending(st.decisions(), decision=request.query_params.get("decision") or None,
                    category=request.query_params.get("category") or None)
    keys = ("video_id", "uri", "decision", "flags", "error", "policy_hash", "run_id", "decided_at")
    out = [{**{k: r.get(k) for k in keys}, "reason": r.get("error"),
            "escalated": r.get("review") is not None} for r in items]
    return Response(json.dumps(out, default=str), media_type="application/json")


async def api_review_post(request: Request):
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": 'expected a JSON body {"action": ..., "reason": ...}'}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": 'expected a JSON object {"action": ..., "reason": ...}'}, status_code=400)
    result = await _record(request, request.path_params["video_id"], body.get("action"), body.get("reason"))
    if isinstance(result, Response):
        return result
    return Response(json.dumps(result, default=str), media_type="application/json", status_code=201)


def media_get(request: Request):
    st: State = request.app.state.xs
    uri = media.video_uri(st.index, request.path_params["video_id"])
    if uri is None:
        raise HTTPException(404)
    if uri.startswith("s3://"):
        return RedirectResponse(media.presigned_url(uri), status_code=307)
    path = media.local_file(uri)
    if path is None:
        raise HTTPException(404)
    return FileResponse(path, media_type=media.content_type(path))


def thumb_get(request: Request):
    jpeg = media.thumbnail(request.app.state.xs.index, request.path_params["segment_id"])
    if jpeg is None:
        raise HTTPException(404)
    return Response(jpeg, media_type="image/jpeg")
