"""DmpClient: the DMP transactions as async methods (TD0.2, TD2.1, TD3.1, TD3.2, TD3.3a-d).

Interface other parts code against (the queue, the API routes); the XML lives in ``metadata``, ``soap``,
``vihf``
and the sockets in ``transport``. Failures: ``TransientRemoteError`` (network, 5xx, timeout),
``PermanentRemoteError`` (registry errors, client SOAP faults), ``DuplicateUniqueId`` for
XDSDuplicateUniqueIdInRegistry (the queue treats it as delivered).
"""

from __future__ import annotations

from agent.dmp.models import (
    DocumentEntry,
    PatientDmpStatus,
    Professional,
    RetrievedDocument,
    SearchCriteria,
    SubmissionRequest,
    SubmissionResult,
    Visibility,
)


class DmpClient:
    async def submit(self, req: SubmissionRequest) -> SubmissionResult:
        raise NotImplementedError

    async def find_by_unique_id(self, ins: str, oid: str, unique_id: str) -> list[DocumentEntry]:
        raise NotImplementedError

    async def search(self, ins: str, oid: str, criteria: SearchCriteria,
                     professional: Professional | None = None) -> list[DocumentEntry]:
        raise NotImplementedError

    async def retrieve(self, ins: str, oid: str, entry: DocumentEntry,
                       professional: Professional | None = None) -> RetrievedDocument:
        raise NotImplementedError

    async def set_visibility(self, ins: str, oid: str, entry_uuid: str, visibility: Visibility,
                             professional: Professional | None = None) -> DocumentEntry:
        raise NotImplementedError

    async def delete(self, ins: str, oid: str, entry_uuid: str,
                     professional: Professional | None = None) -> None:
        raise NotImplementedError

    async def archive(self, ins: str, oid: str, entry_uuid: str,
                      professional: Professional | None = None) -> DocumentEntry:
        raise NotImplementedError

    async def td02(self, ins: str, oid: str, professional: Professional | None = None) -> PatientDmpStatus:
        raise NotImplementedError
