"""What a failed send means for the doctor: a plain French explanation per error class, and whether trying again
can help (the dashboard and the tray show "Réessayer" only then; "Retirer" always).

Pure: keyed by the stable error codes the transports and gateways raise (``agent/dmp``, ``agent/mss``, the
executor), never by their messages, which stay available as the technical detail.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Explanation:
    kind: str  # the error class: refused, patient, identity, configuration, unreachable, content, unknown
    text: str  # what happened and what to do, for the doctor
    retry_helps: bool


_REFUSED = Explanation(
    "refused", "Le DMP a refusé ce document tel qu'il est (contenu ou informations jointes non conformes). Le "
    "renvoyer à l'identique échouera de nouveau : corrigez-le dans votre logiciel et envoyez-en une nouvelle "
    "version, puis retirez celui-ci. Si cela se répète, signalez-le à l'éditeur de votre logiciel.", False)
_NO_DMP = Explanation(
    "patient", "Le patient n'a pas de DMP ouvert, ou il en a bloqué l'accès pour vous. Le document ne peut pas y "
    "être déposé ; vérifiez avec le patient (Mon espace santé) avant de réessayer.", True)
_IDENTITY = Explanation(
    "identity", "L'identité du patient n'est pas qualifiée : le document ne peut pas partir ainsi. Qualifiez "
    "l'identité (INS) dans votre logiciel et envoyez une nouvelle version, puis retirez celui-ci.", False)
_MASKED = Explanation(
    "refused", "Ce destinataire ne peut pas recevoir ce document (masqué ou non autorisé). Retirez l'envoi ; "
    "choisissez un autre destinataire si besoin.", False)
_RECIPIENT = Explanation(
    "refused", "La messagerie du destinataire a refusé le message (adresse inconnue ou boîte fermée). Vérifiez "
    "l'adresse MSSanté dans votre logiciel, envoyez de nouveau vers la bonne adresse et retirez celui-ci.", False)
_REPLACED_GONE = Explanation(
    "refused", "La version à remplacer n'est plus dans le DMP du patient (supprimée, ou déjà remplacée). Le "
    "remplacement ne peut pas se faire ; envoyez ce document comme un nouveau document, puis retirez celui-ci.",
    False)
_HIDDEN_AGAIN = Explanation(
    "refused", "Ce remplacement rendrait invisible au patient (ou à ses représentants légaux) un document qu'il voit "
    "déjà, ce que le DMP interdit. Envoyez une nouvelle version sans le rendre invisible, puis retirez celui-ci.",
    False)
_CONFIGURATION = Explanation(
    "configuration", "La connexion sécurisée au service a été refusée (certificat ou authentification du "
    "poste). Prévenez votre prestataire informatique ; une fois corrigé, réessayez.", True)
_UNREACHABLE = Explanation(
    "unreachable", "Le service n'a pas répondu malgré plusieurs essais (panne ou réseau). Le document n'est pas "
    "perdu : réessayez plus tard.", True)
_CONTENT = Explanation(
    "content", "Le contenu de ce document n'est plus disponible sur ce poste (durée de conservation écoulée ou "
    "clé changée). Envoyez-le de nouveau depuis votre logiciel et retirez celui-ci.", False)
_UNKNOWN = Explanation(
    "unknown", "L'envoi a échoué pour une raison imprévue (détail technique ci-dessous). Vous pouvez réessayer ; "
    "si l'échec se répète, retirez-le et prévenez votre prestataire.", True)

_BY_CODE: dict[str, Explanation] = {
    "dmp_registry_error": _REFUSED, "dmp_soap_fault": _REFUSED, "dmp_refused": _REFUSED,
    "dmp_http_error": _REFUSED, "invalid_input": _REFUSED, "cda_invalid": _REFUSED, "dmp_metadata_invalid": _REFUSED,
    "dmp_nia_forbidden": _IDENTITY, "mss_ins_not_qualified": _IDENTITY, "ins_not_qualified": _IDENTITY,
    "dmp_not_available": _NO_DMP, "dmp_replaced_not_found": _REPLACED_GONE,
    "already_visible": _HIDDEN_AGAIN,
    "mss_masked": _MASKED, "mss_refused": _RECIPIENT, "mss_bounced": _RECIPIENT,
    "dmp_tls_error": _CONFIGURATION, "mss_tls_refused": _CONFIGURATION, "mss_tls_unavailable": _CONFIGURATION,
    "mss_auth_refused": _CONFIGURATION,
    "dmp_unreachable": _UNREACHABLE, "dmp_timeout": _UNREACHABLE, "remote_timeout": _UNREACHABLE,
    "dmp_server_error": _UNREACHABLE, "dmp_server_fault": _UNREACHABLE, "dmp_busy": _UNREACHABLE,
    "mss_temporary": _UNREACHABLE, "dmp_answer_invalid": _UNREACHABLE, "mss_outcome_unknown": _UNREACHABLE,
    "mss_unverifiable": _UNREACHABLE, "service_unreachable": _UNREACHABLE,
    "content_destroyed": _CONTENT, "content_unreadable": _CONTENT,
}


def explain(code: str | None) -> Explanation:
    """The doctor's explanation of a failed delivery's last error code (an unknown code: retrying may help)."""
    return _BY_CODE.get(code or "", _UNKNOWN)
