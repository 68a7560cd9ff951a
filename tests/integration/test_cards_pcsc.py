"""Cards through a real PC/SC stack: pcscd with the vpcd driver, our card emulators as the cards, the agent's
API and event stream as the LGC sees them, and SoftHSM2 as the CPS's PKCS#11 module."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agent.domain.vitale import VitaleBeneficiary
from relais_sandbox.cards_vpcd import VPCD_READERS, CpsApplet, VitaleApplet, VpcdCard
from tests.support.cards import DOCTOR, Pcscd, SoftHsm, event_stream

pytest.importorskip("smartcard", reason="pyscard absent: pip install 'relais[cards]'")

VITALE_READER, CPS_READER = VPCD_READERS
BENEFICIARIES = [
    VitaleBeneficiary(0, "279035121518989", "PAT-TROIS", ["DOMINIQUE", "MARIE-LOUISE"], "PAT-TROIS", "1979-03-28",
                      1, "00"),
    VitaleBeneficiary(1, "279035121518989", "PAT-TROIS", ["CAMILLE"], "PAT-TROIS", "2012-05-04", 1, "06"),
]


async def _cards(http: Any, agent: Any) -> dict[str, Any]:
    async with http.get(f"{agent.url}/v1/cards", headers=agent.headers()) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def test_vitale_insert_read_pull_and_insert_again(pcscd: Pcscd, start_agent: Any, http: Any) -> None:
    agent = await start_agent(cards={"pcsc": True})
    async with event_stream(http, agent) as events:
        for round_ in range(2):
            card = VpcdCard(VitaleApplet(BENEFICIARIES), slot=0).insert()
            try:
                inserted = await events.wait("card.inserted", reader=VITALE_READER)
                assert inserted["card"] == "vitale"
                assert inserted["beneficiary_count"] == 2
                # Events never carry patient data.
                assert "279035121518989" not in json.dumps(inserted) and "PAT-TROIS" not in json.dumps(inserted)
                cards = await _cards(http, agent)
                assert cards["vitale"]["present"] and cards["vitale"]["reader"] == VITALE_READER
                assert [b["given_names"][0] for b in cards["vitale"]["beneficiaries"]] == ["DOMINIQUE", "CAMILLE"]
                assert cards["vitale"]["beneficiaries"][0]["birth_date"] == "1979-03-28"
                assert {"name": VITALE_READER, "card": "vitale"} in cards["readers"], round_
            finally:
                card.pull()
            removed = await events.wait("card.removed", reader=VITALE_READER)
            assert removed["card"] == "vitale"
            cards = await _cards(http, agent)
            assert cards["vitale"] == {"present": False, "reader": None, "beneficiaries": [], "card_serial": None,
                                      "validity_start": None}


async def test_cps_and_vitale_in_two_readers_login_and_sign(pcscd: Pcscd, softhsm: SoftHsm,
                                                            start_agent: Any, http: Any) -> None:
    agent = await start_agent(cards={"pcsc": True, "pkcs11_module": softhsm.module,
                                     "token_label": softhsm.token_label})
    async with event_stream(http, agent) as events:
        with VpcdCard(VitaleApplet(BENEFICIARIES), slot=0), VpcdCard(CpsApplet(), slot=1) as cps_card:
            assert (await events.wait("card.inserted", reader=CPS_READER))["card"] == "cps"
            await events.wait("card.inserted", reader=VITALE_READER)
            cards = await _cards(http, agent)
            assert cards["cps"]["present"] and not cards["cps"]["logged_in"]
            assert cards["cps"]["holder"]["rpps"] == DOCTOR["rpps"]
            assert cards["vitale"]["present"]
            assert agent.services.cards.cps_holder().rpps == DOCTOR["rpps"]

            async with http.post(f"{agent.url}/v1/sign", json={"format": "raw", "data_base64": "aGk="},
                                 headers=agent.headers()) as response:
                assert response.status == 503
                assert (await response.json())["code"] == "cps_not_logged_in"
            async with http.post(f"{agent.url}/v1/cps/login", json={"pin": "9999"},
                                 headers=agent.headers()) as response:
                problem = await response.json()
                assert response.status == 401 and problem["code"] == "pin_invalid"
                assert problem["tries_left"] == 2
            async with http.post(f"{agent.url}/v1/cps/login", json={"pin": softhsm.pin},
                                 headers=agent.headers()) as response:
                assert response.status == 200 and (await response.json())["logged_in"]
            login = await events.wait("cps.login")
            assert login["rpps"] == DOCTOR["rpps"] and "pin" not in login

            data = b"ordonnance"
            async with http.post(f"{agent.url}/v1/sign", json={
                    "format": "raw", "data_base64": base64.b64encode(data).decode()},
                    headers=agent.headers()) as response:
                assert response.status == 200
                signed = await response.json()
            cert = x509.load_pem_x509_certificate(signed["certificate_pem"].encode())
            assert cert == softhsm.cert
            public = cert.public_key()
            assert isinstance(public, rsa.RSAPublicKey)
            public.verify(base64.b64decode(signed["signature_base64"]), data, padding.PKCS1v15(), hashes.SHA256())

            cps_card.pull()
            await events.wait("card.removed", reader=CPS_READER)
            async with http.post(f"{agent.url}/v1/sign", json={"format": "raw", "data_base64": "aGk="},
                                 headers=agent.headers()) as response:
                assert response.status == 503
                assert (await response.json())["code"] == "cps_absent"
            # The Vitale in the other reader is still there.
            assert (await _cards(http, agent))["vitale"]["present"]


async def test_pcscd_down_is_reported_and_recovered(pcscd: Pcscd, start_agent: Any, http: Any) -> None:
    if pcscd.started is None:
        pytest.skip("pcscd was already running (not started by these tests): it is not ours to stop")
    agent = await start_agent(cards={"pcsc": True})
    async with event_stream(http, agent) as events:
        with VpcdCard(VitaleApplet(BENEFICIARIES), slot=0):
            await events.wait("card.inserted", reader=VITALE_READER)
            pcscd.stop()
            await events.wait("card.removed", reader=VITALE_READER)
            await events.wait("cards.service", state="down")
        cards = await _cards(http, agent)
        assert cards["service"]["state"] == "down" and cards["readers"] == []
        pcscd.start()
        await events.wait("cards.service", state="up", timeout=20)
        with VpcdCard(VitaleApplet(BENEFICIARIES), slot=0):
            inserted = await events.wait("card.inserted", reader=VITALE_READER, timeout=20)
            assert inserted["card"] == "vitale"


async def test_card_held_by_another_program_is_read_once_released(pcscd: Pcscd, start_agent: Any,
                                                                  http: Any) -> None:
    from smartcard import scard as sc

    from agent.errors import Unavailable

    with VpcdCard(VitaleApplet(BENEFICIARIES), slot=0):
        # Another program (say the LGC's SESAM-Vitale module) holds the card exclusively.
        hresult, context = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
        assert hresult == sc.SCARD_S_SUCCESS
        for _ in range(50):
            hresult, handle, _protocol = sc.SCardConnect(context, VITALE_READER, sc.SCARD_SHARE_EXCLUSIVE,
                                                         sc.SCARD_PROTOCOL_T0 | sc.SCARD_PROTOCOL_T1)
            if hresult == sc.SCARD_S_SUCCESS:
                break
            await asyncio.sleep(0.1)
        assert hresult == sc.SCARD_S_SUCCESS
        try:
            agent = await start_agent(cards={"pcsc": True})
            async with event_stream(http, agent) as events:
                busy = await events.wait("card.inserted", reader=VITALE_READER)
                assert busy["card"] == "unknown" and busy["error"] == "reader_busy"
                with pytest.raises(Unavailable) as held:
                    agent.services.cards.vitale_beneficiaries()
                assert held.value.code == "reader_busy" and "occupé" in held.value.message
                sc.SCardDisconnect(handle, sc.SCARD_LEAVE_CARD)
                handle = None
                read = await events.wait("card.inserted", reader=VITALE_READER, card="vitale")
                assert read["beneficiary_count"] == 2
                assert len(agent.services.cards.vitale_beneficiaries()) == 2
        finally:
            if handle is not None:
                sc.SCardDisconnect(handle, sc.SCARD_LEAVE_CARD)
            sc.SCardReleaseContext(context)


async def test_service_down_is_what_the_doctor_is_told(pcscd: Pcscd, start_agent: Any, http: Any) -> None:
    if pcscd.started is None:
        pytest.skip("pcscd was already running (not started by these tests): it is not ours to stop")
    agent = await start_agent(cards={"pcsc": True})
    for _ in range(100):  # the monitor says "up" as soon as its thread reaches pcscd
        if agent.services.cards.snapshot()["service"]["state"] == "up":
            break
        await asyncio.sleep(0.05)
    async with event_stream(http, agent) as events:
        pcscd.stop()
        try:
            await events.wait("cards.service", state="down")
            async with http.post(f"{agent.url}/v1/sign", json={"format": "raw", "data_base64": "aGk="},
                                 headers=agent.headers()) as response:
                problem = await response.json()
            assert response.status == 503 and problem["code"] == "pcsc_unavailable"
            assert "PC/SC" in problem["detail"]
        finally:
            pcscd.start()


async def test_reader_is_released_right_after_reading(pcscd: Pcscd, start_agent: Any, http: Any) -> None:
    from smartcard import scard as sc

    agent = await start_agent(cards={"pcsc": True})
    async with event_stream(http, agent) as events:
        with VpcdCard(VitaleApplet(BENEFICIARIES), slot=0):
            await events.wait("card.inserted", reader=VITALE_READER, card="vitale")
            # Another program can now take the card exclusively: the agent holds no connection.
            hresult, context = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
            try:
                hresult, handle, _ = sc.SCardConnect(context, VITALE_READER, sc.SCARD_SHARE_EXCLUSIVE,
                                                     sc.SCARD_PROTOCOL_T0 | sc.SCARD_PROTOCOL_T1)
                assert hresult == sc.SCARD_S_SUCCESS, sc.SCardGetErrorMessage(hresult)
                sc.SCardDisconnect(handle, sc.SCARD_LEAVE_CARD)
            finally:
                sc.SCardReleaseContext(context)
