"""The practice PKI and the pairing MACs: strict X.509, revocation, and a code that authenticates both sides."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from agent.errors import AccessRefused, InvalidInput
from agent.routing import pairing, pki

NOW = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca() -> pki.PracticeCa:
    return pki.create_ca(NOW)


def issue(ca: pki.PracticeCa, name: str = "Accueil") -> x509.Certificate:
    return pki.issue(ca, pki.make_csr(name, pki.new_key()), name, NOW)


def test_ca_has_the_extensions_strict_checkers_demand(ca: pki.PracticeCa) -> None:
    ext = ca.cert.extensions
    basic = ext.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest


def test_issued_certificate_verifies_strictly_and_names_the_workstation(ca: pki.PracticeCa) -> None:
    cert = issue(ca, "Salle 2")
    assert pki.verify_workstation(ca.cert, cert, NOW) == "Salle 2"
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_certificate_of_another_practice_is_refused(ca: pki.PracticeCa) -> None:
    other = pki.create_ca(NOW)
    with pytest.raises(AccessRefused):
        pki.verify_workstation(ca.cert, issue(other), NOW)


def test_expired_certificate_is_refused(ca: pki.PracticeCa) -> None:
    cert = issue(ca)
    with pytest.raises(AccessRefused):
        pki.verify_workstation(ca.cert, cert, NOW + pki.CERT_VALIDITY + dt.timedelta(days=1))


def test_revoked_certificate_is_refused_and_the_crl_must_be_signed_by_the_ca(ca: pki.PracticeCa) -> None:
    cert = issue(ca)
    crl = pki.build_crl(ca, 2, {cert.serial_number: NOW}, NOW)
    loaded = pki.load_crl(ca.cert, crl.pem)
    assert loaded.number == 2
    with pytest.raises(AccessRefused) as info:
        pki.verify_workstation(ca.cert, cert, NOW, loaded.serials)
    assert info.value.code == "peer_revoked"
    # A list that names our CA as issuer but is signed by another key (one that would un-revoke) is refused.
    impostor = pki.PracticeCa(ca.cert, pki.create_ca(NOW).key)
    forged = pki.build_crl(impostor, 3, {}, NOW)
    with pytest.raises(AccessRefused) as info:
        pki.load_crl(ca.cert, forged.pem)
    assert "mal signée" in info.value.message
    with pytest.raises(AccessRefused):
        pki.load_crl(ca.cert, pki.build_crl(pki.create_ca(NOW), 4, {}, NOW).pem)


def test_the_csr_gives_only_its_key_the_ca_chooses_the_name(ca: pki.PracticeCa) -> None:
    key = pki.new_key()
    cert = pki.issue(ca, pki.make_csr("Je-suis-le-CA", key), "Accueil", NOW)
    assert pki.workstation_name(cert) == "Accueil"
    assert cert.public_key() == key.public_key()


def test_a_workstation_without_the_ca_key_cannot_issue(ca: pki.PracticeCa) -> None:
    with pytest.raises(AccessRefused):
        pki.issue(pki.PracticeCa(ca.cert), pki.make_csr("X", pki.new_key()), "X", NOW)


def test_codes_are_80_bits_and_tolerate_confusable_letters() -> None:
    code = pairing.new_code()
    assert len(code) == 19 and code.count("-") == 3
    assert pairing.code_key(code) == pairing.code_key(code.lower().replace("0", "O").replace("-", " "))
    with pytest.raises(InvalidInput):
        pairing.code_key("ABCD-EFGH")


def test_exchange_succeeds_with_the_code_and_binds_the_server_certificate() -> None:
    code = pairing.new_code()
    server_key, joiner_key = pairing.code_key(code), pairing.code_key(code)
    cert_hash = pairing.digest(b"server-cert-der")
    csr = b"csr"
    mac = pairing.join_mac(joiner_key, cert_hash, "n" * 32, "Accueil", csr)
    invite, key = pairing.match_invite([("i1", b"x" * 32), ("i2", server_key)], cert_hash, "n" * 32, "Accueil",
                                       csr, mac)
    assert invite == "i2"
    welcome = pairing.welcome_mac(key, cert_hash, "n" * 32, "s" * 32, "Accueil", b"ca", b"cert", b"crl")
    pairing.check_welcome(joiner_key, cert_hash, "n" * 32, "s" * 32, "Accueil", b"ca", b"cert", b"crl", welcome)


def test_wrong_code_or_a_machine_in_between_is_refused_both_ways() -> None:
    code = pairing.new_code()
    key = pairing.code_key(code)
    wrong = pairing.code_key(pairing.new_code())
    seen_by_joiner, real_cert = pairing.digest(b"mitm-cert"), pairing.digest(b"server-cert")
    mac = pairing.join_mac(key, seen_by_joiner, "n" * 32, "Accueil", b"csr")
    with pytest.raises(AccessRefused):  # the server sees another certificate hash than the joiner did
        pairing.match_invite([("i", key)], real_cert, "n" * 32, "Accueil", b"csr", mac)
    with pytest.raises(AccessRefused):  # wrong code
        pairing.match_invite([("i", wrong)], seen_by_joiner, "n" * 32, "Accueil", b"csr", mac)
    with pytest.raises(AccessRefused):  # a listener without the code cannot welcome the joiner
        forged = pairing.welcome_mac(wrong, seen_by_joiner, "n" * 32, "s" * 32, "Accueil", b"ca", b"c", b"r")
        pairing.check_welcome(key, seen_by_joiner, "n" * 32, "s" * 32, "Accueil", b"ca", b"c", b"r", forged)
    with pytest.raises(AccessRefused):  # the joiner's MAC cannot be moved to another CSR
        pairing.match_invite([("i", key)], seen_by_joiner, "n" * 32, "Accueil", b"other-csr", mac)
