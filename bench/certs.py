"""A throwaway certificate authority and server certificate for the bench's TLS upstreams (BENCH_TLS=1).

Providers are HTTPS, so the production case has a TLS handshake, session resumption and record
encryption on the upstream leg. The bench makes a CA and a leaf for 127.0.0.1 each run: ECDSA P-256,
as the large providers' edge certificates are, with the chain the upstreams send (leaf, then CA) and
the CA that the proxies trust (the relay through `upstream.extra_ca_file`, nginx through
`proxy_ssl_trusted_certificate`), so both proxies verify the chain as they would in production.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# The name both proxies connect to and check the certificate against.
HOST = "127.0.0.1"


@dataclass(frozen=True)
class UpstreamTls:
    """Files of one run's TLS setup."""

    ca: Path  # the CA certificate the proxies trust
    chain: Path  # leaf + CA, what an upstream sends
    key: Path  # the leaf's private key (unencrypted PEM)


def make(directory: Path, days: int = 2) -> UpstreamTls:
    """Writes a CA, a leaf for `HOST` signed by it, and the leaf's key into `directory`."""
    now = datetime.datetime.now(datetime.UTC)
    # A little in the past: a proxy whose clock is a second behind must not see "not yet valid".
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relayapi bench CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    out = UpstreamTls(
        ca=directory / "bench-ca.pem", chain=directory / "upstream.pem", key=directory / "upstream.key"
    )
    out.ca.write_bytes(ca_cert.public_bytes(pem))
    out.chain.write_bytes(leaf.public_bytes(pem) + ca_cert.public_bytes(pem))
    out.key.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    out.key.chmod(0o600)
    return out
