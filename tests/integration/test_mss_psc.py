"""MSSanté personal mailboxes opened with the professional's Pro Santé Connect token (``[mss] auth = "psc"``,
SASL OAUTHBEARER, RFC 7628), over real sockets against the simulated operator and the simulated PSC: a send with a
live session arrives, without a session the delivery waits for the professional, and a forged, foreign or revoked
token is refused by the operator (535 / NO) without the order claiming success. The token is never logged."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import imaplib
import logging
import smtplib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.cli.wiring import DemoOptions
from agent.clock import FrozenClock
from agent.config import MssSection
from agent.errors import Unavailable
from agent.events import EventBus
from agent.mss import oauthbearer
from agent.mss.factory import settings_from
from agent.mss.service import MssSender
from agent.psc.client import PscClient, PscSettings
from agent.psc.jose import SigningKey
from agent.psc.service import PscPart, RedirectSettings
from relais_sandbox.host import SandboxContext
from relais_sandbox.identities import PAT_TROIS
from relais_sandbox.mss import MssSimulator, personal_mailbox
from relais_sandbox.pki import SandboxPki
from relais_sandbox.psc import CLIENT_ID, TEST_USERS, PscSimulator
from tests.integration.test_dmp_api import call
from tests.integration.test_dmp_psc import _login, _wait_state
from tests.integration.test_mss_transport import NOW, outgoing, packager
from tests.integration.test_queue_demo import demo_cda
from tests.support.psc import browse, running_psc
from tests.support.queue import order_body

DEMO, OTHER = TEST_USERS
MAILBOX = personal_mailbox(DEMO)
RECIPIENT = "dr.x@medecin.demo.mssante.fr"


@dataclass
class World:
    psc: PscSimulator
    part: PscPart
    operator: MssSimulator
    endpoint: dict[str, Any]
    pki: SandboxPki

    def sender(self) -> MssSender:
        settings = settings_from(MssSection(auth="psc"), self.endpoint)
        assert settings is not None and settings.psc and settings.sender == MAILBOX
        return MssSender(settings, packager(self.pki), FrozenClock(NOW), self.bearer)

    async def bearer(self, rpps: str) -> str | None:
        identity = self.part.identity()
        if not rpps and identity is not None:
            rpps = identity.rpps
        return await self.part.access_token(rpps) if rpps else None

    async def login(self) -> str:
        await browse((await self.part.begin_login())["authorization_url"])
        token = await self.part.access_token(DEMO.rpps)
        assert token
        return token


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with running_psc(tmp_path / "psc") as psc:
        clock = FrozenClock(dt.datetime.now(dt.UTC))
        part = PscPart(PscClient(PscSettings(issuer=psc.issuer, client_id=CLIENT_ID), clock), EventBus(clock),
                       clock, RedirectSettings())
        pki = SandboxPki(tmp_path / "sandbox")
        operator = MssSimulator(psc=psc)
        endpoint = await operator.start(SandboxContext(tmp_path / "sandbox", pki))
        try:
            async with part:
                yield World(psc, part, operator, endpoint, pki)
        finally:
            await operator.stop()


@pytest.fixture
def cs9(reference_dir: Path) -> bytes:
    return (reference_dir / "ci-sis/ExemplesCDA/CSE-CS9_2025.01.xml").read_bytes()


async def test_a_personal_mailbox_sends_with_the_psc_session_and_the_mail_arrives(
        world: World, cs9: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = await world.login()
    sender = world.sender()

    message_id = await sender.send(outgoing(cs9, f"mss:{RECIPIENT}"))

    accepted = world.operator.store.accepted()
    assert [(a["message_id"], a["mail_from"]) for a in accepted] == [(message_id, MAILBOX)]
    assert world.operator.store.messages(RECIPIENT, "INBOX")  # delivered to the recipient
    # The reports and the reconciliation read the personal mailbox over IMAP with the same token.
    batch = await sender.read_acks(0, 0)
    assert {a.original_message_id for a in batch.acks} == {message_id}
    assert await sender.find("ord-1", f"mss:{RECIPIENT}") == message_id
    assert {(login.mailbox, login.rpps) for login in world.operator.psc_logins} == {(MAILBOX, DEMO.rpps)}
    assert len(world.operator.psc_logins) >= 3  # SMTP, then IMAP twice: no other authentication
    host, port = world.endpoint["smtp"]["host"], int(world.endpoint["smtp"]["port"])
    sasl = base64.b64encode(oauthbearer.initial_response(MAILBOX, host, port, token).encode()).decode()
    assert token not in caplog.text and sasl not in caplog.text and token[-40:] not in caplog.text


async def test_without_a_psc_session_the_delivery_waits_for_the_professional(world: World, cs9: bytes) -> None:
    sender = world.sender()

    with pytest.raises(Unavailable) as waiting:
        await sender.send(outgoing(cs9, f"mss:{RECIPIENT}"))

    assert waiting.value.code == "psc_session_expired" and "Pro Santé Connect" in waiting.value.message
    with pytest.raises(Unavailable):  # nor is the mailbox opened any other way to reconcile
        await sender.find("ord-1", f"mss:{RECIPIENT}")
    batch = await sender.read_acks(7, 42)  # the reports wait in the mailbox; the position is kept
    assert (batch.acks, batch.uidvalidity, batch.last_uid) == ([], 7, 42)
    assert world.operator.store.accepted() == [] and world.operator.psc_logins == []


def _smtp_oauthbearer(world: World, token: str, user: str = MAILBOX) -> tuple[int, bytes]:
    """A raw SMTP client presenting ``token``: the operator's final answer to AUTH OAUTHBEARER."""
    context = ssl.create_default_context(cafile=world.endpoint["ca"])
    host, port = world.endpoint["smtp"]["host"], int(world.endpoint["smtp"]["port"])
    with smtplib.SMTP_SSL(host, port, context=context, timeout=30) as client:
        client.ehlo()
        assert "OAUTHBEARER" in client.esmtp_features["auth"].split()
        exchange = oauthbearer.Exchange(user, host, port, token)
        try:
            return client.auth("OAUTHBEARER", exchange, initial_response_ok=True)
        except smtplib.SMTPAuthenticationError as exc:
            assert exchange.challenged  # RFC 7628: the error challenge came before the failure
            return exc.smtp_code, exc.smtp_error


