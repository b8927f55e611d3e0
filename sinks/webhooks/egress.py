"""Where webhooks may go (SSRF protection).

A subscriber chooses the URL, so a URL could point gapstream at the plan's own network or at a
cloud metadata service. Only https to public addresses is allowed, except for hosts the operator
allow-lists (the embedded demo allow-lists its loopback receiver). The check runs at registration
and again at every send, after DNS resolution, and the request then connects to the address that
was checked: a name that resolves to a public address at registration and to a private one later
(DNS rebinding) is refused at send time. Redirects are never followed.
"""
from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
# Resolves (host, port) to addresses; the default asks the system resolver.
Resolver = Callable[[str, int], Iterable[str]]
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_RESOLUTION_TTL_S = 30.0
_TARGETS_KEPT = 10_000  # URLs whose vetted target is kept for the TTL; more and the cache starts over


class EgressRefused(ValueError):
    """The URL may not receive webhooks; the message says why, without echoing secrets."""


def forbidden(ip: IP) -> str | None:
    """Why an address may not receive webhooks, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return forbidden(ip.ipv4_mapped)
    checks = [
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local (cloud metadata services live here)"),
        (ip.is_multicast, "multicast"),
        (ip.is_unspecified, "unspecified"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT, "carrier-grade NAT"),
        (isinstance(ip, ipaddress.IPv6Address) and ip in ipaddress.ip_network("fc00::/7"), "IPv6 unique-local"),
        (ip.is_private, "private"),
        (not ip.is_global, "not globally routable"),
    ]
    return next((why for hit, why in checks if hit), None)


@dataclass(frozen=True)
class Target:
    """Where one request goes: the vetted address to connect to, and the name the server expects
    (Host header, TLS server name and certificate check)."""
    url: str
    address: str
    host: str
    port: int
    scheme: str

    @functools.cached_property
    def connect_url(self) -> str:
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if ":" in self.address else self.address
        path = parts.path or "/"
        return f"{self.scheme}://{host}:{self.port}{path}" + (f"?{parts.query}" if parts.query else "")

    @functools.cached_property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def _system_resolver(host: str, port: int) -> list[str]:
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def endpoint_of(url: str) -> str:
    """scheme://host:port, the unit deliveries are queued and limited by."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


class Egress:
    def __init__(self, allowed_hosts: Iterable[str] = (), resolver: Resolver = _system_resolver):
        self.allowed_hosts = frozenset(h.strip().lower().strip("[]") for h in allowed_hosts if h.strip())
        self._resolver = resolver
        self._targets: dict[str, tuple[float, Target]] = {}  # by URL: (until when, target)

    def _parse(self, url: str) -> tuple[str, str, int, bool]:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise EgressRefused(f"not a valid URL: {exc}") from exc
        host = (parts.hostname or "").lower()
        if not host:
            raise EgressRefused("the URL has no host")
        if parts.username or parts.password:
            raise EgressRefused("credentials in the URL are not accepted; the signature authenticates gapstream")
        allowed = host in self.allowed_hosts
        if parts.scheme != "https" and not (allowed and parts.scheme == "http"):
            raise EgressRefused(f"only https is accepted ({host} is not allow-listed for http)")
        return parts.scheme, host, port or (443 if parts.scheme == "https" else 80), allowed

    def _vet(self, host: str, addresses: Iterable[str]) -> str:
        found = list(addresses)
        if not found:
            raise EgressRefused(f"{host} does not resolve")
        for address in found:
            why = forbidden(ipaddress.ip_address(address.split("%")[0]))
            if why:
                raise EgressRefused(f"{host} resolves to a {why} address, which may not receive webhooks")
        return found[0]

    def _addresses(self, host: str, port: int) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        try:
            return list(self._resolver(host, port))
        except OSError as exc:
            raise EgressRefused(f"{host} does not resolve: {exc.strerror or exc}") from exc

    def check(self, url: str) -> str:
        """At registration: the URL's endpoint (scheme://host:port), or EgressRefused."""
        scheme, host, port, allowed = self._parse(url)
        if not allowed:
            self._vet(host, self._addresses(host, port))
        return endpoint_of(url)

    async def target(self, url: str) -> Target:
        """At send time: resolved again (cached briefly, per URL, parsing and all) and vetted; the
        request connects to ``address``."""
        cached = self._targets.get(url)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        scheme, host, port, allowed = self._parse(url)
        addresses = await asyncio.to_thread(self._addresses, host, port)
        target = Target(url, addresses[0] if allowed and addresses else self._vet(host, addresses), host, port, scheme)
        if len(self._targets) >= _TARGETS_KEPT:
            self._targets.clear()
        self._targets[url] = (time.monotonic() + _RESOLUTION_TTL_S, target)
        return target
