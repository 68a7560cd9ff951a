"""The practice's own PKI: a CA made on one workstation, one certificate per workstation, a signed revocation list.

The only adapter of ``cryptography``'s X.509 layer for routing. Pure: no sockets, no files (``practice.py``
keeps the PEM on disk). Keys are ECDSA P-256. Certificates follow RFC 5280 strictly so they verify under
``cryptography``'s strict verifier and OpenSSL's ``X509_STRICT``:

- the CA: basicConstraints critical (CA, pathlen 0), keyUsage critical (keyCertSign, cRLSign), subject and
  authority key identifiers;
- a workstation: basicConstraints critical (not a CA), keyUsage critical (digitalSignature), extendedKeyUsage
  serverAuth + clientAuth (each peer is both), a subjectAltName ``<slug>.peer.relais.invalid`` naming the
  workstation, key identifiers. The organisation names the practice (its id), so a certificate of another
  practice's CA never passes, even by mistake.

Revocation is a CRL signed by the practice CA: every peer keeps the highest-numbered one it has seen (peers hand
it to each other), and refuses a listed serial from then on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import DNSName
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from agent.errors import AccessRefused, InvalidInput

CA_VALIDITY = dt.timedelta(days=3650)
CERT_VALIDITY = dt.timedelta(days=825)
CRL_VALIDITY = dt.timedelta(days=3650)
_SKEW = dt.timedelta(minutes=5)
PEER_DOMAIN = "peer.relais.invalid"
_NAME = re.compile(r"^[\w][\w .'-]{0,62}$")


@dataclass(frozen=True, slots=True)
class PracticeCa:
    """The CA certificate and, on the workstation that made it, its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey | None = None

    @property
    def practice_id(self) -> str:
        return _attr(self.cert.subject, NameOID.ORGANIZATION_NAME)

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def check_workstation_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInput.field("name", "Nom de poste invalide (lettres, chiffres, espace . ' _ -, 63 au plus).")
    return name


def slug(name: str) -> str:
    """A DNS label for a workstation name: ASCII, lower case, letters, digits and hyphens."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    label = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:50]
    return label or "poste"


def dns_name(name: str) -> str:
    return f"{slug(name)}.{PEER_DOMAIN}"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput("clé privée du cabinet d'un type inattendu")
    return key


def load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise InvalidInput("certificat illisible") from exc


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def der_fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def create_ca(now: dt.datetime) -> PracticeCa:
    """A new practice CA; the practice id (random, 128 bits) goes in the organisation of every certificate.
    The practice's name is not in any certificate (it stays in the store): whoever connects to a peer port
    sees certificates, and they should tell a stranger as little as possible."""
    key = ec.generate_private_key(ec.SECP256R1())
    practice_id = f"relais-practice-{secrets.token_hex(16)}"
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, practice_id),
        x509.NameAttribute(NameOID.COMMON_NAME, "Relais practice CA"),
    ])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW).not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return PracticeCa(cert, key)


def make_csr(name: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, check_workstation_name(name))]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def issue(ca: PracticeCa, csr_pem: bytes, name: str, now: dt.datetime) -> x509.Certificate:
    """Sign a workstation's request. Only its public key is taken from the CSR (its proof of possession is
    checked); the subject and every extension are the CA's choice."""
    if ca.key is None:
        raise AccessRefused("Ce poste ne détient pas l'autorité du cabinet.", code="not_practice_ca")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise InvalidInput("demande de certificat illisible") from exc
    if not csr.is_signature_valid:
        raise InvalidInput("demande de certificat mal signée")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise InvalidInput("type de clé refusé : ECDSA P-256 attendu")
    check_workstation_name(name)
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ca.practice_id),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
    ])
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca.cert.subject).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW).not_valid_after(min(now + CERT_VALIDITY, ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name(name))]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value), critical=False)
        .sign(ca.key, hashes.SHA256())
    )


def workstation_name(cert: x509.Certificate) -> str:
    return _attr(cert.subject, NameOID.COMMON_NAME)


def verify_workstation(ca_cert: x509.Certificate, cert: x509.Certificate, now: dt.datetime,
                       revoked: frozenset[int] = frozenset()) -> str:
    """Strict RFC 5280 path validation of a peer's certificate against the practice CA alone (server and client
    usages), its practice, and the revocation list; returns the workstation name or raises AccessRefused."""
    store = Store([ca_cert])
    try:
        PolicyBuilder().store(store).time(now).build_client_verifier().verify(cert, [])
        name = workstation_name(cert)
        PolicyBuilder().store(store).time(now).build_server_verifier(DNSName(dns_name(name))).verify(cert, [])
    except VerificationError as exc:
        raise AccessRefused("Certificat de poste refusé.", code="peer_refused") from exc
    if _attr(cert.subject, NameOID.ORGANIZATION_NAME) != _attr(ca_cert.subject, NameOID.ORGANIZATION_NAME):
        raise AccessRefused("Certificat d'un autre cabinet.", code="peer_refused")
    if cert.serial_number in revoked:
        raise AccessRefused("Ce poste a été retiré du cabinet.", code="peer_revoked")
    return name


@dataclass(frozen=True, slots=True)
class Revocations:
    number: int
    serials: frozenset[int]
    pem: bytes


def build_crl(ca: PracticeCa, number: int, serials: dict[int, dt.datetime], now: dt.datetime) -> Revocations:
    if ca.key is None:
        raise AccessRefused("Ce poste ne détient pas l'autorité du cabinet.", code="not_practice_ca")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - _SKEW).next_update(now + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value), critical=False)
    )
    for serial, when in sorted(serials.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    crl = builder.sign(ca.key, hashes.SHA256())
    return Revocations(number, frozenset(serials), crl.public_bytes(serialization.Encoding.PEM))


def load_crl(ca_cert: x509.Certificate, pem: bytes) -> Revocations:
    """A revocation list from a peer: accepted only when the practice CA signed it."""
    try:
        crl = x509.load_pem_x509_crl(pem)
    except ValueError as exc:
        raise InvalidInput("liste de révocation illisible") from exc
    public = ca_cert.public_key()
    if crl.issuer != ca_cert.subject or not isinstance(public, ec.EllipticCurvePublicKey):
        raise AccessRefused("Liste de révocation d'une autre autorité.", code="peer_refused")
    try:
        ok = crl.is_signature_valid(public)
    except InvalidSignature:  # pragma: no cover - is_signature_valid returns False instead
        ok = False
    if not ok:
        raise AccessRefused("Liste de révocation mal signée.", code="peer_refused")
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    return Revocations(number, frozenset(entry.serial_number for entry in crl), pem)
