"""The CDA kinds the agent builds, each mapped to its builder.

``BUILDERS[kind](ctx, patient, author, data)`` is what ``CdaService.build_document`` calls. The only module that
knows every builder: it imports them, none of them imports it (nor the service), so the package has no cycle.
Never does any I/O itself.
"""

from __future__ import annotations

from agent.cda import cse, cse8, n1, structured, synthese, vaccination
from agent.cda.context import Builder

BUILDERS: dict[str, Builder] = {
    "n1": n1.build,
    "vaccination_note": vaccination.build,
    "synthese_medicale": synthese.build,
    "cse_cs8": cse8.build,
    "cse_cs9": cse.build_cs9,
    "cse_cs24": cse.build_cs24,
    "mesures_enfant": structured.build,
}
KINDS = tuple(BUILDERS)
