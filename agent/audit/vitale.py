"""When a carte Vitale is inserted, tell the doctor at once whether each beneficiary's DMP can be consulted and
how many documents are new since the patient's last consultation (requirement of seed 000, SC.DMP/UX.13).

The result goes out on the bus as ``dmp.access``: per beneficiary (by index) ``can_read``, the unmet DICA
conditions (code, French message, help) and ``new_documents``, with the insured person's result repeated at the
top level; never a NIR or a name. The NIR read from the card is never used as an INS to reach the DMP (CNDA
EX_GEN-1530): only when INSi already gave that NIR as the insured person's INS on this workstation (quality "00",
``agent.store.ins_provenance``) is the DMP asked, with the OID INSi gave; otherwise, and for a child or a spouse
on the card, the INS comes from INSi, which the LGC asks, so the entry says ``ins_unknown`` and no DMP call is
made. The INS qualification is what the LGC last declared
for that INS (``identity_status`` on ``GET /v1/dmp/{ins}/access``), never assumed.

A CPS inserted makes the CONF.21 notice announce itself (``notice.due``) when it is due for its holder.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from agent.audit.access import DicaService
from agent.domain.ins import key_is_valid
from agent.domain.policy import Actor
from agent.errors import RelaisError
from agent.events import EventBus
from agent.lifecycle import Lifecycle, cancel_and_wait
from agent.logs import get_logger

log = get_logger("audit")

INSURED = "00"
INS_UNKNOWN = {"code": "ins_unknown",
               "message": "L'INS de ce bénéficiaire est à obtenir par le téléservice INSi avant d'accéder au DMP.",
               "help": "/v1/ins/search"}

# What the watcher needs of the cards service: the CPS holder's actor and the Vitale beneficiaries
# (objects with ``index``, ``nir``, ``quality``).
ActorSource = Callable[[], Actor]
BeneficiarySource = Callable[[], list[Any]]
InsiOid = Callable[[str], Awaitable[str | None]]  # the OID INSi gave with an INS here, None: never obtained


class VitaleWatch(Lifecycle):
    def __init__(self, bus: EventBus, dica: DicaService, actor: ActorSource, beneficiaries: BeneficiarySource,
                 *, insi_oid: InsiOid) -> None:
        self._bus = bus
        self._dica = dica
        self._actor = actor
        self._beneficiaries = beneficiaries
        self._insi_oid = insi_oid
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        subscription = self._bus.subscribe()
        self._task = asyncio.get_running_loop().create_task(self._run(subscription), name="relais-vitale-dica")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self, subscription: Any) -> None:
        try:
            while True:
                event = await subscription.get()
                if event is None or event.type not in ("card.inserted", "cps.login"):
                    continue
                try:
                    if event.type == "cps.login":
                        # The PIN makes the DMP callable in the professional's name: a carte Vitale already in
                        # the reader gets its DICA now.
                        if self._vitale_present():
                            await self.on_vitale()
                    elif event.data.get("card") == "cps" and event.data.get("rpps"):
                        # CONF.21: the notice is announced as soon as its professional's CPS comes in.
                        await self._dica.rights.notices.due_for(str(event.data["rpps"]))
                    elif event.data.get("card") == "vitale":
                        await self.on_vitale()
                except RelaisError as error:  # a card pulled meanwhile, a DMP down: the next insertion retries
                    log.info("DICA à l'insertion de la carte Vitale impossible : %s", error.code)
        finally:
            subscription.close()

    def _vitale_present(self) -> bool:
        try:
            return bool(self._beneficiaries())
        except RelaisError:  # no carte Vitale in the readers
            return False

    async def on_vitale(self) -> list[dict[str, Any]]:
        actor = self._actor()
        results: list[dict[str, Any]] = []
        for beneficiary in self._beneficiaries():
            index = int(beneficiary.index)
            nir = str(getattr(beneficiary, "nir", "") or "")
            oid = (await self._insi_oid(nir) if str(getattr(beneficiary, "quality", "")) == INSURED
                   and key_is_valid(nir) else None)
            if oid is None:
                results.append({"beneficiary_index": index, "can_read": False, "reasons": [INS_UNKNOWN],
                                "new_documents": None})
                continue
            access = await self._dica.evaluate(nir, oid, self._dica.declared_status(nir), actor, count_new=True)
            results.append({"beneficiary_index": index, "can_read": access.status.can_read,
                            "reasons": [{"code": r.code, "message": r.message, "help": r.help}
                                        for r in access.status.reasons],
                            "new_documents": access.new_documents})
        # The insured person's result also at the top, for a tray that shows one line.
        summary = next((r for r in results if r["reasons"] != [INS_UNKNOWN]), None) or {
            "can_read": False, "reasons": [INS_UNKNOWN], "new_documents": None}
        self._bus.publish("dmp.access", can_read=summary["can_read"], reasons=summary["reasons"],
                          new_documents=summary["new_documents"], beneficiaries=results)
        return results
