"""``xclip-index serve``: the web app over an index (``xclip_serve``).

    xclip-index serve --index URI [--host 127.0.0.1] [--port 8080] [--model SOURCE] [--precision P]

Exit status (xclip_cli.errors): 0 stopped (Ctrl-C); 2 bad arguments (e.g. a short
``XCLIP_INDEX_TOKEN``, or an address that cannot be bound); 4 the index or its model cannot be opened.
"""
from __future__ import annotations

import argparse
import logging
import os

from xclip_cli.errors import EXIT_CONFIG, EXIT_OK, CliError

NAME = "serve"
LOG_LEVEL = logging.INFO


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("serve", help="web app: search that plays the moment, review queue, runs")
    s.add_argument("--index", required=True, metavar="URI", help="an xclip-index --output (local or s3://)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--model", metavar="SOURCE", help="the index's checkpoint, if not where the run found it")
    s.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="fp32", help="query encoding")
    return s


def main(args: argparse.Namespace) -> int:
    import socket

    import uvicorn

    from xclip_serve.app import ServeConfig, create_app
    from xclip_serve.auth import TOKEN_ENV, Auth

    token = os.environ.get(TOKEN_ENV) or ""
    generated = not token
    try:
        cfg = ServeConfig(index=args.index, host=args.host, port=args.port, model=args.model,
                          precision=args.precision)
        token = token or Auth.generate()
        app = create_app(cfg, token=token)  # a missing index or model: IndexError_ (exit 4, one line)
    except ValueError as e:
        raise CliError(EXIT_CONFIG, str(e)) from None
    try:  # bind first: a clear one-line error for a taken port
        sock = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((cfg.host, cfg.port))
    except OSError as e:
        raise CliError(EXIT_CONFIG, f"--host {cfg.host} --port {cfg.port}: cannot bind "
                                    f"({e.strerror or e}); choose another port") from None
    port = sock.getsockname()[1]
    print(f"xclip-index serve: http://{cfg.host}:{port}/ over {cfg.index}", flush=True)
    if generated:  # printed once, here only (never logged): set XCLIP_INDEX_TOKEN to choose your own
        print(f"token (log in with it; API: Authorization: Bearer <token>): {token}", flush=True)
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("xclip_serve").warning("bound to %s: reachable from other machines; use HTTPS in "
                                                 "front of it (a reverse proxy)", cfg.host)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=True, proxy_headers=False))
    server.run(sockets=[sock])
    return EXIT_OK
