"""A hostile or broken DMP over a real TLS socket: the client ends each case with a clear error, memory bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.clock import SystemClock
from agent.dmp.client import DmpClient
from agent.dmp.factory import client_for_sandbox
from agent.dmp.models import Professional, SearchCriteria
from agent.errors import PermanentRemoteError, TransientRemoteError
from relais_sandbox.identities import PAT_TROIS
from relais_sandbox.pki import SandboxPki

ENV = b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>%s</soap:Body></soap:Envelope>'
Answer = Callable[[], web.Response]


@pytest.fixture
async def hostile(tmp_path: Path) -> AsyncIterator[tuple[DmpClient, dict[str, Answer]]]:
    pki = SandboxPki(tmp_path)
    server = pki.issue("server", common_name="dmp", server=True)
    creds = {name: pki.issue(name, common_name=name, client=True) for name in ("client", "structure", "author")}
    behaviour: dict[str, Answer] = {}

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return behaviour["answer"]()

    app = web.Application()
    app.router.add_post("/registry", handle)
    app.router.add_post("/repository", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server.server_context(pki.ca_path))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    endpoint: dict[str, Any] = {
        "url": f"https://127.0.0.1:{port}", "ca_file": str(pki.ca_path),
        "client_cert": str(creds["client"].cert_path), "client_key": str(creds["client"].key_path),
        "structure_cert": str(creds["structure"].cert_path), "structure_key": str(creds["structure"].key_path),
        "signer_cert": str(creds["author"].cert_path), "signer_key": str(creds["author"].key_path)}
    client = client_for_sandbox(endpoint, SystemClock(), lambda: Professional("10001234567", "DEMO", "Alice"),
                                total_timeout=5.0, max_answer_bytes=1 << 20)
    yield client, behaviour
    await client.close()
    await runner.cleanup()


def xml(body: bytes, status: int = 200) -> Answer:
    return lambda: web.Response(status=status, body=body, content_type="application/soap+xml")


async def search(client: DmpClient) -> Any:
    return await client.search(PAT_TROIS.ins, PAT_TROIS.oid, SearchCriteria())


async def test_doctype_in_the_answer(hostile: tuple[DmpClient, dict[str, Answer]]) -> None:
    client, behaviour = hostile
    behaviour["answer"] = xml(b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + ENV % b"<r>&e;</r>")
    with pytest.raises(TransientRemoteError) as info:  # unreadable, not a refusal: retried at a capped rate
        await search(client)
    assert info.value.code == "dmp_answer_invalid" and "DOCTYPE" in info.value.message


async def test_oversized_answer(hostile: tuple[DmpClient, dict[str, Answer]]) -> None:
    client, behaviour = hostile
    behaviour["answer"] = xml(ENV % (b"<r>" + b"x" * (2 << 20) + b"</r>"))
    with pytest.raises(PermanentRemoteError) as info:
        await search(client)
    assert info.value.code == "dmp_answer_too_large"


async def test_sender_fault_is_permanent_and_keeps_the_dmp_message(
        hostile: tuple[DmpClient, dict[str, Answer]]) -> None:
    client, behaviour = hostile
    fault = (b'<soap:Fault><soap:Code><soap:Value>soap:Sender</soap:Value></soap:Code><soap:Reason>'
             b'<soap:Text xml:lang="fr">VIHF : Identifiant_Structure inconnu</soap:Text></soap:Reason></soap:Fault>')
    behaviour["answer"] = xml(ENV % fault, status=400)
    with pytest.raises(PermanentRemoteError) as info:
        await search(client)
    assert "Identifiant_Structure inconnu" in info.value.message


async def test_receiver_fault_and_bare_5xx_are_transient(hostile: tuple[DmpClient, dict[str, Answer]]) -> None:
    client, behaviour = hostile
    fault = (b'<soap:Fault><soap:Code><soap:Value>soap:Receiver</soap:Value></soap:Code><soap:Reason>'
             b'<soap:Text xml:lang="fr">Base indisponible</soap:Text></soap:Reason></soap:Fault>')
    behaviour["answer"] = xml(ENV % fault, status=500)
    with pytest.raises(TransientRemoteError):
        await search(client)
    behaviour["answer"] = lambda: web.Response(status=503, text="maintenance")
    with pytest.raises(TransientRemoteError):
        await search(client)


async def test_registry_error_keeps_its_code(hostile: tuple[DmpClient, dict[str, Answer]]) -> None:
    client, behaviour = hostile
    body = (b'<query:AdhocQueryResponse xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" '
            b'xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" '
            b'status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"><rs:RegistryErrorList>'
            b'<rs:RegistryError errorCode="XDSRegistryError" codeContext="DMP ferme" '
            b'severity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"/></rs:RegistryErrorList>'
            b'</query:AdhocQueryResponse>')
    behaviour["answer"] = xml(ENV % body)
    with pytest.raises(PermanentRemoteError) as info:
        await search(client)
    assert info.value.extra["registry_errors"] == ["XDSRegistryError"] and "DMP ferme" in info.value.message


async def test_a_retrieved_document_that_does_not_match_its_hash_is_refused(
        hostile: tuple[DmpClient, dict[str, Answer]]) -> None:
    import hashlib

    from lxml import etree

    from agent.dmp import soap
    from agent.dmp.models import DocumentEntry
    from agent.dmp.soap import ACTION_ITI43, ACTIONS_RESPONSE, MtomMessage, response_envelope, write_mtom

    client, behaviour = hostile
    xdsb = "urn:ihe:iti:xds-b:2007"
    resp = etree.Element(f"{{{xdsb}}}RetrieveDocumentSetResponse", nsmap={"xdsb": xdsb})
    resp.append(soap.registry_response())
    dr = etree.SubElement(resp, f"{{{xdsb}}}DocumentResponse")
    etree.SubElement(dr, f"{{{xdsb}}}RepositoryUniqueId").text = "1.2.3"
    etree.SubElement(dr, f"{{{xdsb}}}DocumentUniqueId").text = "1.2.3.4"
    etree.SubElement(dr, f"{{{xdsb}}}mimeType").text = "text/xml"
    soap.xop_include(etree.SubElement(dr, f"{{{xdsb}}}Document"), "doc@x")
    xml = etree.tostring(response_envelope(ACTIONS_RESPONSE[ACTION_ITI43], resp))
    body, ctype = write_mtom(MtomMessage(xml, {"doc@x": b"<ClinicalDocument>tampered</ClinicalDocument>"}),
                             ACTIONS_RESPONSE[ACTION_ITI43])
    behaviour["answer"] = lambda: web.Response(body=body, headers={"Content-Type": ctype})
    entry = DocumentEntry(entry_uuid="urn:uuid:x", unique_id="1.2.3.4", repository_unique_id="1.2.3",
                          hash=hashlib.sha1(b"<ClinicalDocument>original</ClinicalDocument>").hexdigest())  # noqa: S324
    with pytest.raises(PermanentRemoteError) as info:
        await client.retrieve(PAT_TROIS.ins, PAT_TROIS.oid, entry)
    assert info.value.code == "dmp_hash_mismatch"
