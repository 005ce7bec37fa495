"""Check the TLS files a client will use before it connects, so a bad file is named at once.

A broker that refuses an expired client certificate only says "certificate
unknown" (TLS alert 46), and a key that does not match its certificate shows up
as a handshake failure; loading the files here turns both into one line naming
the file and the problem. Only the standard library is used: the validity dates
are read from the certificate's DER with a few lines of ASN.1 walking.
"""

from __future__ import annotations

import re
import ssl
from datetime import UTC, datetime
from pathlib import Path

from choreo._config import KafkaConfig
from choreo._errors import ConfigError

_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_UTC_TIME, _EXPLICIT_0 = 0x17, 0xA0  # else GeneralizedTime


def check_client_tls(config: KafkaConfig) -> None:
    """CA bundle, client certificate and key load; the certificate is within its dates."""
    if "SSL" not in config.security_protocol:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if config.ssl_cafile is not None:
        try:
            context.load_verify_locations(cafile=config.ssl_cafile)
        except (ssl.SSLError, OSError) as error:
            raise ConfigError(
                f"ssl_cafile {config.ssl_cafile}: not a PEM CA bundle ({error})"
            ) from None
    if config.ssl_certfile is None:
        return
    password = config.ssl_key_password
    try:
        context.load_cert_chain(
            config.ssl_certfile,
            config.ssl_keyfile,
            password=None if password is None else password.get_secret_value(),
        )
    except (ssl.SSLError, OSError) as error:
        key = config.ssl_keyfile or config.ssl_certfile
        raise ConfigError(
            f"ssl_certfile {config.ssl_certfile} with ssl_keyfile {key}: cannot load the client "
            f"certificate and key ({getattr(error, 'reason', None) or error}); is the key the "
            "certificate's, and ssl_key_password right?"
        ) from None
    not_before, not_after = validity(config.ssl_certfile)
    now = datetime.now(UTC)
    if now > not_after:
        raise ConfigError(
            f"ssl_certfile {config.ssl_certfile}: the client certificate expired on "
            f"{not_after:%Y-%m-%d %H:%M} UTC; the broker will refuse it"
        )
    if now < not_before:
        raise ConfigError(
            f"ssl_certfile {config.ssl_certfile}: the client certificate is not valid before "
            f"{not_before:%Y-%m-%d %H:%M} UTC"
        )


def validity(certfile: Path) -> tuple[datetime, datetime]:
    """notBefore and notAfter of the first certificate in a PEM file."""
    found = _PEM_CERT.search(certfile.read_text(errors="replace"))
    if found is None:
        raise ConfigError(f"ssl_certfile {certfile}: no PEM certificate in it")
    der = ssl.PEM_cert_to_DER_cert(found.group(0))
    tbs = _children(_content(der, 0))[0]  # Certificate → tbsCertificate
    fields = _children(_content(der, tbs))
    if der[fields[0]] == _EXPLICIT_0:
        fields = fields[1:]  # the optional version
    dates = _children(_content(der, fields[3]))  # serial, signature, issuer, validity
    return _time(der, dates[0]), _time(der, dates[1])


def _header(der: bytes, at: int) -> tuple[int, int]:
    """Where an element's content starts and how long it is (DER definite lengths)."""
    length = der[at + 1]
    if length < 0x80:
        return at + 2, length
    size = length & 0x7F
    return at + 2 + size, int.from_bytes(der[at + 2 : at + 2 + size], "big")


def _content(der: bytes, at: int) -> tuple[bytes, int, int]:
    start, length = _header(der, at)
    return der, start, start + length


def _children(span: tuple[bytes, int, int]) -> list[int]:
    der, at, end = span
    found = []
    while at < end:
        found.append(at)
        start, length = _header(der, at)
        at = start + length
    return found


def _time(der: bytes, at: int) -> datetime:
    start, length = _header(der, at)
    text = der[start : start + length].decode()
    pattern = "%y%m%d%H%M%SZ" if der[at] == _UTC_TIME else "%Y%m%d%H%M%SZ"
    return datetime.strptime(text, pattern).replace(tzinfo=UTC)
