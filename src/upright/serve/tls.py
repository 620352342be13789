"""The self-signed certificate behind `upright serve --lan` (https, so a phone's browser
grants the page its camera: browsers give the camera only to https pages or localhost).

One certificate per machine, kept in the user config dir (`$UPRIGHT_CONFIG_DIR`, else
platformdirs' user_config_dir) under `serve-tls/`, and reused while it is valid for at least
REUSE_MARGIN more and names every address the server is reached by: a phone that accepted
it once does not ask again. A new one is made (ECDSA P-256, about 13 months) when the
machine's addresses change, it is about to expire, or the files are unreadable. The key
never leaves this machine and is written 0600 in a 0700 folder.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..errors import UprightError, one_line

VALID_FOR = dt.timedelta(days=397)  # the longest TLS server certificate Apple devices accept
REUSE_MARGIN = dt.timedelta(days=30)  # never start a server on a certificate about to expire
BACKDATE = dt.timedelta(days=1)  # a phone whose clock is a little behind still accepts it
CERT_NAME, KEY_NAME = "cert.pem", "key.pem"


def config_dir() -> Path:
    """$UPRIGHT_CONFIG_DIR if set, else the platform user config dir for upright."""
    env = os.environ.get("UPRIGHT_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("upright", appauthor=False))


@dataclass(frozen=True)
class Certificate:
    cert_path: Path
    key_path: Path
    addresses: tuple[str, ...]  # the IP addresses it names (subjectAltName)
    not_after: dt.datetime
    fingerprint: str  # SHA-256 of the certificate, "AB:CD:...", as phones show it
    reused: bool  # True when the cached one covered everything


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise UprightError(f"not an IP address: {text!r}") from None


def _fingerprint(cert) -> str:
    from cryptography.hazmat.primitives import hashes

    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def _cert_ips(cert) -> set:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(san.get_values_for_type(x509.IPAddress))


def _load(folder: Path):
    """The cached (certificate, key), or None when missing or unreadable."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate((folder / CERT_NAME).read_bytes())
        key = serialization.load_pem_private_key((folder / KEY_NAME).read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        return None  # a key from another certificate: start over
    return cert, key


def _make(ips: list, now: dt.datetime):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname() or "localhost"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"upright serve on {host}"[:64]),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "upright (self-signed)")])
    dns = ["localhost"] + ([f"{host}.local"] if host != "localhost" and "." not in host else [])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(d) for d in dns] + [x509.IPAddress(ip) for ip in ips]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def certificate_for(addresses, folder: str | os.PathLike | None = None,
                    now: dt.datetime | None = None) -> Certificate:
    """A certificate naming every address in `addresses` (plus 127.0.0.1 and localhost):
    the cached one in `folder` (default: config_dir()/serve-tls) when it is valid for at
    least REUSE_MARGIN more and names them all, else a new one written there."""
    from cryptography.hazmat.primitives import serialization

    folder = Path(folder) if folder is not None else config_dir() / "serve-tls"
    now = now or dt.datetime.now(dt.timezone.utc)
    wanted = [_ip("127.0.0.1")] + [_ip(a) for a in addresses]
    wanted = list(dict.fromkeys(wanted))  # keep order, drop repeats
    cached = _load(folder)
    if cached is not None:
        cert, _ = cached
        if cert.not_valid_after_utc - REUSE_MARGIN > now >= cert.not_valid_before_utc \
                and set(wanted) <= _cert_ips(cert):
            return Certificate(folder / CERT_NAME, folder / KEY_NAME, tuple(map(str, sorted(_cert_ips(cert), key=str))),
                               cert.not_valid_after_utc, _fingerprint(cert), reused=True)
    cert, key = _make(wanted, now)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        atomic_write_bytes(folder / KEY_NAME, key_pem, mode=0o600)
        atomic_write_bytes(folder / CERT_NAME, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    except OSError as exc:
        raise UprightError(f"cannot write the https certificate to {folder}: {one_line(exc)}") from exc
    return Certificate(folder / CERT_NAME, folder / KEY_NAME, tuple(map(str, wanted)),
                       cert.not_valid_after_utc, _fingerprint(cert), reused=False)
