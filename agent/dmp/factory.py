"""Building a DmpClient from configuration or from a sandbox endpoint description (demo, tests, bench)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.clock import Clock
from agent.config import DmpSection
from agent.dmp.client import DmpClient, DmpEndpoints, ProfessionalSource
from agent.dmp.soap import MAX_ANSWER_BYTES
from agent.dmp.submission import CABINET, SubmissionDefaults
from agent.dmp.transport import TlsSettings, Transport
from agent.dmp.valuesets import ValueSets
from agent.dmp.vihf import VihfSettings
from agent.domain.signing import Signer
from agent.errors import ConfigError
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


def client_from_section(section: DmpSection, clock: Clock, professional: ProfessionalSource,
                        document_signer: Callable[[], Signer], *, version: str,
                        on_connectivity: Callable[[bool], None] | None = None,
                        source: str = "") -> DmpClient | None:
    """A client of the DMP the ``[dmp]`` section names (None without a URL): the agent's, and `relais homologation
    run` against the CNDA's test platform (``[homologation] platform = "configured"``)."""
    if not section.url:
        return None
    missing = [k for k in ("ca_file", "client_cert", "client_key", "structure_cert", "structure_id", "source_id")
               if not getattr(section, k)]
    if missing:
        raise ConfigError(f"clés requises avec [dmp] url : {', '.join(missing)}", key=f"dmp.{missing[0]}",
                          path=source)
    code, _, scheme = section.sector.partition("^")
    tls = TlsSettings(Path(section.ca_file), Path(section.client_cert), Path(section.client_key))
    return DmpClient(
        DmpEndpoints(section.url),
        Transport(tls, connect_timeout=section.connect_timeout_seconds, total_timeout=section.timeout_seconds),
        clock=clock,
        vihf=VihfSettings(structure_id=section.structure_id, sector=section.sector, lps_version=version,
                          lps_homologation=section.homologation_id, mode=section.vihf_mode,
                          version=section.vihf_version, purpose_bris_de_glace=section.purpose_bris_de_glace,
                          purpose_centre15=section.purpose_centre15,
                          reason_attribute=section.vihf_reason_attribute,
                          pharmacist_role_scheme=section.pharmacist_role_scheme),
        structure_signer=SoftwareSigner.from_files(Path(section.structure_cert),
                                                  Path(section.structure_key or section.structure_cert)),
        defaults=SubmissionDefaults(source_id=section.source_id,
                                    facility_type=CABINET if code == CABINET.code else
                                    type(CABINET)(code, scheme or CABINET.scheme)),
        professional=professional, document_signer=document_signer,
        value_sets=ValueSets.load(Path(section.reference_dir)) if section.reference_dir else None,
        on_connectivity=on_connectivity, td03_interaction=section.td03_interaction,
        transient_codes=frozenset(section.transient_error_codes))
