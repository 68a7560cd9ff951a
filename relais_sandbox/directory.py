"""The sandbox Annuaire santé: a small FHIR API (``GET /fhir/Practitioner?name=``) over TLS on loopback, serving
a few test professionals with MSSanté addresses at the sandbox operator. Test data only."""

from __future__ import annotations

import ssl
from typing import Any

from aiohttp import web

from agent.api.spec import RouteTable
from agent.mss.directory import MAILBOX_METADATA
from relais_sandbox.host import FaultState, SandboxContext, fault_middleware

EMAIL_TYPE_EXTENSION = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
TYPE_MESSAGERIE = "https://mos.esante.gouv.fr/NOS/TRE_R256-TypeMessagerie/FHIR/TRE-R256-TypeMessagerie"
# (id, prefix, given, family, rpps, profession, addresses)
PEOPLE = [
    ("p1", "Dr", "Jeanne", "MARTIN", "810000000011", "Médecin", ("jeanne.martin@medecin.demo.mssante.fr",)),
    ("p2", "Dr", "Paul", "MARTINEZ", "810000000029", "Médecin", ("paul.martinez@medecin.demo.mssante.fr",)),
    ("p3", "", "Claire", "DUBOIS", "810000000037", "Sage-femme", ("claire.dubois@sf.demo.mssante.fr",)),
    ("p4", "Dr", "Louis", "BERNARD", "810000000045", "Médecin",
     ("louis.bernard@medecin.demo.mssante.fr", "cabinet.bernard@demo.mssante.fr")),
    ("p5", "", "Inès", "INCONNU", "810000000052", "Médecin", ("inconnu.ines@medecin.demo.mssante.fr",)),
]


def _bundle(name: str) -> dict[str, Any]:
    needle = name.strip().lower()
    entries: list[dict[str, Any]] = []
    for pid, prefix, given, family, rpps, profession, addresses in PEOPLE:
        if needle not in f"{given} {family}".lower() and needle not in f"{family} {given}".lower():
            continue
        entries.append({"resource": {
            "resourceType": "Practitioner", "id": pid,
            "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": rpps}],
            "name": [{"family": family, "given": [given], "prefix": [prefix] if prefix else []}]}})
        entries.append({"resource": {
            "resourceType": "PractitionerRole", "id": f"{pid}-role",
            "practitioner": {"reference": f"Practitioner/{pid}"},
            "code": [{"coding": [{"display": profession}]}],
            "telecom": [{"system": "email", "value": a, "extension": [
                {"url": EMAIL_TYPE_EXTENSION, "valueCoding": {"system": TYPE_MESSAGERIE, "code": "MSSANTE"}},
                {"url": MAILBOX_METADATA, "extension": [
                    {"url": "type", "valueCodeableConcept": {"coding": [{"code": "PER"}]}}]}]}
                for a in addresses]}})
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries) // 2, "entry": entries}


class DirectorySimulator:
    name = "directory"

    def __init__(self) -> None:
        self.faults = FaultState()
        self._runner: web.AppRunner | None = None

    async def start(self, ctx: SandboxContext) -> dict[str, Any]:
        async def practitioners(request: web.Request) -> web.Response:
            return web.json_response(_bundle(request.query.get("name", "")), content_type="application/fhir+json")

        app = web.Application(middlewares=[fault_middleware(self.faults)])
        app.router.add_get("/fhir/Practitioner", practitioners)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        creds = ctx.pki.issue("directory-server", common_name="annuaire.sandbox", server=True)
        context: ssl.SSLContext = creds.server_context()
        site = web.TCPSite(self._runner, ctx.host, 0, ssl_context=context)
        await site.start()
        server = getattr(site, "_server", None)
        port = int(server.sockets[0].getsockname()[1]) if server is not None else 0
        return {"url": f"https://{ctx.host}:{port}/fhir", "ca": str(ctx.pki.ca_path)}

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def control_routes(self, table: RouteTable) -> None:
        return None
