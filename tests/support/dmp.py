"""The DMP simulator over real mutual TLS with a client speaking to it: shared by the DMP integration tests."""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from agent.clock import SystemClock
from agent.dmp import soap
from agent.dmp.client import DmpClient
from agent.dmp.factory import client_for_sandbox
from agent.dmp.models import Professional, SubmissionRequest
from agent.softkey import SoftwareSigner
from relais_sandbox.dmp import DmpSimulator, reidentify
from relais_sandbox.host import SandboxContext
from relais_sandbox.identities import PAT_TROIS
from relais_sandbox.pki import SandboxPki
from tests.support.documents import written_by

DR_DEMO = Professional(rpps="10001234567", family_name="DEMO", given_name="Alice")
DR_OTHER = Professional(rpps="10009999999", family_name="AUTRE", given_name="Bruno")


@dataclass
class Sandbox:
    ctx: SandboxContext
    sim: DmpSimulator
    endpoint: dict[str, Any]
    client: DmpClient
    reference: Path
    doctor: SoftwareSigner

    def cda(self, person: Any = PAT_TROIS, example: str = "VAC-NOTE_2023.01.xml") -> tuple[bytes, str]:
        data = (self.reference / "ci-sis" / "ExemplesCDA" / example).read_bytes()
        new_id = f"2.25.{uuid.uuid4().int}"
        cda, uid = reidentify(data, person.ins, person.oid, person.birth_name, person.first_given_name,
                              person.sex, person.birth_date, new_id)
        # The demo doctor is the author (so that TD3.3c may delete it).
        return written_by(cda, DR_DEMO.national_id), uid

    def request(self, cda: bytes, uid: str, person: Any = PAT_TROIS, **kw: Any) -> SubmissionRequest:
        return SubmissionRequest(cda=cda, submission_set_unique_id=f"2.25.{uuid.uuid4().int}", document_unique_id=uid,
                                 ins=person.ins, ins_oid=person.oid, signer=self.doctor, **kw)


@contextlib.asynccontextmanager
async def running_sandbox(tmp_path: Path, reference_dir: Path, *,
                          total_timeout: float = 5.0) -> AsyncIterator[Sandbox]:
    ctx = SandboxContext(tmp_path / "sandbox", SandboxPki(tmp_path / "sandbox"))
    sim = DmpSimulator(reference_dir, seed=False)
    endpoint = await sim.start(ctx)
    doctor_creds = ctx.pki.issue("doctor", common_name="Dr DEMO Alice")
    doctor = SoftwareSigner.from_files(doctor_creds.cert_path, doctor_creds.key_path)
    client = client_for_sandbox(endpoint, SystemClock(), lambda: DR_DEMO, reference_dir=reference_dir,
                                total_timeout=total_timeout)
    yield Sandbox(ctx, sim, endpoint, client, reference_dir, doctor)
    await client.close()
    await sim.stop()


def logged_envelope(call: dict[str, str]) -> etree._Element:
    """The SOAP envelope of one request of the simulator's call log (plain or MTOM)."""
    raw = base64.b64decode(call["request_base64"])
    return etree.fromstring(soap.read_mtom(raw, call["content_type"]).root)
