"""``xclip-index serve``: ``/api/search`` latency on a synthetic index, server side and at the client.

The index is written exactly as ``bench/query.py`` writes it (its ``make_vectors`` / ``write_index``:
``segments`` of 512-d vectors, 100 per video, kinetics400 labels, a manifest naming a random
``base-patch32``-shaped checkpoint, so the text tower has X-CLIP B/32's size), then indexed with
``build_indexes`` (IVF_HNSW_SQ etc., what ``xclip-index build-index`` runs). A workdir made by
``bench/query.py --workdir DIR`` is reused as is (same folder names).

``xclip-index serve`` runs as its own process (``python -m xclip_cli serve``), and the client sends one
query at a time, ``GET /api/search?q=TEXT&limit=10`` with a Bearer token:

  * server side: the ``Server-Timing: search;dur=`` the handler reports (parsing, encoding the text,
    the ANN search, fetching the hit columns, JSON);
  * client: the whole HTTP round trip over loopback;
  * the first ``--warmup`` queries after start (index partitions load as they are touched) apart;
  * with a ``label`` filter; the search page ``GET /?q=`` (HTML of the hits; thumbnails are separate
    ``/thumb/`` requests the page does not wait for);
  * the baseline, side by side: the same query through the query API in the client's own process
    (``open_index(...).search(text).limit(10).to_list()``), alternating with the HTTP requests, so a
    busy machine slows both alike; the ratio server / baseline is what the web layer costs.

Usage: python bench/serve.py [--rows 1000000] [--queries 100] [--warmup 30] [--set clustered] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TOKEN = "bench-token-0123456789abcdef"


def pct(xs) -> str:
    return f"{np.percentile(xs, 50):.1f} | {np.percentile(xs, 95):.1f}"


def serve(uri: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "XCLIP_INDEX_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "xclip_cli", "serve", "--index", str(uri), "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import requests

    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/login", timeout=2).status_code == 200:
                return proc
        except requests.ConnectionError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("serve did not start in 300 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--set", default="clustered", choices=("clustered", "random"))
    ap.add_argument("--workdir", default=None, help="keep (and reuse) the index here (bench/query.py's layout)")
    args = ap.parse_args()

    import requests

    from query import WORDS, make_vectors, write_index
    from tests.conftest import free_port
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_store.indexes import build_indexes

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-serve-"))
    ckpt = work / "base-patch32"
    if not (ckpt / "config.json").exists():
        write_random_checkpoint(ckpt, preset="base-patch32")
    uri = work / f"{args.set}-{args.rows}"
    if not (uri / "runs" / "bench.json").exists():
        t0 = time.perf_counter()
        write_index(uri, make_vectors(args.set, args.rows, np.random.default_rng(1)), ckpt, np.random.default_rng(3))
        t1 = time.perf_counter()
        build_indexes(str(uri))
        print(f"wrote {args.rows} segments in {t1 - t0:.0f} s, built indexes in {time.perf_counter() - t1:.0f} s",
              flush=True)
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, 4)) for _ in range(args.warmup + args.queries)]
    port = free_port()
    t0 = time.perf_counter()
    proc = serve(uri, port)
    print(f"rows={args.rows} set={args.set} queries={args.queries} (after {args.warmup} warm-up); serve ready in "
          f"{time.perf_counter() - t0:.1f} s; cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}", flush=True)
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}

    def run(params_list, path="/api/search"):
        server, client = [], []
        for params in params_list:
            t = time.perf_counter()
            r = requests.get(base + path, params=params, headers=auth, timeout=60)
            client.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
            st = r.headers.get("server-timing")
            if st:
                server.append(float(st.split("dur=")[1]))
        return server, client

    from xclip_search import open_index

    idx = open_index(str(uri))
    base_ms, server_ms, client_ms = [], [], []
    try:
        cold = run([{"q": t, "limit": 10} for t in texts[:args.warmup]])  # the server's first queries
        for t in texts[:args.warmup]:  # the in-process index warms up too
            idx.search(t).limit(10).to_list()
        for t in texts[args.warmup:]:
            t0 = time.perf_counter()
            idx.search(t).limit(10).to_list()
            base_ms.append((time.perf_counter() - t0) * 1000)
            s_ms, c_ms = run([{"q": t, "limit": 10}])
            server_ms += s_ms
            client_ms += c_ms
        label = requests.get(base + "/api/search", params={"q": texts[0], "limit": 1}, headers=auth).json()[0]["labels"][0]
        rows = [("first queries after start (cold)", cold),
                ("text query, limit 10", (server_ms, client_ms)),
                ("baseline: the same query in process (open_index().search(text))", ([], base_ms)),
                (f"text query + label={label!r}", run([{"q": t, "limit": 10, "label": label}
                                                        for t in texts[args.warmup:][:30]])),
                ("search page GET /?q= (HTML, 20 hits)", run([{"q": t} for t in texts[args.warmup:][:30]], path="/"))]
        print("\n| what | server p50 ms | server p95 ms | client p50 ms | client p95 ms |\n|---|---|---|---|---|")
        for name, (server, client) in rows:
            s = pct(server) if server else "- | -"  # baseline: in-process time in the client columns
            print(f"| {name} | {s} | {pct(client)} |")
        print(f"\nserver p50 / baseline p50 = {np.percentile(server_ms, 50) / np.percentile(base_ms, 50):.2f}; "
              f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
