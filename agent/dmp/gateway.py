"""The queue's view of the DMP: ``DeliveryGateway`` (agent.domain.delivery) over ``DmpClient``.

``deliver`` is a TD0.2, for a replacement (TD2.1b, RPLC) the previous version's look-up in ObjectRef mode, then one
ITI-41 of the order's document (the CNDA's MEMENTO: every feed is preceded by the
test d'existence; never send to an absent or closed DMP); ``find`` asks the DMP whether an earlier attempt already
stored it, by its uniqueId fixed when the order was created, with GetDocuments in ObjectRef mode (a professional
who only feeds has no consultation right, [CDT] RG_3130). The client's errors pass through unchanged: the transport
already says ``ServiceUnreachable`` (and whether the request may have left), ``TransientRemoteError``,
``PermanentRemoteError`` or ``DuplicateUniqueId``, which is exactly what the queue understands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.dmp.client import DmpClient
from agent.dmp.models import Access, Professional, SubmissionRequest, Visibility
from agent.dmp.soap import THRESHOLD_EXCEEDED
from agent.dmp.vihf import MODE_DIRECT
from agent.domain.delivery import DeliveryJob, Lookup, Receipt, sent_by_delegate
from agent.domain.signing import Signer
from agent.errors import NotFound, PermanentRemoteError, RefusedBeforeSending, RemoteError
from agent.logs import get_logger
from agent.xml.cda_header import CdaHeader

log = get_logger("dmp")


def sender_of(sender: dict[str, Any]) -> Professional | None:
    """The order's sender as the VIHF names them ([CDT] 2.1-900); None: the client's professional (the CPS)."""
    if not sender.get("id"):
        return None
    return Professional(rpps=str(sender["id"]), family_name=str(sender.get("family", "")),
                        given_name=str(sender.get("given", "")),
                        profession=str(sender.get("profession_code") or "10"),
                        specialty=str(sender.get("specialty_code") or ""))


def sends_without_card(client: DmpClient, sender: dict[str, Any], author_rpps: str) -> bool:
    """A DMP send no CPS takes part in: a delegate's ([CDT] 2.1-900) in indirect authentication, where the
    structure's certificate authenticates (VIHF naming the delegate) and signs."""
    return client.vihf.mode != MODE_DIRECT and sent_by_delegate(sender, author_rpps)


class DmpDelivery:
    def __init__(self, client: DmpClient, signer: Callable[[], Signer] | None = None) -> None:
        self._client = client
        self._signer = signer

    async def deliver(self, job: DeliveryJob) -> Receipt:
        signer = self._signer_for(job)  # no card, no call
        status = await self._client.td02(job.lookup.ins, job.lookup.ins_oid, sender_of(job.sender))
        if not (status.exists and status.active) or status.blocked:
            reason = ("le patient n'a pas de DMP" if not status.exists else
                      "le DMP du patient est fermé" if not status.active else
                      "le patient a bloqué l'accès de ce professionnel à son DMP")
            raise PermanentRemoteError(f"Document non envoyé au DMP : {reason}.", service="dmp",
                                       code="dmp_not_available")
        replaced = await self._replaced(job) if job.replaces else None
        request = SubmissionRequest(
            cda=job.cda, submission_set_unique_id=job.lookup.submission_set_unique_id,
            document_unique_id=job.lookup.document_unique_id, ins=job.lookup.ins, ins_oid=job.lookup.ins_oid,
            visibility=Visibility(**job.visibility),
            signer=signer,
            header=CdaHeader.from_json(job.cda_header) if job.cda_header else None,
            access=Access(secret=job.secret), replaces_entry_uuid=replaced,
            professional=sender_of(job.sender),
        )
        result = await self._client.submit(request)
        return Receipt(result.entry_uuid)

    def _signer_for(self, job: DeliveryJob) -> Signer | None:
        """Who signs the document (DSG): the author's CPS (or what ``signer`` chooses); for a document a delegate
        sends in indirect authentication ([CDT] 2.1-900: a secretary, the author absent), the structure's
        certificate, the one that authenticates the request too: no CPS takes part (as DRIMbox signs)."""
        if sends_without_card(self._client, job.sender, job.author_rpps):
            return self._client.structure_signer
        return self._signer() if self._signer is not None else None

    async def _replaced(self, job: DeliveryJob) -> str:
        """TD2.1b: the previous version's entryUUID, looked up in ObjectRef mode just before the send ([CDT]
        2.1-140, EX_3.1-1090: never a FindDocuments; a professional who only feeds has no consultation right)."""
        try:
            return await self._client.look_up(job.lookup.ins, job.lookup.ins_oid, job.replaces,
                                              professional=sender_of(job.sender))
        except NotFound as exc:
            # Nothing of this document left: the queue need not ask the DMP whether it holds it.
            raise RefusedBeforeSending("Document non envoyé au DMP : la version à remplacer est introuvable dans le "
                                       "DMP du patient (supprimée, ou d'un autre patient).", service="dmp",
                                       code="dmp_replaced_not_found") from exc

    async def find(self, lookup: Lookup) -> Receipt | None:
        """EX_3.1-2035: a look-up the DMP refuses with DMPAccessDeniedByExcededThreshold (this professional asked
        too much) must not stop the feed: it counts as "not found", and the send goes on; the registry still
        refuses a second copy by its uniqueId, fixed when the order was created (XDSDuplicateUniqueIdInRegistry,
        which the queue takes as delivered)."""
        try:
            uuids = await self._client.entry_uuids(lookup.ins, lookup.ins_oid, [lookup.document_unique_id])
        except RemoteError as exc:
            if exc.extra.get("dmp_code") != THRESHOLD_EXCEEDED:
                raise
            log.warning("DMP : recherche avant envoi refusée (%s), l'envoi continue (EX_3.1-2035)", THRESHOLD_EXCEEDED)
            return None
        return Receipt(uuids[0]) if uuids else None
