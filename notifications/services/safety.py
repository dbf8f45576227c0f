"""Server-side request forgery guard for the URLs notifications post to.

A channel URL must be https and every address its host resolves to must be public: no
loopback, private, link-local (which holds the cloud metadata address 169.254.169.254),
shared, reserved or multicast address. `NOTIFY_ALLOW_PRIVATE_URLS` lifts both rules for
tests and local demos. The check runs when a channel is saved and again before every
attempt, so a host name re-pointed at an internal address after saving is still refused.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class UnsafeUrl(ValueError):
    """The URL may not be posted to; the message says why."""


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def url_check(url: str, *, allow_private: bool | None = None) -> None:
    """Raise UnsafeUrl unless `url` is https and resolves to public addresses only."""
    if allow_private is None:
        allow_private = settings.NOTIFY_ALLOW_PRIVATE_URLS
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeUrl("must be an https URL")
    if allow_private:
        return
    if parts.scheme != "https":
        raise UnsafeUrl("must be an https URL")
    try:
        infos = socket.getaddrinfo(parts.hostname, port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrl("host name does not resolve") from None
    for info in infos:
        if not _is_public(info[4][0]):
            raise UnsafeUrl("must not point to a loopback, private, link-local or metadata address")