def _imap_oauthbearer(world: World, token: str) -> str:
    context = ssl.create_default_context(cafile=world.endpoint["ca"])
    host, port = world.endpoint["imap"]["host"], int(world.endpoint["imap"]["port"])
    client = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=30)
    try:
        typ, _ = client.authenticate("OAUTHBEARER", oauthbearer.Exchange(MAILBOX, host, port, token).imap)
        return str(typ)
    except imaplib.IMAP4.error as exc:
        return f"NO {exc}"
    finally:
        client.shutdown()


async def test_forged_foreign_and_revoked_tokens_are_refused_by_the_operator(world: World, cs9: bytes) -> None:
    genuine = await world.login()
    forged = SigningKey.generate().sign({"iss": world.psc.issuer, "sub": "x", "exp": 4_000_000_000,
                                         "sid": next(iter(world.psc.grants)), "jti": "j"})

    assert (await asyncio.to_thread(_smtp_oauthbearer, world, genuine))[0] == 235
    code, text = await asyncio.to_thread(_smtp_oauthbearer, world, forged)
    assert code == 535 and b"5.7.8" in text
    # The genuine token of the mailbox's owner does not open another professional's mailbox.
    assert (await asyncio.to_thread(_smtp_oauthbearer, world, genuine, personal_mailbox(OTHER)))[0] == 535
    assert (await asyncio.to_thread(_imap_oauthbearer, world, forged)).startswith("NO")
    assert "AUTHENTICATIONFAILED" in await asyncio.to_thread(_imap_oauthbearer, world, forged)

    # Through the sender: a refused token leaves nothing at the operator and waits for the professional.
    async def forged_bearer(rpps: str) -> str | None:
        return forged

    settings = settings_from(MssSection(auth="psc"), world.endpoint)
    assert settings is not None
    with pytest.raises(Unavailable) as refused:
        await MssSender(settings, packager(world.pki), FrozenClock(NOW), forged_bearer).send(
            outgoing(cs9, f"mss:{RECIPIENT}"))
    assert refused.value.code == "mss_psc_refused"

    # Revoked at PSC (the professional logged out elsewhere): the still-unexpired token is refused too.
    for grant in world.psc.grants.values():
        grant.revoked = True
    assert (await asyncio.to_thread(_smtp_oauthbearer, world, genuine))[0] == 535
    with pytest.raises(Unavailable) as revoked:
        await world.sender().send(outgoing(cs9, f"mss:{RECIPIENT}"))
    assert revoked.value.code == "mss_psc_refused"
    assert world.operator.store.accepted() == []


