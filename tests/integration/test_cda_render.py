"""Rendering a CDA as HTML for display: every kit example renders, the page is inert whatever the document holds
(script, event handlers, links, foreign elements), and the routes serve an order's document or a posted one; as
PDF, an N1 document's own PDF, any other document's page printed by Chromium (its text read back with
Ghostscript's text device)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lxml import etree, html

from agent.cda.render import embedded_pdf, render_html, render_pdf
from agent.errors import InvalidInput, Unavailable
from tests.support.documents import PDF_BASE64
from tests.support.ins import record_insi_answer

PATIENT = {"ins": "279035121518989", "oid": "1.2.250.1.213.1.4.10", "identity_status": "QUAL",
           "birth_name": "PAT-TROIS", "given_names": ["DOMINIQUE"], "sex": "F", "birth_date": "1979-03-28",
           "birth_place": "51215"}
AUTHOR = {"rpps": "01234567897", "family": "MULLER", "given": "Charles", "civility": "M", "title": "DR",
          "organisation": {"id": "1750803447", "name": "Cabinet médical du Dr MULLER"}}


def examples(reference_dir: Path) -> list[Path]:
    return sorted((reference_dir / "ci-sis" / "ExemplesCDA").glob("*.xml"))


def _inert(page: str) -> None:
    """No script, no event handler, no URL leaving the page, and the page's own CSP."""
    tree = html.document_fromstring(page)
    assert not tree.xpath("//script|//iframe|//object|//embed|//link|//base|//form|//a")
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        for name, value in element.attrib.items():
            assert not name.lower().startswith("on"), (element.tag, name)
            if name in ("src", "href"):
                assert value.startswith("data:image/"), value
    assert tree.xpath("//meta[@http-equiv='Content-Security-Policy']/@content")[0].startswith("default-src 'none'")


def test_every_kit_example_renders_its_title_patient_and_sections(reference_dir: Path) -> None:
    found = examples(reference_dir)
    assert len(found) >= 15
    for path in found:
        source = etree.parse(str(path)).getroot()
        page = render_html(path.read_bytes())
        _inert(page)
        tree = html.document_fromstring(page)
        title = " ".join(source.findtext("{urn:hl7-org:v3}title", "").split())
        assert tree.findtext(".//h1") == title, path.name
        assert "PAT-TROIS" in tree.xpath("string(//dl)") or path.name.startswith("CSE"), path.name
        sections = source.findall(".//{urn:hl7-org:v3}structuredBody/{urn:hl7-org:v3}component")
        assert len(tree.xpath("/html/body/main/section")) == len(sections), path.name


SCRIPTED = b"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:x="urn:evil">
  <title>Titre &lt;script&gt;alert('t')&lt;/script&gt;</title>
  <recordTarget><patientRole><patient><name><family qualifier="BR">&lt;img src=x onerror=alert(1)&gt;</family>
    <given>Eve</given></name></patient></patientRole></recordTarget>
  <component><structuredBody><component><section>
    <title>Section <script>alert('s')</script></title>
    <text>
      <paragraph styleCode="Bold x&quot; onclick=&quot;alert(2)">Avant <script>alert(3)</script>
        apr\xc3\xa8s</paragraph>
      <paragraph>&lt;script&gt;alert(4)&lt;/script&gt;</paragraph>
      <content ID="a" onmouseover="alert(5)">survol</content>
      <linkHtml href="javascript:alert(6)">lien</linkHtml>
      <x:iframe src="https://evil.example/">cadre</x:iframe>
      <table><tr><td colspan="2&quot; onclick=&quot;alert(7)" rowspan="3">cellule</td></tr></table>
      <renderMultiMedia referencedObject="img1"/>
    </text>
  </section></component></structuredBody></component>
</ClinicalDocument>"""


def test_a_document_carrying_scripts_renders_as_inert_text() -> None:
    page = render_html(SCRIPTED)
    _inert(page)
    tree = html.document_fromstring(page)
    assert "<script>alert(4)</script>" in tree.xpath("string(//main)")  # shown, as text
    assert "&lt;script&gt;alert(4)" in page and "alert(3)" in page and "<script>" not in page.lower()
    assert "javascript:alert(6)" in tree.xpath("string(//main)") and not tree.xpath("//@href")
    cell = tree.xpath("//td")[0]
    assert cell.get("rowspan") == "3" and cell.get("colspan") is None
    assert tree.xpath("//p")[0].get("class") == "cda-Bold"
    assert "<img src=x onerror=alert(1)>".upper() in tree.xpath("string(//dl)")


def test_n1_content_is_shown_or_handed_over(reference_dir: Path) -> None:
    n1 = (reference_dir / "ci-sis" / "ExemplesCDA" / "DOC_NON_STRUCTURE_CDA-R2-N1.xml").read_bytes()
    assert embedded_pdf(n1).startswith(b"%PDF")
    assert "Document PDF" in render_html(n1)
    text = n1.split(b"<nonXMLBody")[0] + (
        b'<nonXMLBody><text mediaType="text/plain" representation="B64">'
        + base64.b64encode("Ligne 1\n<b>Ligne 2</b> é".encode())
        + b"</text></nonXMLBody></component></ClinicalDocument>")
    page = render_html(text)
    assert html.document_fromstring(page).findtext(".//pre") == "Ligne 1\n<b>Ligne 2</b> é"
    with pytest.raises(InvalidInput) as refused:
        embedded_pdf(text)
    assert refused.value.code == "render_pdf_unavailable"
    assert render_pdf(n1) == embedded_pdf(n1)  # handed over as it is, not printed


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    """The text of a PDF, as Ghostscript's txtwrite device reads it (a system package of the project)."""
    gs = shutil.which("gs")
    if gs is None:
        pytest.skip("Ghostscript absent : apt-get install ghostscript (scripts/test.sh le fait en root)")
    source = tmp_path / "rendu.pdf"
    source.write_bytes(pdf)
    done = subprocess.run([gs, "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=txtwrite", "-o", "-",
                           str(source)], capture_output=True, timeout=60, check=True)
    return " ".join(done.stdout.decode("utf-8", "replace").split())


