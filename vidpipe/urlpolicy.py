"""Where a camera URL may point: the one rule against server-side request forgery.

A camera URL makes the decoder connect somewhere (FFmpeg) or read a file, so:

- schemes: ``rtsp`` and ``rtsps`` for everyone; ``file`` only for platform administrators
  (superadmins, the CLI) or when the platform setting ``allow_files`` is on;
- hosts: every address the host resolves to is checked. Refused: loopback (127/8, ::1),
  unspecified (0/8, ::), link-local (169.254/16, fe80::/10), known cloud metadata
  addresses (:data:`METADATA`), multicast and reserved ranges; private ranges
  (:data:`PRIVATE`: 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) are allowed unless
  ``allow_private`` is off, since cameras live there. An operator allow-list of CIDRs
  (optionally with a port) lifts any refusal. IPv4-mapped IPv6 addresses are checked as IPv4.

:func:`check_camera_url` runs when a URL is saved; :func:`connect_url` runs in the decoder
before every connection: it resolves the host, checks the addresses and returns the URL
pinned to the checked address, so a name that resolves differently later (DNS rebinding)
cannot redirect the connection.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from vidpipe.settings import CameraSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``host -> addresses`` (raises ``OSError`` when the name does not resolve).
Resolver = Callable[[str], list[IPAddress]]

#: Cloud instance-metadata endpoints (AWS, GCP, Azure, OpenStack, ECS, Alibaba, Oracle).
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254", "169.254.170.2", "169.254.169.123", "fd00:ec2::254",
        "100.100.100.200", "168.63.129.16", "192.0.0.192",
    )
)  # fmt: skip
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "instance-data"})
PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
_UNSPECIFIED = (ipaddress.ip_network("0.0.0.0/8"), ipaddress.ip_network("::/128"))
LIVE_SCHEMES = ("rtsp", "rtsps")
_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}


class UrlRefused(ValueError):
    """The URL is well formed but the policy refuses it; the message says why and how to
    get it allowed."""


@dataclass(frozen=True)
class Allowed:
    """An allow-list entry: a network and, optionally, the one port allowed in it."""

    network: IPNetwork
    port: int | None = None

    def admits(self, address: IPAddress, port: int) -> bool:
        return address in self.network and self.port in (None, port)


def parse_allowed(entry: str) -> Allowed:
    """``10.0.0.0/8``, ``127.0.0.1/32:8554``, ``::1``, ``[::1/128]:8554`` as an entry.

    Raises:
        ValueError: not a CIDR (IPv6 with a port needs brackets) or a bad port.
    """
    text, port = entry.strip(), None
    if text.startswith("["):
        text, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"allow-list entry {entry!r}: expected [CIDR]:PORT")
            port = int(rest[1:])
    elif text.count(":") == 1:
        text, _, given = text.partition(":")
        if not given.isdigit():
            raise ValueError(f"allow-list entry {entry!r}: expected CIDR:PORT")
        port = int(given)
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"allow-list entry {entry!r}: port out of range")
    try:
        return Allowed(ipaddress.ip_network(text, strict=False), port)
    except ValueError as exc:
        raise ValueError(f"allow-list entry {entry!r} is not a CIDR: {exc}") from exc


@dataclass(frozen=True)
class UrlPolicy:
    """The platform's camera URL settings, parsed (see the module rules)."""

    allow_files: bool = False
    allow_private: bool = True
    allow: tuple[Allowed, ...] = ()

    @classmethod
    def of(cls, settings: CameraSettings) -> UrlPolicy:
        """Raises ``ValueError`` for a malformed allow-list entry."""
        return cls(
            allow_files=settings.allow_files,
            allow_private=settings.allow_private,
            allow=tuple(parse_allowed(e) for e in settings.allow),
        )


def address_class(address: IPAddress, allow_private: bool = True) -> str | None:
    """Why ``address`` is refused ("loopback", "link-local", "metadata", ...), or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA:
        return "cloud metadata"
    if address.is_loopback:
        return "loopback"
    if any(address in net for net in _UNSPECIFIED):
        return "unspecified"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if any(address in net for net in PRIVATE):
        return None if allow_private else "private"
    if address.is_reserved or address.is_private:  # 240/4, broadcast, documentation, ...
        return "reserved"
    return None


def _check_address(host: str, address: IPAddress, port: int, policy: UrlPolicy) -> None:
    refused = address_class(address, policy.allow_private)
    if refused is None or any(a.admits(address, port) for a in policy.allow):
        return
    what = host if _literal(host) is not None else f"{host!r} resolves to {address}, which"
    raise UrlRefused(
        f"url host {what} is a {refused} address; cameras may not point at it "
        "(a platform operator can allow-list it)"
    )


def resolve_host(host: str) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal IP: itself). Raises ``OSError``."""
    found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    addresses = (ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found)
    return list(dict.fromkeys(addresses))


def _live_target(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return host, parts.scheme.lower(), parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)


def _check_scheme(url: str, policy: UrlPolicy, platform_admin: bool) -> bool:
    """True for a file URL that may be used; raises for one that may not."""
    if urlsplit(url).scheme.lower() != "file":
        return False
    if platform_admin or policy.allow_files:
        return True
    raise UrlRefused(
        "url: file:// URLs are reserved to platform administrators; use rtsp:// or rtsps://"
    )


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_camera_url(
    url: str,
    policy: UrlPolicy,
    *,
    platform_admin: bool = False,
    resolve: Resolver = resolve_host,
) -> None:
    """Refuse a URL the policy does not allow, as it is saved. A host name that does not
    resolve here is accepted: the decoder checks what it resolves to when it connects.

    Raises:
        UrlRefused: a file URL for a tenant (unless ``allow_files``), a metadata host name,
            or a host (or any address it resolves to) in a refused class.
    """
    if _check_scheme(url, policy, platform_admin):
        return
    host, _, port = _live_target(url)
    if host.lower().rstrip(".") in METADATA_NAMES:
        raise UrlRefused(f"url host {host!r} is a cloud metadata service; cameras may not use it")
    literal = _literal(host)
    try:
        addresses: Sequence[IPAddress] = [literal] if literal is not None else resolve(host)
    except OSError:
        return
    for address in addresses:
        _check_address(host, address, port, policy)


def connect_url(url: str, policy: UrlPolicy, resolve: Resolver = resolve_host) -> str:
    """The URL the decoder opens: ``url`` with its host replaced by the address it resolves
    to now, after checking every address (file URLs: checked against ``allow_files`` and
    returned unchanged).

    Raises:
        UrlRefused: what :func:`check_camera_url` refuses (a file URL only when the
            decoder's ``allow_files`` is off).
        OSError: the host does not resolve (a transient failure: retry later).
    """
    if _check_scheme(url, policy, platform_admin=False):
        return url
    host, _, port = _live_target(url)
    if host.lower().rstrip(".") in METADATA_NAMES:
        raise UrlRefused(f"url host {host!r} is a cloud metadata service; cameras may not use it")
    addresses = resolve(host)
    if not addresses:
        raise OSError(f"{host!r} resolves to no address")
    for address in addresses:
        _check_address(host, address, port, policy)
    pinned = str(addresses[0])
    if pinned == host:
        return url
    parts = urlsplit(url)
    netloc = f"[{pinned}]" if ":" in pinned else pinned
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    userinfo, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{netloc}"))
