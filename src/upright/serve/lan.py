"""What `upright serve --lan` needs beyond the app: this machine's addresses, the link a
phone opens, its QR code for the terminal, and the words that say what the phone will ask.

Pure helpers (no server, no binding): run() in app.py and the studio's server.py put them
together.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Callable

from ..errors import UprightError

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")
WILDCARDS = ("0.0.0.0", "", "::")

# A documentation-range address (RFC 5737): connecting a UDP socket to it only asks the
# kernel which local address would be used for the default route; no packet is sent.
_ROUTE_PROBE = ("192.0.2.1", 9)

QR_COLOUR = "\033[97;40m"  # bright white modules on black: readable on light and dark terminals
QR_RESET = "\033[0m"


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def _usable(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.version == 4 and not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified)


def lan_addresses() -> list[str]:
    """This machine's IPv4 addresses a phone on the same network could reach, the one on the
    default route first. Sends nothing (a UDP connect only picks a route)."""
    found: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(_ROUTE_PROBE)
            found.append(s.getsockname()[0])
    except OSError:  # no default route: fall back to the host name's addresses
        pass
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_STREAM)
        found += [info[4][0] for info in infos]
    except OSError:
        pass
    return [a for a in dict.fromkeys(found) if _usable(a)]


def link(host: str, port: int, token: str | None = None, scheme: str = "https") -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{scheme}://{shown}:{port}/" + (f"?token={token}" if token else "")


def qr_lines(text: str, colour: bool = True) -> list[str]:
    """`text` as a QR code in Unicode half blocks (two modules per character row; a full
    block is two light modules), with the standard 4-module quiet zone. With colour, each
    line is pinned to white on black so the code scans on light and dark terminals alike."""
    import io

    import segno

    buf = io.StringIO()
    segno.make(text, error="m").terminal(out=buf, compact=True, border=4)
    lines = buf.getvalue().rstrip("\n").split("\n")
    return [f"{QR_COLOUR}{line}{QR_RESET}" if colour else line for line in lines]


def phone_words(addresses: list[str], fingerprint: str) -> list[str]:
    """What the phone will ask, and why it is safe to accept."""
    return [
        "The phone will warn that the connection is not private: the certificate is self-signed,",
        f"made on this machine for {', '.join(addresses)}. Accept it once (Chrome: Advanced > Proceed;",
        "Safari: Show Details > visit this website); the phone keeps the choice while the",
        "certificate stays the same (it is cached and reused).",
        f"Certificate SHA-256: {fingerprint}",
    ]


def exposure_warning(host: str, port: int) -> str | None:
    """The warning for plain `serve --host H` beyond loopback (no https, no token)."""
    if is_loopback(host):
        return None
    where = "every network interface" if host in WILDCARDS else host
    return (f"warning: listening on {where} over plain http without a token: anyone who can reach "
            f"this machine on port {port} can use the app and the model and see what is uploaded. "
            "For a phone, use --lan (https and an access token). The live camera needs https or "
            "localhost; elsewhere only 'Take photo' works.")


def addresses_for(host: str) -> list[str]:
    """The addresses `--lan --host HOST` serves (the certificate names them, the links use
    them): this machine's LAN addresses for a wildcard, else HOST itself (an IP address)."""
    if host not in WILDCARDS and not is_ip(host):
        raise UprightError(f"--lan --host needs an IP address of this machine (the certificate names "
                           f"it and the phone's link uses it), not {host!r}")
    addresses = lan_addresses() if host in WILDCARDS else [host.strip("[]")]
    if not addresses:
        raise UprightError("--lan found no network address on this machine (is it on Wi-Fi or "
                           "a wired network?); pick one with --host ADDRESS")
    return addresses


def print_lan_access(echo: Callable[[str], None], links: list[str], addresses: list[str], cert, *,
                     phones: str, powers: str, server: str) -> None:
    """What --lan prints after the first link: the QR code, what the phone will ask, the
    certificate, who may do what (`powers`) until `server` stops, the other links."""
    echo(f"  On {phones} (same network as this machine), scan the code or type the link:")
    echo("")
    for line in qr_lines(links[0]):
        echo("  " + line)
    echo("")
    for line in phone_words(addresses, cert.fingerprint):
        echo("  " + line)
    echo(f"  Certificate {'reused from' if cert.reused else 'made and kept in'} {cert.cert_path.parent} "
         f"(valid until {cert.not_after:%Y-%m-%d}).")
    echo(f"  Anyone with this link can {powers} until you stop the {server}; the token changes at every start.")
    for other in links[1:]:
        echo(f"  Also reachable at {other}")