def test_a_structured_document_prints_to_a_pdf_with_its_patient_and_sections(reference_dir: Path,
                                                                              tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("Chromium absent : apt-get install chromium (scripts/test.sh le fait en root)")
    example = (reference_dir / "ci-sis" / "ExemplesCDA" / "VAC_2023.01.xml").read_bytes()
    pdf = render_pdf(example)
    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf, tmp_path)
    assert "PAT-TROIS" in text and "DOMINIQUE" in text, text[:300]
    title = " ".join(etree.fromstring(example).findtext("{urn:hl7-org:v3}title", "").split())
    assert title in text


def test_without_chromium_a_pdf_is_refused_in_french(reference_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no browser on it
    example = (reference_dir / "ci-sis" / "ExemplesCDA" / "VAC_2023.01.xml").read_bytes()
    with pytest.raises(Unavailable) as refused:
        render_pdf(example)
    assert refused.value.code == "render_pdf_unavailable" and "Chromium est absent" in refused.value.message


@pytest.fixture
async def agent(start_agent: Callable[..., Any], reference_dir: Path, tmp_path: Path) -> Any:
    return await start_agent(cda={"kit_dir": str(reference_dir / "ci-sis"), "cache_dir": str(tmp_path / "xsl"),
                                  "warm_up": False},
                             queue={"delay_seconds": 3600}, insi={"allow_test_oids": True})


async def test_render_routes_serve_an_order_document_and_a_posted_one(agent: Any, http: aiohttp.ClientSession,
                                                                     reference_dir: Path) -> None:
    await record_insi_answer(agent.services.db, PATIENT["ins"], PATIENT["oid"])  # the DMP takes only INSi's INS
    async with http.post(agent.url + "/v1/orders", headers=agent.headers(), json={
            "patient": PATIENT, "author": AUTHOR, "destinations": {"dmp": True}, "client_ref": "r-1",
            "document": {"pdf_base64": PDF_BASE64, "type_code": "11488-4", "title": "CR de consultation",
                         "service_start": "2026-01-05T10:00:00+01:00"}}) as response:
        assert response.status == 201, await response.text()
        order = (await response.json())["id"]
    async with http.get(agent.url + "/v1/cda/render", params={"order": order}, headers=agent.headers()) as r:
        assert r.status == 200 and r.content_type == "text/html"
        assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
        page = await r.text()
    _inert(page)
    assert "<h1>CR de consultation</h1>" in page and "PAT-TROIS DOMINIQUE" in page
    async with http.get(agent.url + "/v1/cda/render", params={"order": order, "format": "pdf"},
                        headers=agent.headers()) as r:
        assert r.status == 200 and r.content_type == "application/pdf"
        assert (await r.read()).startswith(b"%PDF")
    async with http.get(agent.url + "/v1/cda/render", params={"order": "nope"}, headers=agent.headers()) as r:
        assert r.status == 404
    async with http.get(agent.url + "/v1/cda/render", params={"order": order}) as r:
        assert r.status == 401

    example = (reference_dir / "ci-sis" / "ExemplesCDA" / "VAC_2023.01.xml").read_bytes()
    async with http.post(agent.url + "/v1/cda/render", headers=agent.headers(),
                         json={"cda_base64": base64.b64encode(example).decode()}) as r:
        assert r.status == 200 and "<section>" in await r.text()
    async with http.post(agent.url + "/v1/cda/render", headers=agent.headers(),
                         json={"cda_base64": base64.b64encode(SCRIPTED).decode()}) as r:
        _inert(await r.text())
    async with http.post(agent.url + "/v1/cda/render", headers={**agent.headers(), "Accept": "application/pdf"},
                         json={"cda_base64": base64.b64encode(example).decode()}) as r:
        assert r.status == 200 and r.content_type == "application/pdf", await r.text()
        assert (await r.read()).startswith(b"%PDF-")
    async with http.post(agent.url + "/v1/cda/render?format=docx", headers=agent.headers(),
                         json={"cda_base64": base64.b64encode(example).decode()}) as r:
        assert r.status == 422
    async with http.post(agent.url + "/v1/cda/render", headers=agent.headers(),
                         json={"cda_base64": base64.b64encode(b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>").decode()}
                         ) as r:
        assert r.status == 422
    async with http.get(agent.url + "/v1/openapi.json") as r:
        paths = (await r.json())["paths"]
    assert {"get", "post"} <= set(paths["/v1/cda/render"])
