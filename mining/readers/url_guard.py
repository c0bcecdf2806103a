"""Safe URL fetching for img2dataset: only http(s), no loopback/link-local/private hosts, redirects too.

img2dataset fetches with ``urllib`` in spawned worker processes, so nothing can be patched
inside them. Two layers instead:

1. :func:`check_url` runs on every input row before img2dataset sees it: a scheme other than
   ``http``/``https`` (``file:``, ``data:``, ``ftp:``...) is refused (``unsupported_url_scheme``),
   and so is a host that is a private IP literal or ``localhost`` (``private_address``). The
   refused row is never handed to img2dataset.
2. :func:`guarded_environment`, a small forwarding proxy on loopback that img2dataset's workers use
   through ``http_proxy``/``https_proxy`` (set for the download only). Every request,
   including each redirect hop, passes through it: the proxy resolves the host itself, refuses
   any private address with ``403 private_address`` and connects to the very address it
   checked (no DNS rebinding). Responses are cut after ``max_bytes``.

``allow_private=True`` (``--allow-private-addresses``) lifts the address rule (loopback test
servers, intranet mirrors); a collection of ``"host:port"`` strings (Python API) exempts just
those endpoints. The scheme rule always holds.

"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import selectors
import socket
import socketserver
import threading
from collections.abc import Collection, Iterator
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("http", "https")
GUARD_CODES = ("private_address", "unsupported_url_scheme")
PROXY_ENV = ("http_proxy", "https_proxy", "ftp_proxy", "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY")
NO_PROXY_ENV = ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY")
_MAX_HEAD = 64 * 1024


def is_private_ip(ip: str) -> bool:
    """Loopback, link-local, private, multicast, reserved or unspecified (IPv4-mapped IPv6 included)."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
            or addr.is_reserved or addr.is_unspecified)


def _exempt(allow_private: bool | Collection[str], host: str, port: int) -> bool:
    if isinstance(allow_private, bool):
        return allow_private
    return f"{host}:{port}" in allow_private


def check_url(url: str, allow_private: bool | Collection[str] = False) -> tuple[str, str] | None:
    """(reason, detail) when ``url`` must not be fetched, else None (DNS names are left to the proxy)."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError as exc:
        return "unsupported_url_scheme", f"unparsable URL: {exc}"
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        return "unsupported_url_scheme", f"scheme {scheme or '(none)'!r} not in {'/'.join(ALLOWED_SCHEMES)}"
    if not host:
        return "unsupported_url_scheme", "URL has no host"
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        return "unsupported_url_scheme", f"bad port: {exc}"
    if _exempt(allow_private, host, port):
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return "private_address", f"host {host}"
    try:
        private = is_private_ip(host)
    except ValueError:
        return None  # a name: resolved and checked by the proxy at fetch time
    return ("private_address", f"host {host}") if private else None


def guard_code(message: str | None) -> str | None:
    """The guard's reason code inside an img2dataset error message (a proxy refusal), if any.

    urllib itself refuses a redirect to a scheme other than http/https/ftp ("Redirection to url
    ... is not allowed"): that is an ``unsupported_url_scheme`` too.
    """
    if message and "Redirection to url" in message and "is not allowed" in message:
        return "unsupported_url_scheme"
    return next((c for c in GUARD_CODES if message and c in message), None)


def _resolve(host: str, port: int, allow_private: bool | Collection[str]) -> tuple[str | None, str]:
    """(address to connect to, "") or (None, refusal reason phrase)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return None, f"502 cannot resolve {host}: {exc.strerror or exc}"
    addrs = [i[4][0] for i in infos]
    if not _exempt(allow_private, host, port):
        bad = [a for a in addrs if is_private_ip(a)]
        if bad:
            return None, f"403 private_address {host} -> {bad[0]}"
    return addrs[0], ""


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client = self.request
        client.settimeout(self.server.timeout_s)
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < _MAX_HEAD:
                chunk = client.recv(8192)
                if not chunk:
                    return
                head += chunk
            head_end = head.find(b"\r\n\r\n") + 4
            if head_end < 4:
                return self._refuse("431 request head too large")
            lines = head[:head_end].decode("latin-1").split("\r\n")
            method, target, version = (lines[0].split(" ", 2) + ["", ""])[:3]
            if method == "CONNECT":
                host, _, port_s = target.rpartition(":")
                host, port = host.strip("[]"), int(port_s or 443)
            else:
                parts = urlsplit(target)
                if parts.scheme != "http" or not parts.hostname:
                    return self._refuse(f"403 unsupported_url_scheme {parts.scheme or '(none)'}")
                host, port = parts.hostname, parts.port or 80
            ip, refusal = _resolve(host, port, self.server.allow_private)
            if ip is None:
                return self._refuse(refusal)
            upstream = socket.create_connection((ip, port), timeout=self.server.timeout_s)
        except (OSError, ValueError) as exc:
            return self._refuse(f"502 {type(exc).__name__}")
        with upstream:
            if method == "CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                upstream.sendall(head[head_end:])
            else:
                path = parts.path or "/"
                if parts.query:
                    path += "?" + parts.query
                kept = [h for h in lines[1:] if h and not h.lower().startswith(("proxy-", "connection:"))]
                request = f"{method} {path} {version}\r\n" + "".join(h + "\r\n" for h in kept)
                upstream.sendall((request + "Connection: close\r\n\r\n").encode("latin-1") + head[head_end:])
            self._relay(client, upstream)

    def _refuse(self, status: str) -> None:
        with contextlib.suppress(OSError):
            self.request.sendall(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                                 .encode("latin-1", "replace"))

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, client)
        sent_down = 0
        try:
            while True:
                events = sel.select(self.server.timeout_s)
                if not events:
                    return
                for key, _ in events:
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    if key.fileobj is upstream:
                        sent_down += len(data)
                        if sent_down > self.server.max_bytes:
                            return  # cut an oversized response: the client sees a short body
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, allow_private: bool | Collection[str], timeout_s: float, max_bytes: int):
        self.allow_private, self.timeout_s, self.max_bytes = allow_private, timeout_s, max_bytes
        super().__init__(("127.0.0.1", 0), _Handler)


@contextlib.contextmanager
def guarded_environment(allow_private: bool | Collection[str] = False, timeout_s: float = 30.0,
                        max_bytes: int = 64 * 1024 * 1024) -> Iterator[str]:
    """Run a :class:`GuardProxy` and point this process's (and its children's) proxy variables at it.

    A user's own ``http_proxy`` is replaced for the duration (no upstream chaining).
    """
    server = _Server(allow_private, timeout_s, max_bytes)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    saved = {k: os.environ.get(k) for k in PROXY_ENV + NO_PROXY_ENV}
    try:
        for k in PROXY_ENV:
            os.environ[k] = url
        for k in NO_PROXY_ENV:
            os.environ.pop(k, None)
        yield url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.shutdown()
        server.server_close()

