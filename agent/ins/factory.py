"""Building the INSi client from the ``[insi]`` section, or from a sandbox endpoint description (demo, tests).

The composition root calls ``build_insi_client`` and puts the result on ``services.insi``; None means INSi is not
configured (the routes answer 503, naming the missing key). Under the sandbox, the simulator's endpoints and test
CA replace the configured ones, and the billing number and AMO specialty default to the CNDA test values when the
configuration leaves them empty (the CNDA INSi test requests carry ``identifiantFacturation`` 123456789).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.clock import Clock
from agent.config import InsiSection
from agent.ins.client import InsiClient, InsiSettings
from agent.ins.soap import LpsInfo
from agent.softkey import SoftwareSigner

SANDBOX_BILLING_ID = "123456789"  # the CNDA INSi test requests' identifiantFacturation
SANDBOX_AMO_SPECIALTY = "01"  # médecine générale


def settings_from_section(section: InsiSection, *, version: str, instance: str) -> InsiSettings:
    return InsiSettings(
        url=section.url, cpx_url=section.cpx_url, ca_file=section.ca_file, client_cert=section.client_cert,
        client_key=section.client_key, connect_timeout=section.connect_timeout_seconds,
        timeout=section.timeout_seconds, allow_test_oids=section.allow_test_oids, structure_id=section.structure_id,
        billing_id=section.billing_id, amo_specialty=section.amo_specialty, activity_sector=section.activity_sector,
        cps_name_qualifier=section.cps_name_qualifier, structure_name_qualifier=section.structure_name_qualifier,
        transient_retries=section.transient_retries,
        lps=LpsInfo(idam=section.idam, name="relais", version=version, instance=section.instance_id or instance))


def build_insi_client(section: InsiSection, clock: Clock, *, version: str, instance: str,
                      endpoint: Mapping[str, Any] | None = None,
                      on_connectivity: Callable[[bool], object] | None = None) -> InsiClient | None:
    """The INSi client for this configuration; ``endpoint``: the sandbox simulator's description, if any."""
    settings = settings_from_section(section, version=version, instance=instance)
    if endpoint:
        settings = replace(settings, url=endpoint["url"], cpx_url=endpoint.get("cpx_url", ""),
                           ca_file=endpoint["ca_file"], client_cert=endpoint["client_cert"],
                           client_key=endpoint["client_key"], allow_test_oids=True,
                           billing_id=settings.billing_id or SANDBOX_BILLING_ID,
                           amo_specialty=settings.amo_specialty or SANDBOX_AMO_SPECIALTY)
    if not (settings.url or settings.cpx_url):
        return None
    structure_signer = None
    if section.structure_cert:
        structure_signer = SoftwareSigner.from_files(Path(section.structure_cert),
                                                    Path(section.structure_key or section.structure_cert))
    return InsiClient(settings, clock, structure_signer=structure_signer, on_connectivity=on_connectivity)
