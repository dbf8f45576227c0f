"""Server-side request forgery guard for the URLs notifications post to.

A channel URL must be https and every address its host resolves to must be public: no
loopback, private, link-local (which holds the cloud metadata address 169.254.169.254),
shared, reserved or multicast address. `NOTIFY_ALLOW_PRIVATE_URLS` lifts both rules for
tests and local demos. The check runs when a channel is saved and again before every
attempt, so a host name re-pointed at an internal address after saving is still refused.

The host name is resolved once per attempt: `url_resolve` returns the addresses it checked
and the sender connects to one of those (`notifications.services.http`), so a name that
answers a public address to the check and a private one a moment later (DNS rebinding)
cannot steer the request inside.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings


class UnsafeUrl(ValueError):
    """The URL may not be posted to; the message says why."""


@dataclass(frozen=True)
class Target:
    """Where one attempt goes: the URL's parts and the addresses its host resolved to."""

    scheme: str
    host: str
    port: int
    # Path and query, as sent in the request line.
    path: str
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _resolve(host: str, port: int) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrl("host name does not resolve") from None
    # Keep the resolver's order (it prefers what the host can reach), without repeats.
    return tuple(dict.fromkeys(info[4][0] for info in infos))


def _parse(url: str, allow_private: bool):
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeUrl("must be an https URL")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("must not carry credentials")
    if not allow_private and parts.scheme != "https":
        raise UnsafeUrl("must be an https URL")
    return parts, port or (443 if parts.scheme == "https" else 80)


def url_resolve(url: str, *, allow_private: bool | None = None) -> Target:
    """Resolve `url` once and return where to connect; raise UnsafeUrl unless the URL is
    https and every address is public (both waived by `allow_private`)."""
    if allow_private is None:
        allow_private = settings.NOTIFY_ALLOW_PRIVATE_URLS
    parts, port = _parse(url, allow_private)
    addresses = _resolve(parts.hostname, port)
    if not allow_private and not all(_is_public(address) for address in addresses):
        raise UnsafeUrl("must not point to a loopback, private, link-local or metadata address")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, parts.hostname, port, path, addresses)


def url_check(url: str, *, allow_private: bool | None = None) -> None:
    """Raise UnsafeUrl unless `url` is https and resolves to public addresses only.

    With `allow_private` only the URL's form is checked: a demo may name a host that this
    process cannot resolve yet.
    """
    if allow_private is None:
        allow_private = settings.NOTIFY_ALLOW_PRIVATE_URLS
    if allow_private:
        _parse(url, allow_private)
    else:
        url_resolve(url, allow_private=False)
