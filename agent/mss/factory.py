"""Building the MSSanté part from the configuration (or from the sandbox operator's endpoint description).

The sender's settings and TLS contexts, the Annuaire santé client, and the XDM packager, whose METADATA.XML comes
from the DMP's own submission builder (same DocumentEntry, SubmissionSet and DSG signature as a DMP feed).
An enabled ``[mss]`` section that lacks what it needs stops the agent at start with the key named.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import ssl
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.clock import Clock
from agent.config import Config, MssSection
from agent.dmp.models import SubmissionRequest, Visibility
from agent.dmp.submission import SubmissionDefaults, build_submission
from agent.dmp.valuesets import ValueSets
from agent.domain.signing import Signer
from agent.errors import ConfigError
from agent.logs import get_logger
from agent.mss import dnssrv, imap, rules, smtp, xdm
from agent.mss.directory import DirectoryClient
from agent.mss.service import Autoconfig, MssSender, MssSettings, Outgoing, Packager, PscBearer
from agent.xml.cda_header import CdaHeader

log = get_logger("mss")


# X-MSS-NIL of the mail the sandbox operator receives under the demo (not a reference the ANS gave).
SANDBOX_PRODUCT_REFERENCE = "RELAIS-SANDBOX"


NO_CA_FILE = ("le fichier des autorités IGC-Santé est obligatoire : l'opérateur MSSanté n'est vérifié que par "
              "IGC-Santé, jamais par le magasin du système (Référentiel MSSanté #2 ECO.1.1.10)")
TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def tls_context_factory(ca_file: str, cert: str, key: str, *, min_version: str = "1.2",
                        max_version: str = "1.2") -> Callable[[], ssl.SSLContext]:
    """TLS for SMTP and IMAP: the server checked against ``ca_file`` alone, never the system store (Référentiel
    #2 ECO.1.1.10 and Ségur proof MSS1: IGC-Santé is the only authority trusted); TLS 1.2 only by default (Ségur
    proof MSS2 as DevBox quotes it; the référentiel's own text is not public, so both bounds are configuration)."""
    if not ca_file:
        raise ConfigError(NO_CA_FILE, key="mss.ca_file")

    def make() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the host name and the chain
        context.load_verify_locations(cafile=ca_file)
        context.minimum_version = TLS_VERSIONS[min_version]
        context.maximum_version = TLS_VERSIONS[max_version]
        if cert:
            context.load_cert_chain(cert, key or cert)
        return context

    return make


def settings_from(section: MssSection, endpoint: Mapping[str, Any] | None) -> MssSettings | None:
    """The sender's settings: the sandbox operator under the demo, else the [mss] section (None when off)."""
    if endpoint:
        psc = section.auth == "psc" and bool(endpoint.get("personal_sender"))
        # Personal mailbox under the demo: the demo doctor's, opened with their PSC token (no client certificate).
        factory = tls_context_factory(endpoint["ca"], "" if psc else endpoint["client_cert"],
                                      "" if psc else endpoint["client_key"])
        sender = str(endpoint["personal_sender"] if psc else endpoint["sender"])
        return MssSettings(psc=psc,
            sender=sender, product_reference=section.product_reference or SANDBOX_PRODUCT_REFERENCE,
            sender_name=section.sender_name or "Cabinet de démonstration Relais",
            smtp=smtp.SmtpSettings(host=endpoint["smtp"]["host"], port=int(endpoint["smtp"]["port"]),
                                   security=endpoint["smtp"].get("security", "tls"), context=factory,
                                   timeout=section.timeout_seconds),
            imap=imap.ImapSettings(host=endpoint["imap"]["host"], port=int(endpoint["imap"]["port"]),
                                   context=factory, username=sender, timeout=section.timeout_seconds,
                                   sent=section.sent_folder),
            patient_no_reply=section.patient_no_reply, read_receipt=section.read_receipt)
    if not section.enabled:
        return None
    check_section(section)
    password = ""
    if section.auth == "password":
        path = Path(section.password_file)
        try:
            password = path.read_text(encoding="utf-8").strip()
            if os.name == "posix" and path.stat().st_mode & 0o077:
                log.warning("mss.password_file est lisible par d'autres comptes : chmod 600 %s", path)
        except OSError as exc:
            raise ConfigError(f"fichier de mot de passe illisible : {exc.strerror}", key="mss.password_file") from exc
    # With "psc" the certificate is presented only when configured (an assumption: the operators' PSC front is not
    # documented publicly as requiring one; agent/mss/oauthbearer.py).
    cert = section.client_cert if section.auth in ("certificate", "psc") else ""
    factory = tls_context_factory(section.ca_file, cert, section.client_key, min_version=section.tls_min_version,
                                  max_version=section.tls_max_version)
    username = section.username if section.auth == "password" else ""
    # No smtp_host: both servers come from the domain's SRV records (RFC 6186), looked up when first needed.
    auto = None if section.smtp_host else Autoconfig(domain=section.sender_address.rsplit("@", 1)[-1],
                                                      resolver=resolver_settings(section))
    return MssSettings(
        psc=section.auth == "psc", sender=section.sender_address, product_reference=section.product_reference,
        sender_name=section.sender_name, message_id_domain=section.message_id_domain,
        smtp=smtp.SmtpSettings(host=section.smtp_host, port=section.smtp_port, security=section.smtp_security,
                               context=factory, username=username, password=password,
                               timeout=section.timeout_seconds),
        imap=imap.ImapSettings(host=section.imap_host, port=section.imap_port, context=factory,
                               security=section.imap_security,
                               username=section.username or section.sender_address, password=password,
                               timeout=section.timeout_seconds, sent=section.sent_folder)
        if section.imap_host or auto is not None else None,
        patient_no_reply=section.patient_no_reply, read_receipt=section.read_receipt, autoconfig=auto)


def resolver_settings(section: MssSection) -> dnssrv.ResolverSettings:
    return dnssrv.ResolverSettings(nameserver=section.dns_nameserver, port=section.dns_port,
                                   timeout=min(section.timeout_seconds, 10.0))


def check_section(section: MssSection) -> None:
    """What an enabled [mss] section needs, each missing key named (the agent refuses to start without it, and
    ``relais doctor`` says why)."""
    needed = {"mss.sender_address": section.sender_address}  # no smtp_host: DNS SRV autoconfiguration
    if section.auth == "certificate":
        needed["mss.client_cert"] = section.client_cert
    elif section.auth == "password":
        needed["mss.username"] = section.username
        needed["mss.password_file"] = section.password_file
    needed["mss.product_reference"] = section.product_reference  # X-MSS-NIL on every message
    for key, value in needed.items():
        if not value:
            raise ConfigError("valeur obligatoire quand mss.enabled = true", key=key)
    if not section.ca_file:  # IGC-Santé only: no fallback on the system store
        raise ConfigError(NO_CA_FILE, key="mss.ca_file")
    if "@" not in section.sender_address:
        raise ConfigError("adresse MSSanté attendue (nom@domaine.mssante.fr)", key="mss.sender_address")
    if TLS_VERSIONS[section.tls_min_version] > TLS_VERSIONS[section.tls_max_version]:
        raise ConfigError("tls_min_version est au-dessus de tls_max_version", key="mss.tls_min_version")
    if section.dns_nameserver:
        try:
            ipaddress.ip_address(section.dns_nameserver)
        except ValueError as exc:
            raise ConfigError("adresse IP du serveur DNS attendue", key="mss.dns_nameserver") from exc
    if section.cse_address and not rules.is_valid_address(section.cse_address):
        raise ConfigError("adresse MSSanté attendue (nom@domaine.mssante.fr)", key="mss.cse_address")
    for key, port in (("mss.smtp_port", section.smtp_port), ("mss.imap_port", section.imap_port),
                      ("mss.dns_port", section.dns_port)):
        if not 0 < port < 65536:
            raise ConfigError("port hors de la plage 1-65535", key=key)
    if section.timeout_seconds <= 0 or section.ack_poll_seconds <= 0:
        raise ConfigError("une valeur strictement positive est attendue", key="mss.timeout_seconds")


def dmp_packager(*, now: Callable[[], datetime], defaults: SubmissionDefaults, signer: Callable[[], Signer],
                 value_sets: ValueSets | None = None,
                 new_uuid: Callable[[], str] = lambda: str(uuid.uuid4())) -> Packager:
    """The XDM's METADATA.XML from the DMP's own builder (same DocumentEntry, SubmissionSet, DSG signature)."""

    async def package(out: Outgoing) -> tuple[Any, list[xdm.XdmDocument]]:
        document_signer = signer()
        request = SubmissionRequest(
            cda=out.cda, submission_set_unique_id=out.submission_set_unique_id,
            document_unique_id=out.document_unique_id, ins=out.ins, ins_oid=out.ins_oid,
            visibility=Visibility(**{k: bool(v) for k, v in out.visibility.items()}), signer=document_signer,
            header=CdaHeader.from_json(dict(out.cda_header)) if out.cda_header else None)
        built = await asyncio.to_thread(build_submission, request, document_signer, defaults, now(), new_uuid,
                                        value_sets)
        signature = next(v for v in built.attachments.values() if v != out.cda)
        return built.body[0], [xdm.XdmDocument(out.document_unique_id, out.cda),
                               xdm.XdmDocument(built.signature_unique_id, signature)]

    return package


def directory_for(config: Config, endpoint: Mapping[str, Any] | None = None) -> DirectoryClient | None:
    """The Annuaire santé client: the sandbox directory under the demo, else ``mss.directory_url`` (None: off)."""
    section = config.mss
    if endpoint:
        return DirectoryClient(endpoint["url"], ca_file=endpoint["ca"])
    if not section.directory_url:
        return None
    key = Path(section.directory_api_key_file).read_text(encoding="utf-8").strip() \
        if section.directory_api_key_file else ""
    # The Annuaire santé API is a public web service: checked against the system store, not mss.ca_file (which
    # holds IGC-Santé alone, for the operator).
    return DirectoryClient(section.directory_url, api_key=key)


def sender_for(config: Config, endpoint: Mapping[str, Any] | None, packager: Packager,
               clock: Clock, bearer: PscBearer | None = None) -> MssSender | None:
    """The sender when ``[mss]`` is enabled or the sandbox operator is there; None when MSSanté is off."""
    settings = settings_from(config.mss, endpoint)
    if settings is None:
        return None
    if not config.dmp.source_id and not endpoint and not config.dmp.url:
        raise ConfigError("l'OID de cette installation est nécessaire aux métadonnées XDS des envois MSSanté",
                          key="dmp.source_id", path=config.source)
    return MssSender(settings, packager, clock, bearer)