def test_a_psc_mailbox_needs_pro_sante_connect(world: World) -> None:
    settings = settings_from(MssSection(auth="psc"), world.endpoint)
    assert settings is not None
    with pytest.raises(Exception, match="psc"):
        MssSender(settings, packager(world.pki), FrozenClock(NOW))


# --- the whole demo agent: the queue waits without a session, sends after the login, never claims success ---

async def _messages(http: aiohttp.ClientSession, agent: Any) -> list[dict[str, Any]]:
    _, found = await call(http, agent, "GET", "/_sandbox/mss/messages")
    return list(found["items"])


async def test_the_queue_waits_for_the_professional_then_sends_from_the_personal_mailbox(
        start_agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    agent = await start_agent(demo=DemoOptions(cards="none", tray=False), dmp={"reference_dir": str(reference_dir)},
                              mss={"auth": "psc"})
    body = order_body(cda=demo_cda(reference_dir), ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=DEMO.rpps, delay=0,
                      dmp=False, mss=[RECIPIENT])
    status, order = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 201, order

    detail = await _wait_state(http, agent, order["id"], "waiting_card")
    assert "Pro Santé Connect" in detail["deliveries"][0]["last_error"]["message"], detail
    assert await _messages(http, agent) == []

    await _login(http, agent)  # the professional connects with e-CPS: the order leaves from their mailbox
    await _wait_state(http, agent, order["id"], "sent")
    sent = await _messages(http, agent)
    assert [m["mail_from"] for m in sent] == [MAILBOX] and sent[0]["rcpt_tos"] == [RECIPIENT]


async def test_a_token_the_operator_refuses_leaves_the_order_waiting_not_sent(
        start_agent: Any, http: aiohttp.ClientSession, reference_dir: Path) -> None:
    agent = await start_agent(demo=DemoOptions(cards="none", tray=False), dmp={"reference_dir": str(reference_dir)},
                              mss={"auth": "psc"})
    await _login(http, agent)
    status, revoked = await call(http, agent, "POST", "/_sandbox/psc/revoke", {"rpps": DEMO.rpps})
    assert status == 200 and revoked["revoked"] == 1  # logged out of PSC elsewhere; the agent's token is not expired
    body = order_body(cda=demo_cda(reference_dir), ins=PAT_TROIS.ins, oid=PAT_TROIS.oid, rpps=DEMO.rpps, delay=0,
                      dmp=False, mss=[RECIPIENT])
    status, order = await call(http, agent, "POST", "/v1/orders", body)
    assert status == 201, order

    detail = await _wait_state(http, agent, order["id"], "waiting_card")
    assert detail["deliveries"][0]["last_error"]["code"] in ("mss_psc_refused", "psc_session_expired"), detail
    assert detail["deliveries"][0]["state"] != "sent"
    assert await _messages(http, agent) == []


def test_the_oauthbearer_message_is_rfc_7628() -> None:
    message = oauthbearer.initial_response("a,b=c@x.fr", "smtp.x.fr", 587, "tok")
    assert message == "n,a=a=2Cb=3Dc@x.fr,\x01host=smtp.x.fr\x01port=587\x01auth=Bearer tok\x01\x01"
    assert base64.b64encode(message.encode())  # ASCII, as smtplib and imaplib encode it
