"""Card code without hardware: APDU/TLV, the Vitale layout, the CPS holder, and the card service driven through the
in-process simulated reader (the same APDUs as over PC/SC) with the demo's virtual CPS."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from agent.cards.service import CardService
from agent.clock import FrozenClock
from agent.domain.apdu import Command, Response, Sw, encode_tlv, parse_tlv, read_binary
from agent.domain.cps import holder_from_subject, luhn_ok
from agent.domain.signing import SignatureAlgorithm
from agent.domain.vitale import (
    VitaleBeneficiary,
    VitaleFormatError,
    encode_beneficiaries,
    parse_beneficiaries,
)
from agent.errors import InvalidInput, PinRefused, Unavailable
from agent.events import EventBus
from relais_sandbox.cards import CPS_READER, VITALE_READER, SimulatedReaders, VirtualCards, demo_beneficiaries
from relais_sandbox.cards_vpcd import VitaleApplet
from relais_sandbox.pki import SandboxPki

# --- APDU and TLV -----------------------------------------------------------------------------------------


def test_apdu_round_trip_and_status_words() -> None:
    command = Command(0x00, 0xA4, 0x04, 0x0C, bytes.fromhex("D250000002564954414C45"))
    assert Command.decode(command.encode()) == command
    assert read_binary(0x0123, 0xE0).encode() == bytes.fromhex("00B00123E0")
    assert Command.decode(bytes.fromhex("00B0000000")).le == 256
    response = Response.decode(b"\x01\x02\x62\x82")
    assert response.data == b"\x01\x02" and response.sw == Sw.END_OF_FILE and not response.ok
    with pytest.raises(ValueError):
        Command.decode(bytes.fromhex("00A4040C05D2"))  # Lc says 5, one byte follows


def test_tlv_long_lengths_and_truncation() -> None:
    value = b"x" * 300
    (tlv,) = parse_tlv(encode_tlv(0x65, value))
    assert tlv.tag == 0x65 and tlv.value == value and tlv.constructed
    with pytest.raises(ValueError):
        list(parse_tlv(encode_tlv(0x65, value)[:-1]))
    with pytest.raises(ValueError):
        list(parse_tlv(b"\x9f"))  # a multi-byte tag cut short


# --- Vitale layout ----------------------------------------------------------------------------------------

CORSICA = VitaleBeneficiary(0, "162082A00412371", "ORSONI", ["JEAN-BAPTISTE", "ANGE"], "ORSONI", "1962-08-15", 1,
                            "00")
LUNAR = VitaleBeneficiary(1, "279035121518989", "LEFÈVRE", ["HÉLÈNE"], "MOREAU", "1955-00-00", 2, "02")


def test_vitale_records_round_trip_with_accents_corsica_and_lunar_dates() -> None:
    parsed = parse_beneficiaries(encode_beneficiaries([CORSICA, LUNAR]))
    assert parsed == [CORSICA, LUNAR]
    assert parsed[1].birth_date == "1955-00-00"  # kept as written on the card, not "corrected"


def test_vitale_given_names_in_one_tag_are_split_and_birth_name_defaults() -> None:
    inner = encode_tlv(0x93, b"279035121518989") + encode_tlv(0x80, b"PAT-TROIS") + \
        encode_tlv(0x81, b"DOMINIQUE MARIE-LOUISE") + encode_tlv(0x82, b"19790328")
    (person,) = parse_beneficiaries(encode_tlv(0x65, inner))
    assert person.given_names == ["DOMINIQUE", "MARIE-LOUISE"]
    assert person.birth_name == "PAT-TROIS" and person.birth_date == "1979-03-28" and person.quality == "00"


@pytest.mark.parametrize("inner", [
    encode_tlv(0x80, b"SANS-NIR"),
    encode_tlv(0x93, b"12345") + encode_tlv(0x80, b"X"),
    encode_tlv(0x93, b"279035121518989") + encode_tlv(0x80, b"X") + encode_tlv(0x82, b"1979-03-28"),
])
def test_malformed_vitale_records_are_refused(inner: bytes) -> None:
    with pytest.raises(VitaleFormatError):
        parse_beneficiaries(encode_tlv(0x65, inner))


def test_vitale_applet_reads_in_chunks_like_a_card() -> None:
    from agent.cards.vitale import read_card

    many = [VitaleBeneficiary(i, "279035121518989", f"NOM{i}", ["PRENOM"], f"NOM{i}", "1979-03-28", 1, "06")
            for i in range(8)]
    applet = VitaleApplet(many)
    assert len(applet.file) > 0xE0  # more than one READ BINARY

    def transmit(command: Command) -> Response:
        return Response.decode(applet.process(command.encode()))

    assert read_card(transmit).beneficiaries == many
    with pytest.raises(Unavailable) as not_vitale:
        read_card(lambda c: Response(b"", Sw.FILE_NOT_FOUND))
    assert not_vitale.value.code == "vitale_absent"


# --- CPS holder -------------------------------------------------------------------------------------------

def test_holder_from_a_cps_like_subject() -> None:
    holder = holder_from_subject([
        (NameOID.SERIAL_NUMBER.dotted_string, "801234567897"), (NameOID.SURNAME.dotted_string, "MULLER"),
        (NameOID.GIVEN_NAME.dotted_string, "CHARLES"), (NameOID.TITLE.dotted_string, "10"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME.dotted_string, "Cabinet"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME.dotted_string, "SM40"),
    ])
    assert (holder.rpps, holder.national_id, holder.specialty) == ("01234567897", "801234567897", "SM40")
    assert luhn_ok(holder.rpps) and not luhn_ok("01234567898")
    unknown = holder_from_subject([(NameOID.COMMON_NAME.dotted_string, "Jean Dupont")])
    assert unknown.rpps == "" and unknown.specialty == ""  # nothing guessed


# --- the card service with the simulated reader ------------------------------------------------------------

class Recorder:
    def __init__(self, bus: EventBus) -> None:
        self.sub = bus.subscribe()

    async def next(self, type_: str) -> dict[str, Any]:
        while True:
            event = await self.sub.get(timeout=5)
            assert event is not None, f"no {type_} event"
            if event.type == type_:
                return {"type": event.type, **event.data}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return SandboxPki(tmp_path_factory.mktemp("pki"))  # key generation is slow: once per module


@pytest.fixture
async def cards(pki: SandboxPki) -> Any:
    bus, clock = EventBus(), FrozenClock()
    readers = SimulatedReaders()
    virtual = VirtualCards(readers, pki)
    service = CardService(bus, clock, backend=readers, token_factory=readers.token_for, session_timeout=60)
    recorder = Recorder(bus)
    await service.start()
    yield service, virtual, recorder, clock
    await service.stop()


async def test_nothing_inserted_says_what_is_missing_in_french(cards: Any) -> None:
    service, _, _, _ = cards
    assert service.cps_holder() is None
    for call, code in ((service.require_signer, "cps_absent"), (service.vitale_beneficiaries, "vitale_absent")):
        with pytest.raises(Unavailable) as missing:
            call()
        assert missing.value.code == code and "carte" in missing.value.message
    with pytest.raises(Unavailable) as absent:
        await service.login("1234")
    assert absent.value.code == "cps_absent"
    snap = service.snapshot()
    assert snap["cps"]["present"] is False and snap["vitale"]["present"] is False
    assert [r["name"] for r in snap["readers"]] == [CPS_READER, VITALE_READER]


async def test_vitale_events_never_carry_patient_data(cards: Any) -> None:
    service, virtual, recorder, _ = cards
    virtual.insert_vitale()
    inserted = await recorder.next("card.inserted")
    assert inserted == {"type": "card.inserted", "reader": VITALE_READER, "card": "vitale",
                        "beneficiary_count": len(demo_beneficiaries())}
    people = service.vitale_beneficiaries()
    assert people[0].nir == "279035121518989" and people[0].given_names[0] == "DOMINIQUE"
    # The serial number is not patient data and travels in GET /v1/cards, never in events.
    assert service.snapshot()["vitale"]["card_serial"] == service.vitale_card().serial != ""
    virtual.readers.remove(VITALE_READER)
    assert (await recorder.next("card.removed"))["card"] == "vitale"
    with pytest.raises(Unavailable):
        service.vitale_beneficiaries()


async def test_cps_pin_tries_then_blocked(cards: Any) -> None:
    service, virtual, recorder, _ = cards
    virtual.insert_cps()
    assert (await recorder.next("card.inserted"))["rpps"] == "01234567897"
    holder = service.cps_holder()
    assert holder is not None and not holder.logged_in and holder.reader == CPS_READER
    with pytest.raises(InvalidInput):
        await service.login("12")  # refused before it costs an attempt
    assert service.snapshot()["cps"]["pin_tries_left"] == 3
    for left in (2, 1):
        with pytest.raises(PinRefused) as wrong:
            await service.login("0000")
        assert wrong.value.tries_left == left
    with pytest.raises(Unavailable) as blocked:
        await service.login("0000")
    assert blocked.value.code == "cps_blocked" and "PUK" in blocked.value.message
    with pytest.raises(Unavailable) as still_blocked:
        await service.login("1234")  # even the right PIN: the card is blocked
    assert still_blocked.value.code == "cps_blocked"


async def test_signer_works_only_while_the_card_is_in_and_logged_in(cards: Any) -> None:
    service, virtual, recorder, _ = cards
    virtual.insert_cps()
    with pytest.raises(Unavailable) as locked:
        service.require_signer()
    assert locked.value.code == "cps_not_logged_in"
    await service.login("1234")
    assert (await recorder.next("cps.login"))["rpps"] == "01234567897"
    signer = service.require_signer()
    cert = x509.load_der_x509_certificate(signer.certificate_der)
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signer.sign(b"doc"), b"doc", padding.PKCS1v15(), hashes.SHA256())
    pss = signer.sign(b"doc", SignatureAlgorithm.RSA_PSS_SHA256)
    public.verify(pss, b"doc", padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    virtual.readers.remove(CPS_READER)
    await recorder.next("card.removed")
    with pytest.raises(Unavailable) as pulled:
        signer.sign(b"doc")  # the signer handed out earlier refuses too
    assert pulled.value.code == "cps_absent"
    virtual.insert_cps()
    with pytest.raises(Unavailable) as again:
        service.require_signer()
    assert again.value.code == "cps_not_logged_in"  # a re-inserted card asks for the PIN again


async def test_idle_session_times_out(pki: SandboxPki) -> None:
    bus, clock = EventBus(), FrozenClock()
    readers = SimulatedReaders()
    virtual = VirtualCards(readers, pki)
    service = CardService(bus, clock, backend=readers, token_factory=readers.token_for, session_timeout=0.2)
    recorder = Recorder(bus)
    await service.start()
    try:
        virtual.insert_cps()
        await service.login("1234")
        clock.advance(1)
        logout = await recorder.next("cps.logout")
        assert logout["reason"] == "timeout"
        with pytest.raises(Unavailable):
            service.require_signer()
    finally:
        await service.stop()


async def test_status_has_no_names(cards: Any) -> None:
    service, virtual, _, _ = cards
    virtual.apply("both")
    status = await service.status()
    text = repr(status)
    assert status["cards"]["cps"]["present"] and status["cards"]["vitale"]["present"]
    assert "MULLER" not in text and "PAT-TROIS" not in text and "279035121518989" not in text
    await asyncio.sleep(0)


async def test_neither_pin_nor_patient_data_reach_the_logs(cards: Any, caplog: pytest.LogCaptureFixture) -> None:
    service, virtual, _, _ = cards
    caplog.set_level(1, logger="relais")
    virtual.apply("both")
    with pytest.raises(PinRefused):
        await service.login("97531")
    await service.login("1234")
    service.require_signer().sign(b"x")
    text = caplog.text
    assert caplog.records  # the card story is logged...
    assert "97531" not in text  # ...without the PIN
    assert "279035121518989" not in text and "PAT-TROIS" not in text and "DOMINIQUE" not in text


def test_pkcs11_token_flags_give_tries_left() -> None:
    pkcs11 = pytest.importorskip("pkcs11", reason="python-pkcs11 absent: pip install 'relais[cards]'")
    from agent.cards.pkcs11 import tries_left_from_flags

    flags = pkcs11.TokenFlag
    assert tries_left_from_flags(int(flags.LOGIN_REQUIRED)) == 3
    assert tries_left_from_flags(int(flags.USER_PIN_COUNT_LOW)) == 2
    assert tries_left_from_flags(int(flags.USER_PIN_COUNT_LOW | flags.USER_PIN_FINAL_TRY)) == 1
    assert tries_left_from_flags(int(flags.USER_PIN_LOCKED | flags.USER_PIN_COUNT_LOW)) == 0


async def test_cps_seen_by_pcsc_before_its_pkcs11_token_is_opened_when_it_appears(pki: SandboxPki) -> None:
    bus = EventBus()
    readers = SimulatedReaders()
    virtual = VirtualCards(readers, pki)
    ready = False

    def slow_module(reader: str) -> Any:
        return readers.token_for(reader) if ready else None  # the module does not show the token yet

    service = CardService(bus, FrozenClock(), backend=readers, token_factory=slow_module, poll_seconds=0.05)
    recorder = Recorder(bus)
    await service.start()
    try:
        virtual.insert_cps()
        first = await recorder.next("card.inserted")
        assert first["card"] == "cps" and "rpps" not in first
        assert service.snapshot()["cps"]["present"] and service.cps_holder() is None
        ready = True
        again = await recorder.next("card.inserted")
        assert again["rpps"] == "01234567897"
        await service.login("1234")
        assert service.require_signer().certificate_der
    finally:
        await service.stop()

