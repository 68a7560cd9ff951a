"""Building a DmpClient from configuration or from a sandbox endpoint description (demo, tests, bench)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.clock import Clock
from agent.dmp.client import DmpClient, DmpEndpoints, ProfessionalSource
from agent.dmp.soap import MAX_ANSWER_BYTES
from agent.dmp.submission import SubmissionDefaults
from agent.dmp.transport import TlsSettings, Transport
from agent.dmp.valuesets import ValueSets
from agent.dmp.vihf import VihfSettings
from agent.domain.signing import Signer
from agent.softkey import SoftwareSigner

SANDBOX_SOURCE_ID = "1.2.250.1.213.1.1.9.99"


def client_for_sandbox(endpoint: Mapping[str, Any], clock: Clock, professional: ProfessionalSource, *,
                       document_signer: Callable[[], Signer] | None = None, reference_dir: Path | None = None,
                       structure_id: str = "1750803447", total_timeout: float = 30.0,
                       max_answer_bytes: int = MAX_ANSWER_BYTES) -> DmpClient:
    """A client of the sandbox DMP: TLS and VIHF credentials from the simulator's endpoint description."""
    tls = TlsSettings(Path(endpoint["ca_file"]), Path(endpoint["client_cert"]), Path(endpoint["client_key"]))
    structure = SoftwareSigner.from_files(Path(endpoint["structure_cert"]), Path(endpoint["structure_key"]))
    demo_signer = SoftwareSigner.from_files(Path(endpoint["signer_cert"]), Path(endpoint["signer_key"]))
    return DmpClient(
        DmpEndpoints(endpoint["url"]), Transport(tls, total_timeout=total_timeout, max_answer_bytes=max_answer_bytes),
        clock=clock,
        vihf=VihfSettings(structure_id=structure_id), structure_signer=structure,
        defaults=SubmissionDefaults(source_id=SANDBOX_SOURCE_ID), professional=professional,
        document_signer=document_signer or (lambda: demo_signer),
        value_sets=ValueSets.load(reference_dir) if reference_dir is not None else None,
    )
