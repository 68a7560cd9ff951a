"""Configuration: a TOML file read into frozen dataclasses.

Every key has a default, so an empty file (or none) gives a working agent. An unknown section or key, or a value
of the wrong type, stops the start with a ``ConfigError`` naming the key and the file: a typo must never be
silently ignored on a medical workstation. ``config.example.toml`` documents every key; a test keeps the two in
step.

Adding a key: add a field (with its default) to the section's dataclass, and document it in
``config.example.toml``. Adding a section: a new dataclass and a field on ``Config``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import platformdirs

from agent.errors import ConfigError

APP_NAME = "relais"
DEFAULT_PORT = 7463
DEFAULT_PEER_PORT = 7464
ENV_CONFIG = "RELAIS_CONFIG"


@dataclass(frozen=True, kw_only=True)
class AgentSection:
    # Name of this workstation as peers and traces see it; empty means the host name.
    workstation_id: str = ""
    data_dir: str = ""
    log_dir: str = ""
    log_level: Literal["TRAFFIC", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_max_bytes: int = 5_000_000
    log_backups: int = 5


@dataclass(frozen=True, kw_only=True)
class ApiSection:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # When `port` is taken (on a shared Remote Desktop or Citrix server, by another session's agent), the
    # agent takes the first free one of the next `port_search` ports (never the peer port) and says which in
    # its session file; 0: stop with an error instead.
    port_search: int = 32
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = 65_536
    max_upload_bytes: int = 32 * 1024 * 1024
    auth_failure_limit: int = 10
    auth_failure_window_seconds: int = 60
    sse_heartbeat_seconds: float = 15.0
    # Event streams (/v1/events) open at once; one more answers 503 (each holds a queue of up to 1,000 events).
    max_event_streams: int = 32
    # Seconds a connection may stay idle (no request, or a request's headers not finished) before it is closed:
    # idle sockets must not pile up until the file handles run out. No public source: a choice, kept short.
    idle_timeout_seconds: float = 15.0


@dataclass(frozen=True, kw_only=True)
class StoreSection:
    # Where the master key that wraps every document key lives: the OS keyring, a 0600 file in the data
    # directory, or "auto" (keyring when a backend exists, else the file with a warning in /v1/status).
    master_key: Literal["auto", "keyring", "file"] = "auto"
    # Days after which a sent document's content is destroyed (its key erased); the order's metadata stays.
    retention_days: int = 30


@dataclass(frozen=True, kw_only=True)
class SandboxSection:
    # True under `relais demo`: simulators, virtual cards and the /_sandbox routes.
    enabled: bool = False
    # URL of a `relais sandbox` process to use instead of in-process simulators.
    url: str = ""
    state_dir: str = ""


@dataclass(frozen=True, kw_only=True)
class InsiSection:
    # The INSi téléservice (https). Empty: INSi calls are refused (503 insi_unreachable), except under
    # `relais demo`, which uses the sandbox simulator.
    url: str = ""
    # CA bundle that signs the INSi server certificate; empty: the system store.
    ca_file: str = ""
    # TLS client certificate and key (PEM) the INSi server authenticates this workstation with.
    client_cert: str = ""
    client_key: str = ""
    connect_timeout_seconds: float = 5.0
    timeout_seconds: float = 15.0
    # Accept the test (1.2.250.1.213.1.4.10) and demo (.11) INS OIDs in answers: test platforms only.
    allow_test_oids: bool = False
    # The software's CNAM authorisation number (ContexteLPS IDAM) and this installation's identifier.
    idam: str = ""
    instance_id: str = ""
    # The structure (FINESS/SIRET...) and its signing certificate and key (PEM): they sign the INSi
    # assertion when no CPS is logged in. Empty: a logged-in CPS is required.
    structure_id: str = ""
    structure_cert: str = ""
    structure_key: str = ""
    # The CPx endpoint (the CPS signs; TLS without client certificate), e.g.
    # https://qualiflps.services-ps.ameli.fr/lps. Empty: CPS calls go to `url` too. `url` is then the mutual-TLS
    # endpoint of the structure certificate (INSI-AUTO / INSI-MANU), e.g. https://qualiflps-services-ps-tlsm.ameli.fr/lps.
    cpx_url: str = ""
    # The professional's assertion: identifiantFacturation (AM billing number, FINESS or SIRET), codeSpecialiteAMO
    # (mandatory for doctors: calls are refused without it) and secteurActivite.
    billing_id: str = ""
    amo_specialty: str = ""
    activity_sector: str = "SA07"
    # NameQualifier of the assertion's NameID for a CPS and for the structure certificate. No public source gives
    # them (the guide's Pro Santé Connect example uses "PSC"): check them with the CNAM before production.
    cps_name_qualifier: str = "1.2.250.1.71.4.2.1"
    structure_name_qualifier: str = "1.2.250.1.71.4.2.2"
    # A fault the CNAM marks temporary (siram_40...) is retried this many times before answering 503.
    transient_retries: int = 1


@dataclass(frozen=True, kw_only=True)
class DmpSection:
    # Base URL of the DMP web services (https; /repository, /registry, /patients under it). Empty: no DMP
    # client, except under `relais demo`, which uses the sandbox simulator.
    url: str = ""
    # CA bundle that signs the DMP server certificate; empty: the system store.
    ca_file: str = ""
    # TLS client certificate and key (PEM) the DMP authenticates this workstation with.
    client_cert: str = ""
    client_key: str = ""
    connect_timeout_seconds: float = 10.0
    timeout_seconds: float = 60.0
    # VIHF (indirect authentication): the structure's identifier and its signing (cachet) certificate and key.
    structure_id: str = ""
    structure_cert: str = ""
    structure_key: str = ""
    # Secteur_Activite of the VIHF and the healthcareFacilityTypeCode default (JDV_J61 code^OID).
    sector: str = "SA07^1.2.250.1.71.4.2.4"
    # This installation's OID (XDSSubmissionSet.sourceId) and the DMP homologation number of the software.
    source_id: str = ""
    homologation_id: str = ""
    # The ANS reference kit (value sets JDV_J0x/J57/J10 checked before sending); empty: codes not checked.
    reference_dir: str = ""
    # The professional the VIHF names when no CPS is in a reader (demo and tests only; empty: a CPS is needed).
    demo_rpps: str = ""
    demo_family_name: str = ""
    demo_given_name: str = ""
    # VIHF mode: INDIRECTE (the structure certificate signs) or DIRECTE (the professional's CPS signs).
    vihf_mode: Literal["INDIRECTE", "DIRECTE"] = "INDIRECTE"
    # VIHF_Version: the ANS table says 4.0, its example and DRIMbox 3.0; check on the DMP's test platform.
    vihf_version: str = "4.0"
    # PurposeOfUse codes (1.2.250.1.213.1.1.4.248) of bris de glace and centre 15: no public source found.
    purpose_bris_de_glace: str = "BRIS_DE_GLACE"
    purpose_centre15: str = "CENTRE_15"
    # The VIHF attribute carrying the reason of a bris de glace / centre 15 access: no public source names one
    # (empty: the reason is traced locally, not sent).
    vihf_reason_attribute: str = ""
    # The codeSystem OID of TRE_G05 (pharmacist's CNOP sub-section, the VIHF's second role for pharmacists): not
    # in the public sources at hand (empty: no second role for pharmacists).
    pharmacist_role_scheme: str = ""
    # TD0.3's HL7v3 interaction: the GIE integration guide that names it is not public.
    td03_interaction: str = "PRPA_IN201314UV02"
    # The DMP parameter cumul-invisible_patient-masque_ps ([CDT] § 3.1.1): may a document be both masked to
    # professionals and invisible to the patient? Used until the DMP's parameters file (params_url) is read once.
    allow_masked_and_invisible: bool = False
    # The DMP parameter age-majorite: below it a patient is a minor (connexion secrète). Used until the parameters
    # file is read once.
    majority_age: int = 18
    # The DMP parameter fonctions-gestion-mineurs: decide minority before the DMP is accessed (EX_GEN-1550). Used
    # until the parameters file is read once.
    minors_management: bool = True
    # The DMP's parameters file ([FI URL] of the GIE guide; DevBox names https://www.dmp.fr/web/dmp/documents/param-lps):
    # downloaded at start when older than params_refresh_hours, then on that schedule (EX_GEN-1540: at least weekly,
    # so at most 168), HTTPS redirects followed, kept under <data_dir>/cache. Empty: the values above are used.
    params_url: str = ""
    # CA bundle for the file's web server; empty: the system store.
    params_ca_file: str = ""
    params_refresh_hours: float = 24.0
    # After a failed download, the next try.
    params_retry_minutes: float = 30.0
    # The parameters' names in the file (the test book's). The file's structure and the production flag's name
    # are not public (agent/dmp/params.py says what is read): check them against the real file.
    params_name_majority_age: str = "age-majorite"
    params_name_minors_management: str = "fonctions-gestion-mineurs"
    params_name_masked_and_invisible: str = "cumul-invisible_patient-masque_ps"
    params_name_production: str = "production"
    # "Âge minimum" (EX_0.1-1115), the professional's own setting, not the DMP's: under it the connexion secrète is
    # not proposed systematically to a minor (it stays allowed on request). 0: proposed to every minor. Set it
    # only at the professional's request, and ask them again regularly.
    secret_connection_minimum_age: int = 0
    # DMP error codes (registry errors, SOAP fault subcodes, HL7v3 acknowledgement codes) that mean "try again
    # later": the queue retries them and the API answers 503. The GIE's full list is not public.
    transient_error_codes: tuple[str, ...] = ("XDSRegistryBusy", "XDSRepositoryBusy", "XDSRegistryOutOfResources",
                                              "XDSRepositoryOutOfResources", "DMPAccessDeniedByExcededThreshold")
    # Pro Santé Connect mode ("Espace de Confiance API PSC", [CDT] 0.1-190): a DMP token exchanged for the PSC one
    # over mutual TLS with client_cert. None of this is public (agent/dmp/psc.py says what is assumed): the token
    # endpoint (empty: no PSC mode, the DMP needs a CPS), the header and scheme carrying the DMP token, the VIHF's
    # Authentification_Mode and AuthnContextClassRef in this mode.
    psc_token_url: str = ""
    psc_token_header: str = "Authorization"  # noqa: S105 (a header name)
    psc_token_scheme: str = "Bearer"  # noqa: S105
    psc_vihf_mode: str = "DIRECTE"
    psc_authn_context: str = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"
    # Web access to the DMP (Web-PS) by contextual call, TD0.9 (agent/dmp/web.py): the URL paths and parameter names
    # are not public, so these are templates ({ins}, {oid}) of the Web-PS addresses, e.g. under
    # https://wps-cps.dmp.monespacesante.fr/ (test: https://wps-cps.dev1.dmp.gouv.fr). Empty: no web access.
    web_access_dashboard_url: str = ""
    web_access_patient_url: str = ""


@dataclass(frozen=True, kw_only=True)
class PscSection:
    # Pro Santé Connect's issuer (OpenID Connect discovery at <issuer>/.well-known/openid-configuration), e.g.
    # https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet (test platform). Empty: no PSC login, except
    # under `relais demo`, which uses the sandbox's simulated PSC.
    issuer: str = ""
    # This software's client id at PSC, and the file holding its client secret (empty: public client, PKCE only).
    client_id: str = ""
    client_secret_file: str = ""
    # The authorization page to open instead of the discovered one (PSC documents a "wallet" page, e.g.
    # https://wallet.bas.psc.esante.gouv.fr/auth); empty: the discovered authorization_endpoint.
    authorization_endpoint: str = ""
    # CA bundle for PSC's TLS; empty: the system store.
    ca_file: str = ""
    scopes: tuple[str, ...] = ("openid", "scope_all")
    # acr_values sent with the authorization request (PSC: eidas1).
    acr_values: str = "eidas1"
    # The loopback redirect registered at PSC: http://127.0.0.1:<redirect_port><redirect_path> (0: a free port).
    redirect_port: int = 0
    redirect_path: str = "/psc/callback"
    # How long a login started with POST /v1/psc/login waits for PSC's redirect.
    login_timeout_seconds: float = 300.0
    timeout_seconds: float = 20.0


@dataclass(frozen=True, kw_only=True)
class QueueSection:
    # Cancellation delay before a send-order leaves (seconds); an order may set its own delay_seconds, and the
    # doctor's choice in the dashboard (agent/store/preferences.py) overrides this default.
    delay_seconds: int = 900
    # Transient failures in a row (5xx, TLS, timeout, unreadable answer) before a delivery fails; 0: never.
    max_attempts: int = 0
    # Exponential backoff with jitter, for each delivery and for a failing service as a whole.
    backoff_base_seconds: float = 30.0
    backoff_cap_seconds: float = 900.0
    # While a service is unreachable, how often the connectivity probe asks it again.
    probe_interval_seconds: float = 30.0
    # Deliveries sent at the same time.
    concurrency: int = 4
    # Longest wait for one answer of the service before the attempt counts as a timeout.
    attempt_timeout_seconds: float = 90.0


@dataclass(frozen=True, kw_only=True)
class HabilitationSection:
    # JSON file replacing the built-in habilitation matrix (arrêté of 26 October 2023); empty = built-in.
    matrix: str = ""


@dataclass(frozen=True, kw_only=True)
class CardsSection:
    # Watch the PC/SC readers (pcscd, WinSCard) for the CPS and the carte Vitale.
    pcsc: bool = True
    # PKCS#11 module of the CPS: the ANS Cryptolib CPS on a workstation. Empty: no CPS signature.
    pkcs11_module: str = ""
    # Label of the token to use; empty = the first token present.
    token_label: str = ""
    # Labels of the CPS private keys.
    auth_key_label: str = "CPS_PRIV_AUT"
    sign_key_label: str = "CPS_PRIV_SIG"
    # "auto": PKCS#1 v1.5 when the card offers it, else PSS (CPS4).
    signature_algorithm: Literal["auto", "rsa-pkcs1v15-sha256", "rsa-pss-sha256"] = "auto"
    # Minutes without a signature after which the CPS session closes and the PIN is asked again.
    session_timeout_minutes: int = 240


@dataclass(frozen=True, kw_only=True)
class PracticeSection:
    # The peer listener (mTLS, practice certificates only), started once this workstation is in a practice.
    # Address it binds to on the LAN ("0.0.0.0": every interface) and its port.
    peer_host: str = "0.0.0.0"  # noqa: S104 - the practice LAN; only practice certificates get in
    peer_port: int = DEFAULT_PEER_PORT
    # Find the practice's other agents on the LAN with zeroconf (mDNS); an address found is a hint, never trust.
    discovery: bool = True
    # Peers to contact without discovery, as "host:port".
    static_peers: tuple[str, ...] = ()
    # Seconds between presence exchanges with each peer (which CPS it holds, reachability, forwards to mirror).
    presence_interval_seconds: float = 5.0
    # Lifetime of a `relais practice invite` code.
    invite_ttl_seconds: int = 900
    # A forwarded order or cancel older than this (or this far ahead of our clock) is refused as stale.
    message_max_age_seconds: int = 300
    # Seconds a peer connection may stay idle (before its first request, between requests) before it is closed.
    peer_idle_timeout_seconds: float = 30.0
    # A forwarded order waits at least this long on the workstation holding the CPS before it leaves, whatever
    # deadline its origin set (a zero delay included): the doctor whose card signs it can still cancel it.
    forwarded_min_delay_seconds: int = 120


@dataclass(frozen=True, kw_only=True)
class CdaSection:
    # Folder of the ANS CI-SIS kit (TestContenuCDA: infrastructure/, schematrons/, jeuxDeValeurs/) used to validate
    # every CDA before it is accepted, and whose value sets code the documents' answers. Empty: the kit installed by
    # `relais kit install` (<data_dir>/reference/ci-sis); under `relais demo`, RELAIS_REFERENCE/ci-sis first. No kit:
    # no document is built and no order accepted (unless allow_unvalidated).
    kit_dir: str = ""
    # Where the schematrons compiled to XSLT are kept between starts; empty = <data_dir>/cache/cda.
    cache_dir: str = ""
    # CSV replacing the built-in vaccine table (cip13,cis,name,atc,atc_display,pack_display); empty = built-in.
    vaccines_file: str = ""
    # Compile the schematrons in the background right after the start, so the first document is not slower.
    warm_up: bool = True
    # Validation runs in worker processes (never in the agent's own): how many at once; 0 = automatic (2 on a
    # machine with two cores or more, else 1). Each worker holds the compiled schematrons (up to about 270 MB with
    # every volet); one starts with the agent, the others only when documents wait together.
    validation_workers: int = 0
    # A CDA larger than this is refused before validation (413 cda_too_large).
    max_document_mb: float = 20.0
    # A validation longer than this stops (its worker is killed and replaced) and the document is refused
    # (422 cda_validation_timeout): a crafted document cannot hold a worker for ever.
    validation_timeout_seconds: float = 30.0
    # The practice (author's organisation, custodian) when a request does not say: its identifier ("1" + FINESS,
    # "3" + SIRET, "4" + RPPS rang of a cabinet), name, and structured address (the CSE volets want one).
    organisation_id: str = ""
    organisation_name: str = ""
    organisation_postal_code: str = ""
    organisation_city: str = ""
    # Accept orders whose CDA nobody validated when no kit is configured (fail open: a test bench, and the sandbox
    # when it finds no kit). Off, an order is refused (cda_kit_missing) until the kit is installed; /v1/status
    # and `relais doctor` say which.
    allow_unvalidated: bool = False


@dataclass(frozen=True, kw_only=True)
class MssSection:
    # MSSanté deliveries: the practice's mailbox at its MSSanté operator. Disabled until a sender is set
    # (under `relais demo` the sandbox operator is used).
    enabled: bool = False
    sender_address: str = ""
    sender_name: str = ""
    # Domain of the Message-IDs; empty = the sender's domain.
    message_id_domain: str = ""
    # Empty: the servers are found by DNS SRV autoconfiguration (RFC 6186, the operators' API LPS) from the
    # domain of sender_address: _submission._tcp, then _imaps._tcp / _imap._tcp.
    smtp_host: str = ""
    smtp_port: int = 465
    smtp_security: Literal["tls", "starttls"] = "tls"
    imap_host: str = ""
    imap_port: int = 993
    # "tls" (implicit, 993) or "starttls" (143, as the operators' DNS SRV autoconfiguration publishes it).
    imap_security: Literal["tls", "starttls"] = "tls"
    sent_folder: str = "Sent"
    # "certificate": TLS client certificate (applicative mailbox); "password": SASL/LOGIN inside TLS; "psc": the
    # professional's personal mailbox, opened with their Pro Santé Connect token (SASL OAUTHBEARER, needs [psc]).
    auth: Literal["certificate", "password", "psc"] = "certificate"
    client_cert: str = ""
    client_key: str = ""
    username: str = ""
    password_file: str = ""
    # IGC-Santé authorities, the only ones trusted for the operator (ECO.1.1.10, Ségur proof MSS1); required.
    ca_file: str = ""
    # TLS versions with the operator. The Ségur proof MSS2, as DevBox quotes the référentiel, asks for TLS 1.2
    # only (a server offering TLS 1.3 alone must be refused); the référentiel's full text is not public.
    tls_min_version: Literal["1.2", "1.3"] = "1.2"
    tls_max_version: Literal["1.2", "1.3"] = "1.2"
    # DNS server asked for the SRV records (autoconfiguration); empty = the system's resolver.
    dns_nameserver: str = ""
    dns_port: int = 53
    # The CSE platform's mailbox (certificats de santé de l'enfant, LGC.CSE.15): a CS9 or CS24 goes there
    # automatically. No public source names it; check it with the ANS. Empty: no automatic recipient.
    cse_address: str = "certificatsdesante@plateformecse.mssante.fr"
    timeout_seconds: float = 60.0
    ack_poll_seconds: float = 60.0
    patient_no_reply: bool = True
    read_receipt: bool = True
    # X-MSS-NIL on every message (Référentiel #2 ECO.2.4.3): the product reference the ANS convergence site gives
    # this software (e.g. DEV935997). Required when enabled; no public source names Relais's own.
    product_reference: str = ""
    # Annuaire santé (FHIR) base URL for address lookup; empty = no lookup (the sandbox directory under demo).
    directory_url: str = ""
    directory_api_key_file: str = ""


@dataclass(frozen=True, kw_only=True)
class HomologationSection:
    # The frames journal: every raw request and answer exchanged with the DMP, INSi and MSSanté, kept for the
    # CNDA's proofs (`relais frames on|off` overrides this once used).
    frames: bool = False
    # Days a frame is kept (sealed like a document), then erased.
    frames_retention_days: float = 3.0
    # The CNDA test code frames are filed under (`relais frames test-code` overrides it).
    test_code: str = ""
    # The folder holding cnda/dmp/ (the CNDA's test book); empty: RELAIS_REFERENCE, then shared/reference.
    reference_dir: str = ""
    # What `relais homologation run` plays against: "simulator" (in-process simulators, the default) or "configured"
    # (the [dmp] and [insi] sections as configured: the CNDA's test platforms). Steps only a simulator can do
    # (injected faults and answers, /_sandbox) are then skipped, each with what the integrator must do instead.
    platform: Literal["simulator", "configured"] = "simulator"
    # The run's DMP test patients, by INS matricule: the book's "Référentiel Patients" (their traits are read from
    # it). No DMP ("non créé"), a closed DMP, an active DMP the user is not authorised on, a NIA.
    patient_no_dmp: str = "153078987658513"
    patient_closed: str = "202096615708958"
    patient_not_authorised: str = "235061058692768"
    patient_nia: str = "109076322088835"
    # The patient the run feeds (documents added, replaced, deleted), the user authorised on their DMP; empty: the
    # simulator's test patient (PAT-TROIS). Required with platform = "configured" (e.g. the book's patient 59).
    patient_feed: str = ""
    # The OID of the test patients' INS on the test platform (.10: test; .9: a NIA, used for patient_nia).
    patient_oid: str = "1.2.250.1.213.1.4.10"


@dataclass(frozen=True, kw_only=True)
class NotificationsSection:
    # Which desktop notifications the tray raises; the doctor may change them in the dashboard (Paramètres), which
    # then override these defaults on this workstation. A full disk or a clock change is always announced.
    # A send that failed, or that waits for the author's CPS.
    send_failures: bool = True
    # A carte Vitale inserted, and whether the patient's DMP can be consulted.
    patients: bool = True
    # The CONF.21 notice to read (every 180 days), and Pro Santé Connect sessions.
    notices: bool = True


@dataclass(frozen=True, kw_only=True)
class Config:
    agent: AgentSection = field(default_factory=AgentSection)
    api: ApiSection = field(default_factory=ApiSection)
    store: StoreSection = field(default_factory=StoreSection)
    sandbox: SandboxSection = field(default_factory=SandboxSection)
    cards: CardsSection = field(default_factory=CardsSection)
    insi: InsiSection = field(default_factory=InsiSection)
    dmp: DmpSection = field(default_factory=DmpSection)
    psc: PscSection = field(default_factory=PscSection)
    queue: QueueSection = field(default_factory=QueueSection)
    habilitation: HabilitationSection = field(default_factory=HabilitationSection)
    practice: PracticeSection = field(default_factory=PracticeSection)
    cda: CdaSection = field(default_factory=CdaSection)
    mss: MssSection = field(default_factory=MssSection)
    homologation: HomologationSection = field(default_factory=HomologationSection)
    notifications: NotificationsSection = field(default_factory=NotificationsSection)
    # The file this configuration came from, for messages; not a TOML key.
    source: str = field(default="", metadata={"toml": False})

    @property
    def data_dir(self) -> Path:
        return Path(self.agent.data_dir) if self.agent.data_dir else default_data_dir()

    @property
    def log_dir(self) -> Path:
        return Path(self.agent.log_dir) if self.agent.log_dir else self.data_dir / "logs"

    @property
    def allow_test_oids(self) -> bool:
        """Whether test and demo INS OIDs are accepted: under the sandbox, or on an INSi test platform."""
        return self.sandbox.enabled or self.insi.allow_test_oids

    @property
    def workstation_id(self) -> str:
        return self.agent.workstation_id or socket.gethostname()


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def resolve_config_path(cli_path: str | None) -> Path | None:
    """--config, then RELAIS_CONFIG, then the platform default if it exists; None means built-in defaults."""
    if cli_path:
        return Path(cli_path)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    default = default_config_path()
    return default if default.exists() else None


def load_config(path: Path | None, **overrides: dict[str, Any]) -> Config:
    """Read ``path`` (None: defaults only), then apply ``overrides`` ({section: {key: value}}) from the CLI."""
    raw: dict[str, Any] = {}
    source = str(path) if path else "(valeurs par défaut)"
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError("fichier de configuration introuvable", path=source) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"TOML invalide : {exc}", path=source) from exc
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    config = _build(Config, raw, "", source)
    config = replace(config, source=source)
    validate(config)
    return config


T = TypeVar("T")


def _build(cls: type[T], raw: Any, prefix: str, source: str) -> T:
    if not isinstance(raw, dict):
        raise ConfigError("une table TOML est attendue", key=prefix.rstrip("."), path=source)
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.metadata.get("toml", True)}  # type: ignore[arg-type]
    for key in raw:
        if key not in known:
            raise ConfigError("clé inconnue", key=f"{prefix}{key}", path=source)
    values: dict[str, Any] = {}
    for name in raw:
        hint = hints[name]
        dotted = f"{prefix}{name}"
        if is_dataclass(hint):
            values[name] = _build(hint, raw[name], f"{dotted}.", source)  # type: ignore[type-var,arg-type]
        else:
            values[name] = _coerce(hint, raw[name], dotted, source)
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str, source: str) -> Any:
    origin = get_origin(hint)
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise ConfigError(f"valeur {value!r} refusée, valeurs possibles : {choices}", key=key, path=source)
        return value
    if origin is tuple:
        (item,) = {a for a in get_args(hint) if a is not Ellipsis}
        if not isinstance(value, list):
            raise ConfigError("une liste est attendue", key=key, path=source)
        return tuple(_coerce(item, v, key, source) for v in value)
    if origin in (types.UnionType, typing.Union):
        raise TypeError("unions are not supported in config")  # pragma: no cover - a programming error
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError("true ou false est attendu", key=key, path=source)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError("un nombre entier est attendu", key=key, path=source)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError("un nombre est attendu", key=key, path=source)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError("une chaîne est attendue", key=key, path=source)
        return value
    if isinstance(hint, type) and isinstance(value, dict) and hint is dict:
        return value
    raise ConfigError(f"type non pris en charge ({hint})", key=key, path=source)  # pragma: no cover


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate(config: Config) -> None:
    """Rules across keys and ranges; the types were checked while building."""
    src = config.source
    if not is_loopback_host(config.api.host):
        raise ConfigError(
            "l'API locale ne peut écouter que sur la boucle locale (127.0.0.1, ::1 ou localhost)",
            key="api.host",
            path=src,
        )
    if not 0 <= config.api.port <= 65535:
        raise ConfigError("port hors de la plage 0-65535", key="api.port", path=src)
    if not 0 <= config.api.port_search <= 1000:
        raise ConfigError("nombre de ports entre 0 et 1000 attendu", key="api.port_search", path=src)
    for origin in config.api.allowed_origins:
        if origin in ("*", "null") or "://" not in origin:
            raise ConfigError(
                f"origine {origin!r} refusée : une origine complète est attendue (ex. http://localhost:8080)",
                key="api.allowed_origins",
                path=src,
            )
    positive = {
        "api.max_body_bytes": config.api.max_body_bytes,
        "api.max_upload_bytes": config.api.max_upload_bytes,
        "api.auth_failure_limit": config.api.auth_failure_limit,
        "api.auth_failure_window_seconds": config.api.auth_failure_window_seconds,
        "api.idle_timeout_seconds": config.api.idle_timeout_seconds,
        "api.max_event_streams": config.api.max_event_streams,
        "practice.peer_idle_timeout_seconds": config.practice.peer_idle_timeout_seconds,
        "agent.log_max_bytes": config.agent.log_max_bytes,
        "store.retention_days": config.store.retention_days,
        "cards.session_timeout_minutes": config.cards.session_timeout_minutes,
        "cda.max_document_mb": config.cda.max_document_mb,
        "cda.validation_timeout_seconds": config.cda.validation_timeout_seconds,
        "queue.backoff_base_seconds": config.queue.backoff_base_seconds,
        "queue.backoff_cap_seconds": config.queue.backoff_cap_seconds,
        "queue.probe_interval_seconds": config.queue.probe_interval_seconds,
        "queue.concurrency": config.queue.concurrency,
        "queue.attempt_timeout_seconds": config.queue.attempt_timeout_seconds,
        "practice.presence_interval_seconds": config.practice.presence_interval_seconds,
        "practice.invite_ttl_seconds": config.practice.invite_ttl_seconds,
        "practice.message_max_age_seconds": config.practice.message_max_age_seconds,
        "homologation.frames_retention_days": config.homologation.frames_retention_days,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError("une valeur strictement positive est attendue", key=key, path=src)
    if not 0 <= config.cda.validation_workers <= 64:
        raise ConfigError("0 (automatique) ou un nombre de processus entre 1 et 64 attendu",
                          key="cda.validation_workers", path=src)
    if config.queue.max_attempts < 0:
        raise ConfigError("0 (jamais) ou un nombre de tentatives attendu", key="queue.max_attempts", path=src)
    if config.queue.backoff_cap_seconds < config.queue.backoff_base_seconds:
        raise ConfigError("le plafond doit être au moins égal à la base", key="queue.backoff_cap_seconds", path=src)
    if not 0 <= config.practice.forwarded_min_delay_seconds <= 7 * 24 * 3600:
        raise ConfigError("délai entre 0 et 604800 secondes attendu", key="practice.forwarded_min_delay_seconds",
                          path=src)
    if not 0 <= config.queue.delay_seconds <= 7 * 24 * 3600:
        raise ConfigError("délai entre 0 et 604800 secondes attendu", key="queue.delay_seconds", path=src)
    if config.api.sse_heartbeat_seconds <= 0:
        raise ConfigError("une valeur strictement positive est attendue", key="api.sse_heartbeat_seconds", path=src)
    if not 0 <= config.insi.transient_retries <= 5:
        raise ConfigError("entre 0 et 5 nouvelles tentatives", key="insi.transient_retries", path=src)
    if not 0 < config.dmp.params_refresh_hours <= 168:
        raise ConfigError("entre 0 et 168 heures (le fichier des paramètres du DMP se relit au moins chaque "
                          "semaine, EX_GEN-1540)", key="dmp.params_refresh_hours", path=src)
    if config.dmp.params_retry_minutes <= 0:
        raise ConfigError("une valeur strictement positive est attendue", key="dmp.params_retry_minutes", path=src)
    if config.dmp.params_url and not config.dmp.params_url.lower().startswith("https://"):
        raise ConfigError("une adresse https:// est attendue", key="dmp.params_url", path=src)
    if not 1 <= config.dmp.majority_age <= 30:
        raise ConfigError("un âge entre 1 et 30 ans est attendu", key="dmp.majority_age", path=src)
    if not 0 <= config.dmp.secret_connection_minimum_age < config.dmp.majority_age:
        raise ConfigError("un âge entre 0 et l'âge de la majorité est attendu",
                          key="dmp.secret_connection_minimum_age", path=src)


def iter_keys(cls: type[Any] = Config, prefix: str = "") -> list[tuple[str, Any]]:
    """Every (dotted key, default) of the configuration, for the example file's test and `relais doctor`."""
    out: list[tuple[str, Any]] = []
    instance = cls()
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if not f.metadata.get("toml", True):
            continue
        if is_dataclass(hints[f.name]):
            out.extend(iter_keys(hints[f.name], f"{prefix}{f.name}."))
        else:
            out.append((f"{prefix}{f.name}", getattr(instance, f.name)))
    return out
