"""A private CA and certificates for the local broker's TLS listener, made with ``openssl``.

Made once per state dir and kept there (``data/kafka/tls``): every later
start reuses them, so clients that trusted ``ca.pem`` keep trusting the
broker. The files are for loopback development only; nothing here is secret
beyond the machine.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from choreo._dev.component import ComponentError
from choreo._dev.maven import require_tool

CA_DAYS = 3650
CERT_DAYS = 825
CA_FILE = "ca.pem"
BROKER_FILE = "broker.pem"
KEY = ["-newkey", "rsa:2048", "-nodes"]
"""Unencrypted PKCS#8 keys: Kafka's PEM key store reads them without a key password."""


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        [require_tool("openssl"), *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise ComponentError(f"openssl {args[0]} failed: {done.stderr.strip()[-500:]}")


def ensure_ca(tls: Path) -> Path:
    """``tls/ca.pem`` (and its key), made on the first call only."""
    ca = tls / CA_FILE
    if ca.exists() and (tls / "ca.key").exists():
        return ca
    tls.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", *KEY, "-keyout", "ca.key", "-out", "ca.pem.tmp",
        "-days", str(CA_DAYS), "-subj", "/CN=choreo local CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=tls,
    )  # fmt: skip
    (tls / "ca.pem.tmp").rename(ca)  # a half-made CA is never mistaken for a finished one
    return ca


def issue(
    tls: Path, name: str, common_name: str, *, days: int = CERT_DAYS, into: Path | None = None
) -> Path:
    """``<into or tls>/<name>.pem``: a key and a certificate signed by the CA, in one PEM file.

    The certificate names ``localhost`` and ``127.0.0.1`` so hostname checks
    pass on loopback. ``days=-1`` makes one that has already expired (tests).
    """
    ensure_ca(tls)
    with tempfile.TemporaryDirectory(dir=tls) as scratch:
        work = Path(scratch)
        (work / "ext.cnf").write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
        )
        _openssl(
            "req", *KEY, "-keyout", "key.pem", "-out", "req.csr", "-subj", f"/CN={common_name}",
            cwd=work,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", "req.csr", "-CA", str(tls / CA_FILE),
            "-CAkey", str(tls / "ca.key"), "-CAcreateserial", "-CAserial", str(tls / "ca.srl"),
            "-out", "cert.pem", "-days", str(days), "-extfile", "ext.cnf",
            cwd=work,
        )  # fmt: skip
        pem = (into or tls) / f"{name}.pem"
        pem.write_text((work / "key.pem").read_text() + (work / "cert.pem").read_text())
    return pem


def ensure_broker_keystore(tls: Path) -> Path:
    """``tls/broker.pem`` (key + certificate), issued on the first call only."""
    broker = tls / BROKER_FILE
    return broker if broker.exists() else issue(tls, broker.stem, "localhost")
