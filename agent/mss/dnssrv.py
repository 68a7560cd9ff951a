"""DNS SRV autoconfiguration of the operator's servers (RFC 6186), the only dnspython user.

The API LPS of the MSSanté operators (EX_LPS_0300, as DevBox's "Gestion multi-opérateurs" quotes it) publishes
the submission and IMAP servers of a mailbox domain as SRV records: ``_submission._tcp.<domain>`` (587,
STARTTLS), ``_imap._tcp.<domain>`` (143, STARTTLS) and ``_imaps._tcp.<domain>`` (993, implicit TLS); RFC 8314
adds ``_submissions._tcp.<domain>`` (465, implicit TLS), also read. Used when ``[mss]`` gives the mailbox (its
domain) but no ``smtp_host``.

Order (RFC 2782): lowest priority first; within one priority, a weighted random draw (``rand`` is injected so
tests are exact). The STARTTLS and implicit-TLS records of one service are one list ordered by priority (RFC
6186 3.4); on a tie, implicit TLS first (RFC 8314). A single record whose target is "." says the service is not
offered there. The sender tries the next target only when one cannot be reached at all (``MssSender``).

The server's certificate is then checked against the SRV target's host name with IGC-Santé as the only
authority: without DNSSEC an attacker who forges the answer can only send the client to another server holding
an IGC-Santé certificate for the name it claims.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dns.asyncresolver

from agent.errors import ConfigError, ServiceUnreachable

SERVICE = "mss"


@dataclass(frozen=True, slots=True)
class SrvTarget:
    host: str
    port: int
    security: str  # "starttls" or "tls" (implicit)
    priority: int
    weight: int


@dataclass(frozen=True, slots=True)
class Discovered:
    """What the domain publishes: submission and IMAP targets in the order to try, and the shortest TTL."""

    domain: str
    submission: tuple[SrvTarget, ...]
    imap: tuple[SrvTarget, ...]
    ttl: int

    def describe(self) -> str:
        """One French line for ``relais doctor`` and the logs (host names and ports only)."""
        def first(targets: tuple[SrvTarget, ...], label: str) -> str:
            if not targets:
                return f"{label} : aucun"
            t = targets[0]
            mode = "TLS implicite" if t.security == "tls" else "STARTTLS"
            return f"{label} {t.host}:{t.port} ({mode})"
        return f"{first(self.submission, 'envoi')}, {first(self.imap, 'IMAP')}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolverSettings:
    nameserver: str = ""  # empty: the system's resolver (resolv.conf, or the registry on Windows)
    port: int = 53
    timeout: float = 5.0


def order_targets(records: Sequence[SrvTarget], rand: Callable[[], float] = random.random) -> list[SrvTarget]:
    """RFC 2782 order: by priority, then a weighted draw inside each priority (weight 0 kept, drawn last)."""
    ordered: list[SrvTarget] = []
    for priority in sorted({r.priority for r in records}):
        pool = sorted((r for r in records if r.priority == priority), key=lambda r: (r.weight != 0, r.weight))
        while pool:
            total = sum(r.weight for r in pool)
            if total == 0:
                ordered.extend(pool)
                break
            threshold = rand() * total
            running = 0
            for index, record in enumerate(pool):
                running += record.weight
                if running > threshold:
                    ordered.append(pool.pop(index))
                    break
            else:
                ordered.append(pool.pop())
    return ordered


def _resolver(settings: ResolverSettings) -> dns.asyncresolver.Resolver:
    # dnspython is imported here, at the first look-up: about 3 MB that an agent without MSSanté autoconfiguration
    # (most of them) never needs.
    import dns.asyncresolver
    import dns.resolver

    if settings.nameserver:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [settings.nameserver]
        resolver.port = settings.port
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration as exc:
            raise ConfigError("aucun serveur DNS configuré sur ce poste : renseignez mss.dns_nameserver",
                              key="mss.dns_nameserver") from exc
    resolver.lifetime = settings.timeout
    resolver.timeout = settings.timeout
    return resolver


async def _lookup(resolver: dns.asyncresolver.Resolver, name: str, security: str) -> tuple[list[SrvTarget], int]:
    """The SRV records of one name ([] when none, or when the single "." record says "not offered")."""
    import dns.exception
    import dns.rdatatype
    import dns.resolver

    try:
        answer = await resolver.resolve(name, dns.rdatatype.SRV, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return [], 0
    except dns.resolver.NoNameservers as exc:
        raise ServiceUnreachable("Serveur DNS en erreur : autoconfiguration MSSanté impossible pour l'instant.",
                                 service=SERVICE) from exc
    except dns.exception.Timeout as exc:
        raise ServiceUnreachable("Serveur DNS injoignable : autoconfiguration MSSanté impossible pour l'instant.",
                                 service=SERVICE) from exc
    records = [SrvTarget(r.target.to_text(omit_final_dot=True), int(r.port), security, int(r.priority),
                         int(r.weight)) for r in answer]
    if len(records) == 1 and records[0].host in ("", "."):
        return [], 0
    ttl = answer.rrset.ttl if answer.rrset is not None else 0
    return [r for r in records if r.host not in ("", ".")], int(ttl)


async def discover(domain: str, settings: ResolverSettings,
                   rand: Callable[[], float] = random.random) -> Discovered:
    """The submission and IMAP servers the domain publishes (RFC 6186).

    ``ConfigError`` (key ``mss.sender_address``) when no submission server is published: that is a configuration
    to correct, not a network failure. ``ServiceUnreachable`` when the DNS does not answer."""
    import dns.exception
    import dns.name

    domain = domain.strip().rstrip(".").lower()
    try:
        dns.name.from_text(domain)
    except dns.exception.DNSException as exc:
        raise ConfigError(f"domaine de messagerie invalide : {domain!r}", key="mss.sender_address") from exc
    resolver = _resolver(settings)
    submission, ttl_sub = await _lookup(resolver, f"_submission._tcp.{domain}.", "starttls")
    submissions, ttl_subs = await _lookup(resolver, f"_submissions._tcp.{domain}.", "tls")
    imap, ttl_imap = await _lookup(resolver, f"_imap._tcp.{domain}.", "starttls")
    imaps, ttl_imaps = await _lookup(resolver, f"_imaps._tcp.{domain}.", "tls")
    if not submission and not submissions:
        raise ConfigError(
            f"aucun serveur d'envoi MSSanté publié pour le domaine {domain} (enregistrements DNS SRV "
            f"_submission._tcp.{domain} et _submissions._tcp.{domain} absents) : renseignez mss.smtp_host (et "
            "mss.imap_host) avec les serveurs donnés par votre opérateur", key="mss.smtp_host")
    ttls = [t for t in (ttl_sub, ttl_subs, ttl_imap, ttl_imaps) if t > 0]
    return Discovered(domain, tuple(_merge(submissions, submission, rand)), tuple(_merge(imaps, imap, rand)),
                      min(ttls, default=0))


def _merge(implicit: list[SrvTarget], starttls: list[SrvTarget], rand: Callable[[], float]) -> list[SrvTarget]:
    """One service's records as one list: by priority; on a tie, implicit TLS first (RFC 8314)."""
    by_priority: dict[int, list[SrvTarget]] = {}
    for record in implicit + starttls:
        by_priority.setdefault(record.priority, []).append(record)
    ordered: list[SrvTarget] = []
    for priority in sorted(by_priority):
        group = by_priority[priority]
        ordered += order_targets([r for r in group if r.security == "tls"], rand)
        ordered += order_targets([r for r in group if r.security != "tls"], rand)
    return ordered
