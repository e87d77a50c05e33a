"""TLS material for the local ARM endpoint: a trustme CA (kept in a directory) and a server cert.

The Azure SDKs refuse bearer tokens over plain http, so the endpoint speaks HTTPS. The CA is
written to ``<cert_dir>/ca.pem`` (trust it with ``SSL_CERT_FILE`` or ``connection_verify=``) and
its key to ``ca.key``, so a restarted server reuses the CA its clients already trust.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TlsMaterial:
    """Paths of the CA file clients trust and the SSL context the server listens with."""

    ca_path: Path
    server_context: ssl.SSLContext


def load_or_create_ca(cert_dir: Path) -> trustme.CA:
    """Return the CA stored in `cert_dir`, creating (and writing) a new one if there is none."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    ca_pem, ca_key = cert_dir / "ca.pem", cert_dir / "ca.key"
    if ca_pem.exists() and ca_key.exists():
        return trustme.CA.from_pem(ca_pem.read_bytes(), ca_key.read_bytes())
    ca = trustme.CA(organization_name="swarm-upgrade-controller testbed")
    ca.cert_pem.write_to_path(str(ca_pem))
    ca_key.write_bytes(ca.private_key_pem.bytes())
    ca_key.chmod(0o600)
    return ca


def server_tls(cert_dir: Path, host: str) -> TlsMaterial:
    """Issue a server certificate for 127.0.0.1, localhost and `host`; return its SSL context."""
    ca = load_or_create_ca(cert_dir)
    identities = ["127.0.0.1", "localhost"]
    if host not in identities and host not in ("0.0.0.0", ""):
        identities.append(host)
    leaf = ca.issue_cert(*identities)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    return TlsMaterial(ca_path=cert_dir / "ca.pem", server_context=context)
