"""The run report: ``runs/<run_id>.html`` beside the manifest, one self-contained page.

Sections: counts by status (the manifest's ``counts``), the top failure reasons
with example URIs, throughput over time (videos and clips done against
seconds since the pipeline started, an inline SVG), and seconds per stage. No
external assets, no scripts: it opens from S3 or disk as is.
"""
from __future__ import annotations

import collections
import html

import pyarrow as pa

from schemas import STATUS_OK

MAX_REASONS, MAX_EXAMPLES = 10, 3


class RunReport:
    """Collects what the manifest does not hold while the run goes."""

    def __init__(self):
        self.reasons: collections.Counter = collections.Counter()
        self.examples: dict[str, list[str]] = collections.defaultdict(list)
        self.samples: list[tuple[float, int, int]] = [(0.0, 0, 0)]  # (seconds, videos done, clips done)

    def add_videos(self, table: pa.Table) -> None:
        for uri, status, error in zip(table.column("uri").to_pylist(), table.column("status").to_pylist(),
                                      table.column("error").to_pylist()):
            if status != STATUS_OK:
                reason = f"{status}: {(error or 'no reason').splitlines()[0][:200]}"
                self.reasons[reason] += 1
                if len(self.examples[reason]) < MAX_EXAMPLES:
                    self.examples[reason].append(uri)

    def tick(self, seconds: float, videos: int, clips: int) -> None:
        if seconds > self.samples[-1][0]:
            self.samples.append((seconds, videos, clips))

    def html(self, manifest) -> str:
        e = html.escape
        m = manifest
        counts = "".join(f"<tr><td>{e(k)}</td><td class=n>{v}</td></tr>" for k, v in m.counts.items())
        reasons = "".join(
            f"<tr><td>{e(r)}</td><td class=n>{n}</td><td>{'<br>'.join(e(u) for u in self.examples[r])}</td></tr>"
            for r, n in self.reasons.most_common(MAX_REASONS)) or "<tr><td colspan=3>none</td></tr>"
        stages = "".join(f"<tr><td>{e(k)}</td><td class=n>{v:.2f}</td></tr>" for k, v in m.stage_seconds.items())
        samples = "".join(f"<tr><td class=n>{t:.1f}</td><td class=n>{v}</td><td class=n>{c}</td></tr>"
                          for t, v, c in self.samples)
        return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>xclip-index run {e(m.run_id)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1.5em}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}.n{{text-align:right}}</style></head>
<body><h1>Run {e(m.run_id)}: {e(m.status)}</h1>
<p>{e(m.started_at)} to {e(m.finished_at)}; {m.num_inputs} inputs listed; {m.num_segments} clips,
{m.clips_per_s:.2f} clips/s; output {e(m.output)}</p>
{f'<p>error: {e(m.error)}</p>' if m.error else ''}
<h2>Counts by status</h2><table id="counts"><tr><th>status</th><th>videos</th></tr>{counts}</table>
<h2>Top failure reasons</h2>
<table id="reasons"><tr><th>reason</th><th>videos</th><th>examples</th></tr>{reasons}</table>
<h2>Throughput over time</h2>{self._svg()}
<table id="throughput"><tr><th>seconds</th><th>videos done</th><th>clips done</th></tr>{samples}</table>
<h2>Seconds per stage</h2><table id="stages"><tr><th>stage</th><th>seconds</th></tr>{stages}</table>
</body></html>
"""

    def _svg(self, w: int = 480, h: int = 160) -> str:
        t_max = max(t for t, _, _ in self.samples) or 1.0
        v_max = max(v for _, v, _ in self.samples) or 1
        pts = " ".join(f"{10 + (w - 20) * t / t_max:.1f},{h - 10 - (h - 20) * v / v_max:.1f}"
                       for t, v, _ in self.samples)
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
                f'aria-label="videos done over time"><rect width="{w}" height="{h}" fill="#fafafa"/>'
                f'<polyline fill="none" stroke="#36c" stroke-width="2" points="{pts}"/></svg>')
