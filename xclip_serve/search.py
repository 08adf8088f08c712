"""The search page's and ``/api/search``'s query: form fields in, ``xclip_search`` hits out.

Fields: ``q`` (text), ``similar`` (a video id: videos like it; with ``segment``: clips like that
clip), ``label`` (repeatable, any), ``match`` (label words, full text), ``prefix`` (URI prefix),
``decision`` (the video's effective moderation decision, ``moderation.reviews``), ``per_video``,
``limit``. Hits have the keys of ``xclip-index search --json``.
"""
from __future__ import annotations

import dataclasses

from schemas.sql import sql_list, sql_str

MAX_LIMIT = 200
DECISIONS = ("allow", "review", "block", "error", "escalate")


class SearchError(ValueError):
    """A field that cannot be used; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class SearchForm:
    q: str = ""
    similar: str = ""
    segment: int | None = None
    labels: tuple = ()
    match: str = ""
    prefix: str = ""
    decision: str = ""
    per_video: bool = False
    limit: int = 20

    @classmethod
    def from_params(cls, params) -> "SearchForm":
        def one(name):
            return (params.get(name) or "").strip()

        try:
            limit = int(one("limit") or 20)
            segment = int(one("segment")) if one("segment") else None
        except ValueError:
            raise SearchError("limit and segment: expected whole numbers") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise SearchError(f"limit: expected 1..{MAX_LIMIT}, got {limit}")
        decision = one("decision")
        if decision and decision not in DECISIONS:
            raise SearchError(f"decision: expected one of {', '.join(DECISIONS)}, got {decision!r}")
        labels = tuple(x.strip() for x in params.getlist("label") if x.strip())
        return cls(q=one("q"), similar=one("similar"), segment=segment, labels=labels, match=one("match"),
                   prefix=one("prefix"), decision=decision, per_video=one("per_video") in ("1", "on", "true"),
                   limit=limit)

    @property
    def empty(self) -> bool:
        return not (self.q or self.similar)


def run_search(index, form: SearchForm, decisions: dict[str, str] | None = None) -> list[dict]:
    """Hits for ``form`` (best first). ``decisions``: video_id -> effective decision, needed for a
    ``decision`` filter (``moderation.reviews.current_decisions``)."""
    if form.empty:
        return []
    try:
        if form.similar:
            item = (form.similar, form.segment) if form.segment is not None else form.similar
            query = index.similar(item)
        else:
            query = index.search(form.q)
        where = []
        if form.prefix:
            where.append(f"starts_with(uri, {sql_str(form.prefix)})")
        if form.decision:
            ids = sorted(v for v, d in (decisions or {}).items() if d == form.decision)
            if not ids:
                return []
            where.append(f"video_id IN ({sql_list(ids)})")
        if where:
            query = query.where(" AND ".join(where))
        if form.labels:
            query = query.labels_any(list(form.labels))
        if form.match:
            query = query.labels_match(form.match)
        if form.per_video:
            query = query.per_video()
        return query.limit(form.limit).to_list()
    except KeyError:
        raise SearchError(f"similar: {form.similar!r} is not an indexed video or clip") from None
    except ValueError as e:
        raise SearchError(str(e)) from None
