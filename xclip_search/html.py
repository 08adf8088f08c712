"""``write_html(index, query, hits, path)``: one self-contained page of search hits.

Each hit shows its clip's thumbnail (base64 JPEG from the ``thumbnails`` table: the clip's middle
frame as the model saw it, i.e. the centre crop), its time range, score, labels and URI. The
thumbnail and the time range link to the moment (``xclip_search.links.moment_url``: ``file://...#t=``
for a local video, ``XCLIP_INDEX_MEDIA_URL`` for ``s3://``).
"""
from __future__ import annotations

import base64
import html

from schemas.features import THUMBNAILS_TABLE
from xclip_search.links import moment_url


def _thumbnails(index, segment_ids: list[str]) -> dict[str, bytes]:
    from schemas.sql import sql_str

    if THUMBNAILS_TABLE not in index.table_names or not segment_ids:
        return {}
    t = index.table(THUMBNAILS_TABLE).search() \
        .where(f"segment_id IN ({', '.join(sql_str(s) for s in segment_ids)})") \
        .select(["segment_id", "jpeg"]).limit(len(segment_ids)).to_arrow()
    return dict(zip(t.column("segment_id").to_pylist(), t.column("jpeg").to_pylist()))


def render_html(index, query: str, hits: list[dict]) -> str:
    thumbs = _thumbnails(index, [h["segment_id"] for h in hits if h.get("segment_id")])
    e = html.escape
    rows = []
    for rank, h in enumerate(hits, 1):
        jpeg = thumbs.get(h.get("segment_id"))
        img = (f'<img alt="clip {rank}" src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode("ascii")}">'
               if jpeg else '<span class="noimg">no thumbnail</span>')
        labels = ", ".join(e(x) for x in (h.get("labels") or []))
        t = f'{h.get("start_s", 0.0):.2f}s &ndash; {h.get("end_s", 0.0):.2f}s'
        url = moment_url(h["uri"], h.get("start_s"), h.get("end_s"))
        if url:
            img, t = f'<a class="moment" href="{e(url)}">{img}</a>', f'<a class="moment" href="{e(url)}">{t}</a>'
        rows.append(f'<li class="hit">{img}<div><b>{rank}.</b> score {h["score"]:.4f} '
                    f'<span class="t">{t}</span><br>'
                    f'<code>{e(h["uri"])}</code><br><small>{labels}</small></div></li>')
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>xclip-index: "
            f"{e(query)}</title><style>body{{font-family:sans-serif}} li.hit{{display:flex;gap:1em;"
            "margin:.5em 0} img{width:160px}</style></head>\n"
            f"<body><h1>{e(query)}</h1><p>{len(hits)} hits from <code>{e(index.uri)}</code></p>\n<ol>\n"
            + "\n".join(rows) + "\n</ol></body></html>\n")


def write_html(index, query: str, hits: list[dict], path: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_html(index, query, hits))
    return path
