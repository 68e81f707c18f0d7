"""Who may talk to the annotation server: an access token, a Host allow-list, same-origin changes.

- **Access token.** A random token per run (``secrets.token_urlsafe``), printed in the URL as
  Jupyter does (``http://host:port/?token=...``). The first visit with ``?token=`` sets a cookie
  (HttpOnly, SameSite=Lax) and redirects to the bare URL; afterwards the page's requests carry
  the cookie. Scripts send ``Authorization: Bearer <token>`` (or ``?token=``). The token is
  required for every request whenever the server listens on anything but loopback, and on
  loopback too with ``require_token`` (shared machines: other users can reach 127.0.0.1).
- **Host allow-list** (defeats DNS rebinding: a foreign name resolving to this server). On
  loopback: loopback names and addresses only. Elsewhere (wildcard ``0.0.0.0`` / ``::`` included):
  IP addresses, loopback names and this machine's names. ``allowed_hosts`` adds names either way.
- **Same-origin changes.** A POST/PUT/PATCH/DELETE sent by a page of another origin (its
  ``Origin`` header is not this server) is refused, with or without a token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from anyseg.server.config import ServerConfig
from anyseg.server.errors import (
    FORBIDDEN_HOST,
    FORBIDDEN_ORIGIN,
    UNAUTHORIZED,
    error_body,
)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
_UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_NEEDS_TOKEN_PAGE = (
    "<!doctype html><meta charset=utf-8><title>anyseg annotate: access token needed</title>"
    "<p>This anyseg server needs its access token. Open the address that <code>anyseg serve"
    "</code> printed when it started (it ends with <code>/?token=...</code>).</p>"
)


def host_name(netloc: str) -> str:
    """Host part of ``host[:port]`` / ``[v6]:port``, lower case, without brackets."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def is_loopback(host: str) -> bool:
    """Whether a listening address (or host name) is this machine only."""
    name = host_name(host) if host.startswith("[") else host.strip().lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _machine_names() -> set[str]:
    names = set()
    for get in (socket.gethostname, socket.getfqdn):
        try:
            name = get().lower()
        except OSError:
            continue
        names |= {name, name.split(".", 1)[0]}
    return names - {""}


@dataclass(frozen=True)
class AccessPolicy:
    """What :class:`AccessGuardMiddleware` enforces.

    Attributes:
        token: the access token, or None when none is required.
        loopback: the server listens on loopback only.
        names: host names accepted in the Host header (lower case); IP literals are judged by
            :meth:`host_allowed`.
    """

    token: str | None
    loopback: bool
    names: frozenset[str]

    @classmethod
    def from_config(cls, config: ServerConfig) -> AccessPolicy:
        """The policy of a server configuration (a random token when one is needed)."""
        loopback = is_loopback(config.host)
        names = set(LOOPBACK_NAMES) | {h.lower() for h in config.allowed_hosts}
        if not loopback:
            names |= _machine_names()
            if config.host not in WILDCARD_HOSTS:
                names.add(config.host.strip("[]").lower())
        token = None
        if config.require_token or not loopback or config.token is not None:
            token = config.token or secrets.token_urlsafe(32)
        return cls(token=token, loopback=loopback, names=frozenset(names))

    @property
    def exposed(self) -> bool:
        """Whether other machines can reach the server."""
        return not self.loopback

    @property
    def cookie_name(self) -> str:
        # Unique per token: two servers on one host (different ports) keep their own cookies.
        digest = hashlib.sha256((self.token or "").encode()).hexdigest()[:12]
        return f"anyseg-token-{digest}"

    def url(self, base: str) -> str:
        """``base`` (``http://host:port/``) with the token query a person opens."""
        return f"{base}?{urlencode({'token': self.token})}" if self.token else base

    def host_allowed(self, host_header: str) -> bool:
        name = host_name(host_header)
        if name in self.names:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        # An address cannot be rebound to another server by DNS; on loopback only loopback ones.
        return address.is_loopback or not self.loopback

    def token_matches(self, candidate: str | None) -> bool:
        if self.token is None:
            return True
        return candidate is not None and hmac.compare_digest(
            candidate.encode("utf-8", "replace"), self.token.encode()
        )


class AccessGuardMiddleware:
    """Enforces an :class:`AccessPolicy` before any route runs (see the module docstring)."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get(b"host", "")
        if not self.policy.host_allowed(host):
            await send_error(send, 403, FORBIDDEN_HOST, f"host {host!r} is not served here")
            return
        method = scope["method"]
        if self.policy.token is not None:
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
            from_query = next((v for k, v in query if k == "token"), None)
            path = scope.get("path", "/")
            if (
                from_query is not None
                and self.policy.token_matches(from_query)
                and method in ("GET", "HEAD")
                and not path.startswith("/api/")
            ):
                await self._login(send, path, [(k, v) for k, v in query if k != "token"])
                return
            if not self._authorized(headers, from_query):
                if method in ("GET", "HEAD") and path == "/":
                    await _send(send, 401, _NEEDS_TOKEN_PAGE.encode(), b"text/html; charset=utf-8")
                else:
                    await send_error(
                        send, 401, UNAUTHORIZED,
                        "this server needs its access token: open the URL that `anyseg serve` "
                        "printed, or send 'Authorization: Bearer <token>'",
                    )  # fmt: skip
                return
        origin = headers.get(b"origin")
        if method in _UNSAFE_METHODS and origin is not None:
            origin_netloc = origin.split("://", 1)[-1].rstrip("/").lower()
            if origin_netloc != host.lower():
                await send_error(
                    send, 403, FORBIDDEN_ORIGIN, "requests from other web pages are not accepted"
                )
                return
        await self.app(scope, receive, send)

    def _authorized(self, headers: dict[bytes, str], from_query: str | None) -> bool:
        candidates = [from_query]
        auth = headers.get(b"authorization", "")
        if auth[:7].lower() == "bearer ":
            candidates.append(auth[7:].strip())
        cookies = cookie_parser(headers.get(b"cookie", ""))
        candidates.append(cookies.get(self.policy.cookie_name))
        return any(self.policy.token_matches(c) for c in candidates if c)

    async def _login(self, send: Send, path: str, rest: list[tuple[str, str]]) -> None:
        """Remember the token in a cookie and send the browser to the URL without it."""
        location = path + (f"?{urlencode(rest)}" if rest else "")
        cookie = f"{self.policy.cookie_name}={self.policy.token}; Path=/; HttpOnly; SameSite=Lax"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", location.encode("latin-1")),
                    (b"set-cookie", cookie.encode("latin-1")),
                    (b"cache-control", b"no-store"),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})


async def send_error(send: Send, status: int, code: str, message: str) -> None:
    """Answer with a JSON error from ASGI middleware (before any route runs)."""
    await _send(send, status, json.dumps(error_body(code, message)).encode(), b"application/json")


async def _send(send: Send, status: int, body: bytes, media: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
