"""The queue's view of the DMP: ``DeliveryGateway`` (agent.domain.delivery) over ``DmpClient``.

``deliver`` is one ITI-41 of the order's document; ``find`` asks the DMP whether an earlier attempt already stored
it (by its uniqueId, fixed when the order was created). The client's errors pass through unchanged: the transport
already says ``ServiceUnreachable`` (and whether the request may have left), ``TransientRemoteError``,
``PermanentRemoteError`` or ``DuplicateUniqueId``, which is exactly what the queue understands.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.dmp.client import DmpClient
from agent.dmp.models import SubmissionRequest, Visibility
from agent.domain.delivery import DeliveryJob, Lookup, Receipt
from agent.domain.signing import Signer
from agent.xml.cda_header import CdaHeader


class DmpDelivery:
    def __init__(self, client: DmpClient, signer: Callable[[], Signer] | None = None) -> None:
        self._client = client
        self._signer = signer

    async def deliver(self, job: DeliveryJob) -> Receipt:
        request = SubmissionRequest(
            cda=job.cda, submission_set_unique_id=job.lookup.submission_set_unique_id,
            document_unique_id=job.lookup.document_unique_id, ins=job.lookup.ins, ins_oid=job.lookup.ins_oid,
            visibility=Visibility(**job.visibility),
            signer=self._signer() if self._signer is not None else None,
            header=CdaHeader.from_json(job.cda_header) if job.cda_header else None,
        )
        result = await self._client.submit(request)
        return Receipt(result.entry_uuid)

    async def find(self, lookup: Lookup) -> Receipt | None:
        entries = await self._client.find_by_unique_id(lookup.ins, lookup.ins_oid, lookup.document_unique_id)
        return Receipt(entries[0].entry_uuid) if entries else None
