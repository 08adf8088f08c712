"""Who may use ``xclip-index serve``: one shared token, sessions for the browser, CSRF for forms.

* The token: ``XCLIP_INDEX_TOKEN``, or a random one generated (and printed once) at start.
* API clients send ``Authorization: Bearer <token>``.
* Browsers log in once (``POST /login`` with the token and a reviewer name; never in a URL, so
  no access log holds it) and get a session cookie (random id, HttpOnly, SameSite=Strict). Every
  form carries the session's CSRF token; a POST without it (or from another origin) gets 403.
* No credentials: 401 (pages redirect to ``/login``). Tokens are compared in constant time.
Sessions live in memory: a restart logs everyone out.
"""
from __future__ import annotations

import hmac
import secrets
import threading
import time

TOKEN_ENV = "XCLIP_INDEX_TOKEN"
COOKIE = "xclip_session"
SESSION_TTL_S = 12 * 3600
MIN_TOKEN_LEN = 16


class Auth:
    def __init__(self, token: str):
        if len(token) < MIN_TOKEN_LEN:
            raise ValueError(f"{TOKEN_ENV}: at least {MIN_TOKEN_LEN} characters, got {len(token)}; "
                             "unset it to have one generated")
        self._token = token.encode("utf-8")
        self._sessions: dict[str, dict] = {}
        self._lock = threading.Lock()

    @staticmethod
    def generate() -> str:
        return secrets.token_urlsafe(24)

    def token_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token.encode("utf-8"), self._token)

    def bearer_ok(self, request) -> bool:
        h = request.headers.get("authorization", "")
        scheme, _, value = h.partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())

    def login(self, token: str | None, reviewer: str) -> str | None:
        """A new session id for a right token, else None."""
        if not self.token_ok(token):
            return None
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._sessions = {k: v for k, v in self._sessions.items() if v["expires"] > now}
            self._sessions[sid] = {"csrf": secrets.token_urlsafe(32), "reviewer": reviewer[:200],
                                   "expires": now + SESSION_TTL_S}
        return sid

    def logout(self, request) -> None:
        with self._lock:
            self._sessions.pop(request.cookies.get(COOKIE, ""), None)

    def session(self, request) -> dict | None:
        sid = request.cookies.get(COOKIE)
        if not sid:
            return None
        with self._lock:
            s = self._sessions.get(sid)
        return s if s and s["expires"] > time.time() else None

    def csrf_ok(self, session: dict, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(value.encode("utf-8"), session["csrf"].encode("utf-8"))


def same_origin(request) -> bool:
    """False when a browser says the request comes from another origin (``Origin`` header)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host
