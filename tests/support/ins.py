"""Obtaining an INS the way the DMP requires it (CNDA EX_GEN-1530): through INSi.

Only an INS INSi returned on this workstation reaches the DMP (``agent.store.ins_provenance``). Tests against a
demo agent obtain it from the INSi simulator, exactly as the LGC would (``obtain_ins``: a search by traits of one
of the simulator's test identities). Tests of the queue alone, or of an agent without INSi, with made-up INS,
record what the INSi routes record on a CR 00 (``record_insi_answer``): the row that says "INSi gave this INS".
"""

from __future__ import annotations

from typing import Any

import aiohttp

from agent.store.db import Database
from agent.store.ins_provenance import InsProvenance, record_insi


def traits_search(person: Any) -> dict[str, Any]:
    """The ``POST /v1/ins/search`` body that finds one of the INSi simulator's test identities."""
    return {"source": "traits", "traits": {"birth_name": person.birth_name, "given_names": list(person.given_names),
                                           "sex": person.sex, "birth_date": person.birth_date}}


async def obtain_ins(http: aiohttp.ClientSession, agent: Any, person: Any) -> dict[str, Any]:
    """The LGC's INSi search by traits on a running agent (the simulator answers); the INS it returns may then
    reach the DMP."""
    async with http.post(agent.url + "/v1/ins/search", json=traits_search(person), headers=agent.headers()) as r:
        body = await r.json()
    assert r.status == 200 and body["result"] == "found", body
    assert body["ins"]["value"] == person.ins, body
    return dict(body)


async def record_insi_answer(db: Database, ins: str, oid: str, *, operation: str = "search_traits") -> None:
    """What the INSi routes record when INSi answers CR 00 with this INS (for tests without INSi)."""
    row = InsProvenance(ins=ins, oid=oid, obtained_at="2026-12-07T09:00:00+00:00", operation=operation, rpps=None,
                        structure=None, workstation="test")
    await db.write(lambda conn: record_insi(conn, row))


async def insi_gave_order_patient(agent: Any, body: dict[str, Any] | None) -> None:
    """Before ``POST /v1/orders`` on an in-process agent without INSi: record that INSi gave the order's INS, as
    the LGC's earlier search would have (the DMP takes no other INS)."""
    patient = (body or {}).get("patient")
    if isinstance(patient, dict) and isinstance(patient.get("ins"), str) and isinstance(patient.get("oid"), str):
        await record_insi_answer(agent.services.db, patient["ins"], patient["oid"])
