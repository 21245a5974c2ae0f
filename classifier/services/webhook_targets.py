"""Where a webhook may point, checked at registration and again at every delivery.

A callback URL is a request the server makes on a client's behalf, so it must not reach
what only the server can reach (SSRF): cloud metadata at 169.254.169.254, loopback,
private networks. A target must be https (CXR_WEBHOOK_ALLOW_HTTP for tests) and every
address its host resolves to must be public (CXR_WEBHOOK_ALLOW_PRIVATE_TARGETS for
tests). The name is resolved again for each delivery and the connection goes to an
address that was just checked (``TargetAddress``), so a name that later resolves to a
private address (DNS rebinding) is refused, not followed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from classifier.services.errors import ServiceError

REFUSED = "The callback URL must be https and its host must resolve only to public internet addresses."


@dataclass(frozen=True)
class TargetAddress:
    """A checked target: the original URL's parts and the address to connect to."""

    scheme: str
    host: str
    port: int
    address: str  # the IP address to connect to, one of those the host resolved to

    def pinned_url(self, url: str) -> str:
        """``url`` with its host replaced by the checked address (Host/SNI keep the name)."""
        parts = urlsplit(url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return urlunsplit((parts.scheme, f"{literal}:{self.port}", parts.path or "/", parts.query, ""))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def webhook_target_check(url: str) -> TargetAddress:
    """The address to deliver ``url`` to; ServiceError ``invalid_url`` (generic text: the
    answer must not tell a caller what the server's network looks like) otherwise."""
    allow_http = settings.CXR["WEBHOOK_ALLOW_HTTP"]
    allow_private = settings.CXR["WEBHOOK_ALLOW_PRIVATE_TARGETS"]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ServiceError("invalid_url", REFUSED) from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (allow_http and scheme == "http"):
        raise ServiceError("invalid_url", REFUSED)
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ServiceError("invalid_url", REFUSED)
    port = port or (443 if scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ServiceError("invalid_url", REFUSED) from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses or (not allow_private and not all(_public(a) for a in addresses)):
        raise ServiceError("invalid_url", REFUSED)
    return TargetAddress(scheme=scheme, host=parts.hostname, port=port, address=str(addresses[0]))
