"""What Relais answers to each EX_/REC_ declaration of the CNDA's book, for the publisher to complete.

Each answer names the route or the configuration that implements the requirement in Relais; the publisher adds
what depends on its own screens (the LGC's). A declaration Relais does not cover is "à compléter par l'éditeur".
The answers are French: they go into the publisher's file for the CNDA.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.homologation.book import Declaration

TO_COMPLETE = "à compléter par l'éditeur"

# code -> (answer, implemented by: route or configuration)
SUPPORT: dict[str, tuple[str, str]] = {
    "EX_GEN-1180": ("Relais publie son nom et sa version (LPS_Nom, LPS_Version du VIHF) et le numéro "
                    "d'homologation ; l'écran « À propos » du LGC les reprend.",
                    "GET /v1/status (version), [dmp] homologation_id"),
    "EX_GEN-1350": ("Chaque instance a son OID racine ; identifiants de lot et de document mondialement uniques "
                    "(OID racine de l'instance, UUID 2.25).", "[dmp] source_id"),
    "EX_GEN-1360": ("Les jeux de valeurs sont lus dans le kit de référence configuré ; une mise à jour du kit les "
                    "met à jour sans nouvelle version de Relais.", "[dmp] reference_dir, [cda] kit_dir"),
    "EX_GEN-1530": ("Seul un INS obtenu par le téléservice INSi (provenance enregistrée avec son OID) atteint le "
                    "DMP ; un NIR lu sur la carte Vitale ou un NIA n'y accède jamais.",
                    "POST /v1/ins/* (INSi), provenance agent/store/ins_provenance.py"),
    "EX_GEN-1450": ("Le certificat de structure (authentification TLS et signature du VIHF) est configuré sur le "
                    "poste ou le serveur de la structure.", "[dmp] client_cert, client_key, structure_cert"),
    "EX_0.X-1031": ("Relais envoie l'extension TLS SNI à chaque connexion (client TLS Python/OpenSSL).",
                    "agent/dmp/transport.py"),
    "EX_0.X-1070": ("Le certificat serveur du DMP est vérifié contre les autorités configurées (chaîne, nom, "
                    "validité) ; TLS 1.2 minimum.", "[dmp] ca_file"),
    "EX_0.X-1055": ("Les erreurs temporaires du DMP (délai, 5xx, injoignable) sont rejouées par la file d'envoi "
                    "avec un délai croissant ; les erreurs définitives sont affichées au médecin.",
                    "[queue] max_attempts, backoff_base_seconds"),
    "EX_0.2-1100": ("L'autorisation d'accès n'est jamais positionnée par défaut : elle est saisie à la demande du "
                    "professionnel et tracée.", "PUT /v1/patients/{ins}/consent"),
    "EX_0.2-1040": ("Le mode bris de glace vaut pour la seule requête qui le demande, il est tracé et annoncé ; il "
                    "n'est jamais conservé.", "GET /v1/dmp/{ins}/documents?mode=bris_de_glace, traces"),
    "EX_0.2-1050": ("L'accès en bris de glace est annoncé par un événement (dmp.access) que le LGC affiche.",
                    "GET /v1/events, GET /v1/dmp/{ins}/access"),
    "EX_0.3-1030": ("Relais n'appelle jamais la TD0.3 de lui-même (aucun déclenchement automatique après une "
                    "TD0.2 ou une lecture de carte Vitale).", "agent/dmp/client.py (td03, sur demande seulement)"),
    "EX_GEN-1060": ("Les envois automatiques passent par une file avec un délai d'annulation ; le professionnel "
                    "peut annuler ou suspendre l'envoi avant son départ.",
                    "POST /v1/orders, POST /v1/orders/{id}/cancel, POST /v1/queue/pause, [queue] delay_seconds"),
    "EX_2.1-1071": ("Chaque CDA est validé (schémas et schématrons du CI-SIS) avant d'entrer dans la file ; un "
                    "document non conforme est refusé.", "POST /v1/orders, [cda] kit_dir"),
    "EX_2.1-1130": ("Lot de soumission et document portent des identifiants uniques générés par Relais (OID de "
                    "l'instance).", "[dmp] source_id"),
    "EX_2.1-1140": ("L'auteur du document est repris de l'en-tête CDA dans les métadonnées XDS (author).",
                    "agent/dmp/submission.py"),
    "EX_2.1-1260": ("L'alimentation utilise MTOM/XOP (SOAP 1.2) comme la requête exemple du GIE.",
                    "agent/dmp/soap.py"),
    "EX_2.1-1115": ("Le contenu des documents est contrôlé (CDA validé) et chiffré au repos dans la file ; il est "
                    "effacé après la durée de conservation.", "[store] retention_days"),
    "EX_3.2-1010": ("Le contenu d'un document n'est téléchargé qu'à la demande (lien par document), jamais de "
                    "façon systématique.", "GET /v1/dmp/{ins}/documents/{entry_uuid}/content"),
    "EX_3.3-1050": ("La suppression est une action explicite du professionnel, tracée ; le LGC demande la "
                    "confirmation.", "DELETE /v1/dmp/{ins}/documents/{entry_uuid}"),
    "EX_3.3-1060": ("La suppression est refusée sans autorisation d'accès au DMP du patient (règles d'accès "
                    "vérifiées avant l'appel).", "DELETE /v1/dmp/{ins}/documents/{entry_uuid}"),
}


@dataclass(frozen=True, slots=True)
class Answer:
    declaration: Declaration
    answer: str
    implemented_by: str

    @property
    def supported(self) -> bool:
        return self.answer != TO_COMPLETE


def answers(declarations: list[Declaration]) -> list[Answer]:
    out = []
    for d in declarations:
        answer, where = SUPPORT.get(d.code.strip(), (TO_COMPLETE, ""))
        out.append(Answer(d, answer, where))
    return out
