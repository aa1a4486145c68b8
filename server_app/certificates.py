"""Test certificate authority, SuperLink TLS certificate and SuperNode key pairs, as Flower wants them.

A TLS deployment needs three kinds of files:

* ``ca.crt``: the CA that signed the SuperLink's certificate. Every SuperNode and every ``flwr``
  client gets a copy (``--root-certificates``, ``root-certificates`` in Flower's config).
* ``server.pem`` + ``server.key``: the SuperLink's certificate (subject alternative names: every
  host name or IP address clients dial) and its private key (``--ssl-certfile``, ``--ssl-keyfile``;
  ``--ssl-ca-certfile ca.crt``). Only the server machine holds them.
* ``keys/node-<i>`` + ``keys/node-<i>.pub``: one EC P-384 key pair per SuperNode in OpenSSH format,
  the only format Flower reads. The private key stays on its client machine
  (``--auth-supernode-private-key``); the public key is registered with
  ``flwr supernode register`` so the SuperLink admits that node and no other.

These are for trying things and tests; production deployments use their own PKI. Pure
``cryptography`` code: no openssl binary needed.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("127.0.0.1", "localhost")
VALID_DAYS = 365


@dataclass(frozen=True)
class Certificates:
    """Where the files of one certificate directory are (see the module docstring)."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    def node_key(self, index: int) -> Path:
        return self.folder / "keys" / f"node-{index}"

    def node_public_key(self, index: int) -> Path:
        return self.folder / "keys" / f"node-{index}.pub"


def generate(folder: Path, hosts: Sequence[str] = (), nodes: int = 0) -> Certificates:
    """Create (or complete) a certificate directory; safe to run again.

    An existing CA is reused and existing node keys are kept (they may already be registered);
    the SuperLink certificate is reissued every time so that ``hosts`` can change. The names in
    ``hosts`` are added to 127.0.0.1 and localhost.
    """
    certs = Certificates(Path(folder))
    certs.folder.mkdir(parents=True, exist_ok=True)
    if certs.ca_cert.exists() and certs.ca_key.exists():
        ca_key = _load_key(certs.ca_key)
        ca_cert = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    else:
        ca_key, ca_cert = _make_ca()
        write_file(certs.ca_key, _pem_key(ca_key), private=True)
        write_file(certs.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    server_key = ec.generate_private_key(ec.SECP384R1())
    cert = _server_certificate(server_key, ca_key, ca_cert, [*DEFAULT_HOSTS, *hosts])
    write_file(certs.server_key, _pem_key(server_key), private=True)
    write_file(certs.server_cert, cert.public_bytes(serialization.Encoding.PEM))
    for index in range(nodes):
        if not certs.node_key(index).exists():
            write_node_keys(certs.node_key(index), certs.node_public_key(index))
    return certs


def write_node_keys(private_path: Path, public_path: Path) -> None:
    """One SuperNode key pair: EC P-384, OpenSSH format (what ``flower-supernode`` reads)."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    write_file(private_path, private, private=True)
    write_file(public_path, public + b"\n")


def _make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "GFMFR test CA")])
    cert = (_builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA384()))
    return key, cert


def _server_certificate(key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey,
                        ca_cert: x509.Certificate, hosts: Sequence[str]) -> x509.Certificate:
    """A certificate for the SuperLink, valid for every name in ``hosts`` (IPs and DNS names)."""
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # unique, in order
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    return (_builder(subject, ca_cert.subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA384()))


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
             ) -> x509.CertificateBuilder:
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)  # clock skew
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=VALID_DAYS)))


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key; delete the folder to start afresh.")
    return key


def write_file(path: Path, content: bytes, private: bool = False) -> None:
    """Write ``content`` atomically; private files (keys, secrets) are readable by their owner
    only (ssh refuses others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    os.replace(tmp, path)
