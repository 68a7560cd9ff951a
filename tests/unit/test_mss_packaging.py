"""MSSanté packaging: the XDM zip read back and checked, METADATA.XML valid against the XDS schemas and equal to
what the DMP receives, the MIME message and its X-MSS headers, DSN/MDN parsing, the masking rules."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
import zipfile
from dataclasses import replace
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from lxml import etree

from agent.dmp.models import SubmissionRequest, Visibility
from agent.dmp.submission import SubmissionDefaults, build_submission
from agent.errors import InvalidInput
from agent.mss import acks, mime, rules, xdm
from agent.softkey import SoftwareSigner
from relais_sandbox.pki import SandboxPki
from tests.support.mail import nested_report

NOW = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)
INS, OID = "221042545611404", "1.2.250.1.213.1.4.10"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> SoftwareSigner:
    pki = SandboxPki(tmp_path_factory.mktemp("pki"))
    creds = pki.issue("doctor", common_name="Dr Test", client=True)
    return SoftwareSigner.from_files(creds.cert_path, creds.key_path)


@pytest.fixture(scope="module")
def cs9(reference_dir: Path) -> bytes:
    return (reference_dir / "ci-sis/ExemplesCDA/CSE-CS9_2025.01.xml").read_bytes()


def _submission(cda: bytes, signer: SoftwareSigner, visibility: Visibility | None = None
                ) -> tuple[etree._Element, list[xdm.XdmDocument]]:
    counter = itertools.count(1)
    req = SubmissionRequest(cda=cda, submission_set_unique_id="1.2.250.1.999.1.42", ins=INS, ins_oid=OID,
                            document_unique_id="1.2.250.1.213.1.1.1.5.2.12345.2",
                            visibility=visibility or Visibility())
    built = build_submission(req, signer, SubmissionDefaults(source_id="1.2.250.1.999"), NOW,
                             lambda: f"00000000-0000-4000-8000-{next(counter):012d}")
    sor = built.body[0]
    docs = [xdm.XdmDocument(req.document_unique_id, cda),
            xdm.XdmDocument(built.signature_unique_id, built.attachments[f"{built.signature_entry_uuid[9:]}@relais"])]
    return sor, docs


def _schema(reference_dir: Path) -> etree.XMLSchema:
    xml_xsd = reference_dir / "ci-sis/infrastructure/cda/schema/xml.xsd"

    class Local(etree.Resolver):  # type: ignore[misc]
        def resolve(self, system_url: str, public_id: str, context: object) -> object:
            if system_url.endswith("xml.xsd"):
                return self.resolve_filename(str(xml_xsd), context)
            return None

    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(Local())
    doc = etree.parse(str(reference_dir / "ihe/schema/ebRS/lcm.xsd"), parser)
    return etree.XMLSchema(doc)


def test_xdm_reads_back_with_hashes_and_valid_metadata(cs9: bytes, signer: SoftwareSigner,
                                                        reference_dir: Path) -> None:
    sor, docs = _submission(cs9, signer)
    package = xdm.build_xdm(sor, docs, sender="dr.test@medecin.mssante.fr", recipient="dr.x@medecin.mssante.fr")

    back = xdm.read_xdm(package)
    assert set(back.names) >= {"INDEX.HTM", "README.TXT", "IHE_XDM/SUBSET01/METADATA.XML",
                               "IHE_XDM/SUBSET01/DOC00001.XML", "IHE_XDM/SUBSET01/DOC00002.XML"}
    assert all(xdm.is_iso9660(n) for n in back.names)
    assert back.submission_set_unique_id == "1.2.250.1.999.1.42"
    cda_entry = next(e for e in back.entries if e.unique_id == "1.2.250.1.213.1.1.1.5.2.12345.2")
    assert cda_entry.content == cs9
    assert cda_entry.sha1 == hashlib.sha1(cs9).hexdigest()  # noqa: S324
    # The metadata are the DMP's: same ids, codes and patient, plus the XDM URI slot; and schema-valid.
    metadata = etree.fromstring(back.metadata)
    _schema(reference_dir).assertValid(metadata)
    dmp_ids = sorted(e.get("id") for e in sor.iter(f"{{{xdm.RIM}}}ExternalIdentifier"))
    assert sorted(e.get("id") for e in metadata.iter(f"{{{xdm.RIM}}}ExternalIdentifier")) == dmp_ids
    uris = [s.findtext(f".//{{{xdm.RIM}}}Value") for s in metadata.iter(f"{{{xdm.RIM}}}Slot")
            if s.get("name") == "URI"]
    assert sorted(uris) == ["DOC00001.XML", "DOC00002.XML"]
    recipients = [s.findtext(f".//{{{xdm.RIM}}}Value") for s in metadata.iter(f"{{{xdm.RIM}}}Slot")
                  if s.get("name") == "intendedRecipient"]
    assert recipients == ["||^^Internet^dr.x@medecin.mssante.fr"]


def test_tampered_xdm_is_refused(cs9: bytes, signer: SoftwareSigner) -> None:
    sor, docs = _submission(cs9, signer)
    package = xdm.build_xdm(sor, docs, sender="dr.test@medecin.mssante.fr")
    src = zipfile.ZipFile(io.BytesIO(package))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("DOC00001.XML"):
                data = data.replace(b"CERT_DECL", b"CERT_DECX")
            dst.writestr(info, data)
    with pytest.raises(InvalidInput, match="SHA-1"):
        xdm.read_xdm(out.getvalue())
    with pytest.raises(InvalidInput, match="zip"):
        xdm.read_xdm(b"not a zip")


def test_metadata_must_describe_exactly_the_documents(cs9: bytes, signer: SoftwareSigner) -> None:
    sor, docs = _submission(cs9, signer)
    with pytest.raises(InvalidInput):
        xdm.build_xdm(sor, docs[:1], sender="a@b.mssante.fr")


def _message(xdm_bytes: bytes, *, recipient: str, patient: bool) -> bytes:
    return mime.to_bytes(mime.build_message(mime.MssMessage(
        sender="dr.test@medecin.mssante.fr", recipient=recipient,
        message_id=mime.message_id("ord-1", f"mss:{recipient}", "relais.mssante.fr"), date=NOW,
        subject="Certificat de santé", body=mime.default_body(to_patient=patient, titles=["CS9"], sender_name="Dr"),
        xdm=xdm_bytes, cda_codes=[mime.CdaCode("CERT_DECL", "Certificat, déclaration", "1.2.250.1.213.1.1.4.12")],
        qualified_ins=True, product_reference="DEV935997", no_reply=patient)))


def test_mime_carries_the_xdm_and_the_mss_headers(cs9: bytes, signer: SoftwareSigner) -> None:
    sor, docs = _submission(cs9, signer)
    package = xdm.build_xdm(sor, docs, sender="dr.test@medecin.mssante.fr")
    raw = _message(package, recipient=f"{INS}@patient.mssante.fr", patient=True)
    msg = message_from_bytes(raw, policy=policy.default)
    # Référentiel #2 ECO.2.4.1-3: the bare CDA code, O/N for a qualified INS in the XDM, the product reference.
    assert msg.get_all("X-MSS-CODECDA") == ["CERT_DECL"]
    assert msg["X-MSS-INS"] == "O"
    assert msg["X-MSS-NIL"] == "DEV935997"
    # The patient's mailbox address is the INS (To:): the only header allowed to carry it.
    assert all(INS not in str(v) for k, v in msg.items() if k != "To"), "the INS matricule leaked into a header"
    assert msg["X-MSS-MES"] == "FIN"
    assert msg["Disposition-Notification-To"] == "dr.test@medecin.mssante.fr"
    attachments = list(msg.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["IHE_XDM.ZIP"]
    assert xdm.read_xdm(attachments[0].get_content()).entries[0].content == cs9
    body = msg.get_body(("plain",))
    assert body is not None and "Mon espace santé" in body.get_content()
    professional = message_from_bytes(_message(package, recipient="dr.x@medecin.mssante.fr", patient=False),
                                      policy=policy.default)
    assert professional["X-MSS-MES"] is None


def test_message_id_is_fixed_by_order_and_destination() -> None:
    a = mime.message_id("ord-1", "mss:dr.x@medecin.mssante.fr", "relais.mssante.fr")
    assert a == mime.message_id("ord-1", "mss:dr.x@medecin.mssante.fr", "relais.mssante.fr")
    assert a != mime.message_id("ord-1", "patient_mss", "relais.mssante.fr")
    assert a.startswith("<ord-1.") and "dr.x" not in a


def test_header_injection_is_impossible() -> None:
    with pytest.raises(ValueError):
        mime.build_message(mime.MssMessage(sender="a@b.fr", recipient="c@d.fr\r\nBcc: e@f.fr", message_id="<x@y>",
                                           date=NOW, subject="s", body="b", xdm=b"", cda_codes=[],
                                           product_reference="DEV935997"))


def test_eco_2_4_without_xdm_only_the_product_reference() -> None:
    """ECO.2.4.1/2: X-MSS-CODECDA and X-MSS-INS describe the XDM and are absent without one; ECO.2.4.3: X-MSS-NIL is
    on every message, and a message without it cannot be built."""
    plain = mime.MssMessage(sender="a@b.mssante.fr", recipient="c@d.mssante.fr", message_id="<x@y>", date=NOW,
                            subject="s", body="b", xdm=b"", cda_codes=[mime.CdaCode("11488-4", "CR", "2.16")],
                            qualified_ins=True, product_reference="DEV935997")
    msg = mime.build_message(plain)
    assert msg["X-MSS-NIL"] == "DEV935997"
    assert msg["X-MSS-CODECDA"] is None and msg["X-MSS-INS"] is None
    assert not list(msg.iter_attachments())
    with pytest.raises(ValueError):
        mime.build_message(replace(plain, product_reference=""))


def test_dsn_and_mdn_name_the_original_message() -> None:
    original = _message(b"PK", recipient="dr.x@medecin.mssante.fr", patient=False)
    msgid = message_from_bytes(original, policy=policy.default)["Message-ID"]
    dsn = acks.parse_ack(acks.build_dsn(original, recipient="dr.x@medecin.mssante.fr", delivered=True,
                                        reporting_mta="mss.sandbox", date=NOW))
    assert [(a.kind, a.outcome, a.original_message_id, a.status) for a in dsn] == [
        (acks.AckKind.DSN, acks.AckOutcome.DELIVERED, msgid, "2.0.0")]
    failed = acks.parse_ack(acks.build_dsn(original, recipient="dr.x@medecin.mssante.fr", delivered=False,
                                           reporting_mta="mss.sandbox", date=NOW))
    assert failed[0].outcome is acks.AckOutcome.ERROR and failed[0].status == "5.1.1"
    mdn = acks.parse_ack(acks.build_mdn(original, reader="dr.x@medecin.mssante.fr", date=NOW))
    assert [(a.kind, a.outcome, a.original_message_id) for a in mdn] == [
        (acks.AckKind.MDN, acks.AckOutcome.READ, msgid)]
    assert acks.parse_ack(original) == []
    # An operator that returns no headers: the envelope id (our Message-ID, xtext, without brackets) names it.
    bare = acks.build_dsn(original, recipient="dr.x@medecin.mssante.fr", delivered=True, reporting_mta="m", date=NOW)
    head, _, _ = bare.rpartition(b"Content-Type: text/rfc822-headers")
    envid = msgid.strip("<>").replace("+", "+2B")
    bare = head.replace(f"Original-Envelope-Id: {msgid}".encode(), f"Original-Envelope-Id: {envid}".encode())
    assert [a.original_message_id for a in acks.parse_ack(bare)] == [msgid]


FLAGS = rules.MaskFlags
PATIENT_INS = "279035121518989"  # a test INS whose key checks (the CS9 example's does not)


@pytest.mark.parametrize(("flags", "to_ps", "to_patient"), [
    (FLAGS(), True, True),
    (FLAGS(invisible_to_patient=True), True, False),
    (FLAGS(masked_to_ps=True), False, True),
    (FLAGS(masked_to_ps=True, invisible_to_patient=True), False, False),
])
def test_masking_rules(flags: rules.MaskFlags, to_ps: bool, to_patient: bool) -> None:
    ps = ["dr.x@medecin.mssante.fr"]
    if to_ps:
        assert [r.address for r in rules.plan_recipients(ps, to_patient=False, ins=PATIENT_INS, flags=flags)] == ps
    else:
        with pytest.raises(InvalidInput) as err:
            rules.plan_recipients(ps, to_patient=False, ins=PATIENT_INS, flags=flags)
        assert "masqué aux professionnels" in err.value.errors[0].message
    if to_patient:
        planned = rules.plan_recipients([], to_patient=True, ins=PATIENT_INS, flags=flags)
        assert [(r.address, r.destination) for r in planned] == [(f"{PATIENT_INS}@patient.mssante.fr", "patient_mss")]
    else:
        with pytest.raises(InvalidInput) as err:
            rules.plan_recipients([], to_patient=True, ins=PATIENT_INS, flags=flags)
        assert "invisible pour le patient" in err.value.errors[0].message


def test_patient_address_spelled_out_is_still_the_patient() -> None:
    with pytest.raises(InvalidInput):
        rules.plan_recipients([f"{PATIENT_INS}@PATIENT.MSSANTE.FR"], to_patient=False, ins=PATIENT_INS,
                              flags=FLAGS(invisible_to_patient=True))


def test_bad_addresses_and_duplicates() -> None:
    with pytest.raises(InvalidInput) as err:
        rules.plan_recipients(["Dr X <x@y.fr>", "a@b.fr\r\nBcc: c@d.fr"], to_patient=False, ins=PATIENT_INS,
                              flags=FLAGS())
    assert [e.field for e in err.value.errors] == ["destinations.mss[0].address", "destinations.mss[1].address"]
    planned = rules.plan_recipients(["a@b.mssante.fr", "a@b.mssante.fr"], to_patient=False, ins=PATIENT_INS,
                                    flags=FLAGS())
    assert len(planned) == 1
    assert rules.recipient_for("patient_mss", PATIENT_INS).kind is rules.RecipientKind.PATIENT
    assert rules.recipient_for("mss:a@b.mssante.fr", PATIENT_INS).address == "a@b.mssante.fr"


def test_a_deeply_nested_or_huge_report_is_refused_without_parsing() -> None:
    shallow = acks.parse_ack(nested_report(3))
    assert [(a.outcome, a.original_message_id) for a in shallow] == [(acks.AckOutcome.ERROR,
                                                                      "<orig.1@demo.mssante.fr>")]
    with pytest.raises(acks.MalformedReport, match="nested parts"):
        acks.parse_ack(nested_report(2000))
    with pytest.raises(acks.MalformedReport, match="over"):
        acks.parse_ack(nested_report(2) + b" " * acks.MAX_REPORT_BYTES)
    # Folded headers are counted too.
    with pytest.raises(acks.MalformedReport, match="nested parts"):
        acks.parse_ack(nested_report(2000, fold=True))
