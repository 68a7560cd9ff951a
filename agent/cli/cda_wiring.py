"""Wiring of the documents part: the CDA service, its validator on the configured CI-SIS kit, its routes."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from agent.api import cda as cda_api
from agent.api.app import RouteRegistrar
from agent.api.context import Services
from agent.cda.service import CdaService
from agent.cda.vaccines import VaccineTable
from agent.cda.validation import CdaValidator
from agent.cda.valuesets import ValueSets
from agent.logs import get_logger

log = get_logger("cda")


def kit_dir(services: Services) -> Path | None:
    """cda.kit_dir; under the sandbox, $RELAIS_REFERENCE/ci-sis when the key is empty."""
    settings = services.config.cda
    if settings.kit_dir:
        return Path(settings.kit_dir)
    reference = os.environ.get("RELAIS_REFERENCE")
    if services.config.sandbox.enabled and reference and (Path(reference) / "ci-sis").is_dir():
        return Path(reference) / "ci-sis"
    return None


# The demo practice (fictitious identifiers), used only under `relais demo` when [cda] names none.
DEMO_PRACTICE = {"id": "1750803447", "name": "Cabinet médical du Dr MULLER (démonstration)",
                 "address": {"postal_code": "75008", "city": "PARIS"}}


def install_cda(services: Services, registrars: list[RouteRegistrar]) -> CdaService:
    settings = services.config.cda
    kit = kit_dir(services)
    # The sandbox sends only to the simulators: without a kit it keeps accepting (with the warning below).
    allow_unvalidated = settings.allow_unvalidated or (kit is None and services.config.sandbox.enabled)
    validator: CdaValidator | None = None
    if kit is not None:
        cache = Path(settings.cache_dir) if settings.cache_dir else services.config.data_dir / "cache" / "cda"
        validator = CdaValidator(kit, cache)
    else:
        services.warnings.append(
            "Kit CI-SIS non configuré (cda.kit_dir) : " + ("les documents CDA sont envoyés SANS validation "
                                                           "(cda.allow_unvalidated)." if allow_unvalidated
                                                           else "aucun document CDA n'est accepté."))
    vaccines = VaccineTable.load(Path(settings.vaccines_file) if settings.vaccines_file else None)
    organisation = None
    if settings.organisation_id and settings.organisation_name:
        organisation = {"id": settings.organisation_id, "name": settings.organisation_name,
                        "address": {"postal_code": settings.organisation_postal_code,
                                    "city": settings.organisation_city}}
    elif services.config.sandbox.enabled:
        organisation = DEMO_PRACTICE  # the demo doctor's practice, so an LGC can name the author by RPPS alone
    cards = services.cards
    service = CdaService(clock=services.clock, validator=validator, value_sets=ValueSets(kit), vaccines=vaccines,
                         allow_test_oids=services.config.allow_test_oids, allow_unvalidated=allow_unvalidated,
                         organisation=organisation, cps_holder=cards.cps_holder if cards is not None else None)
    services.cda = service

    async def status() -> dict[str, Any]:
        return {"cda": {"validation": validator is not None, "vaccines": len(vaccines),
                        "unvalidated_accepted": validator is None and allow_unvalidated}}

    services.status_providers.append(status)
    registrars.append(cda_api.register)
    if validator is not None and settings.warm_up:
        # A daemon thread: compiling the schematrons takes seconds and must not delay the start or the stop.
        threading.Thread(target=_warm, args=(validator,), name="cda-warm-up", daemon=True).start()
    return service


def _warm(validator: CdaValidator) -> None:
    try:
        validator.warm()
    except Exception as exc:
        log.warning("préparation des schématrons CI-SIS impossible : %s", exc)
