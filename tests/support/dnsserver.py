"""A tiny authoritative DNS server on loopback (UDP), for the MSSanté SRV autoconfiguration tests.

It answers SRV questions from a zone dict ``{"_submission._tcp.example.fr": [(priority, weight, port, target)]}``
with real DNS messages (dnspython builds and parses them): NXDOMAIN for a name it does not know, an empty answer
for another type. It counts the questions it got, so a test can wait on a count rather than a sleep.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

SrvRecord = tuple[int, int, int, str]  # priority, weight, port, target


@dataclass
class DnsFixture:
    host: str
    port: int
    zone: dict[str, list[SrvRecord]]
    ttl: int = 300
    questions: list[str] = field(default_factory=list)

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.questions.append(name)
        records = self.zone.get(name)
        if records is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.SRV:
            texts = [f"{p} {w} {port} {target}" for p, w, port, target in records]
            response.answer.append(dns.rrset.from_text_list(question.name, self.ttl, dns.rdataclass.IN,
                                                            dns.rdatatype.SRV, texts))
        return response.to_wire()


@contextmanager
def dns_server(zone: Mapping[str, Sequence[SrvRecord]], ttl: int = 300) -> Iterator[DnsFixture]:
    """Serve ``zone`` on 127.0.0.1 (a free UDP port) until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    fixture = DnsFixture("127.0.0.1", sock.getsockname()[1],
                         {k.rstrip(".").lower(): list(v) for k, v in zone.items()}, ttl)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                wire, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            sock.sendto(fixture.answer(wire), peer)

    thread = threading.Thread(target=serve, name="dns-fixture", daemon=True)
    thread.start()
    try:
        yield fixture
    finally:
        stop.set()
        thread.join()
        sock.close()
