"""Path and query parameters shared by several route modules."""

from __future__ import annotations

from aiohttp import web

from agent.api.context import SERVICES
from agent.domain.ins import OID_INS_NIR, check_ins
from agent.errors import FieldError, InvalidInput


def path_ins(request: web.Request) -> tuple[str, str]:
    """The patient's INS from ``{ins}`` in the path and its OID from ``?oid=`` (INS-NIR by default), checked."""
    ins = request.match_info["ins"].upper()
    oid = request.query.get("oid", OID_INS_NIR)
    problems = check_ins(ins, oid, allow_test_oids=request.app[SERVICES].config.allow_test_oids)
    if problems:
        raise InvalidInput("INS invalide.", errors=[FieldError(f, m) for f, m in problems])
    return ins, oid
