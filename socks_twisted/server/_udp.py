"""
UDP ASSOCIATE: one UDP socket per association, relaying between the client
and the targets it sends to.
"""

import socket
from collections import Counter
from collections.abc import Callable, Container

from twisted.internet.interfaces import IUDPTransport
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._addresses import isUnspecified
from .._wire import AddressType as _AddressType
from .._wire import (
    ProtocolError,
    UDPDatagram,
    addressTypeOf,
    normalizeIP,
    readUDPDatagram,
)
from ._settings import Resolver

#: What the rules say of a UDP destination: C{(address, port, name)} to
#: C{None} (allowed) or a description of the denial.
Permit = Callable[[str, int, str | None], str | None]

_log = Logger()

#: Targets remembered per association, so that their answers are let through.
MAX_TARGETS = 4096
#: Names remembered per association, resolved once.
MAX_NAMES = 256
#: Datagrams waiting for a name to resolve, per association.
MAX_PENDING_RESOLUTIONS = 64


class UDPAssociation(DatagramProtocol):
    """
    The relay of one association.

    Datagrams from the client's IP (and port, once known) carry the SOCKS5
    UDP header; their payload goes to the target from this socket.  Datagrams
    from a target the client has sent to go to the client with a header
    naming the target.  Everything else is dropped and counted by reason.

    @param clientHost: The client's IP, from its TCP control connection.
    @param clientPort: The port the client said it sends from, or 0 to lock
        onto the source port of its first datagram.
    @param family: The socket's address family; targets of the other family
        cannot be reached from it and are dropped.
    @param resolve: Resolves a name to addresses of a family.
    @param forbidden: Destinations never sent to (the server's own
        listening addresses); a datagram to one is dropped.
    @param session: The session's id, for the log.
    @param permit: What the rules say of a destination C{(address, port,
        name)} (the name the client sent, if any): C{None} if allowed,
        else the description of the denial (logged once per destination).
    """

    def __init__(
        self,
        clientHost: str,
        clientPort: int,
        family: int,
        resolve: Resolver,
        forbidden: Container[tuple[str, int]] = (),
        permit: Permit | None = None,
        session: str = "-",
    ) -> None:
        self.clientHost = normalizeIP(clientHost)
        self.clientPort = clientPort
        self._family = family
        self._resolve = resolve
        self._forbidden = forbidden
        self._permit = permit
        self.session = session
        self._denied: set[tuple[str, int]] = set()
        self._targets: dict[tuple[str, int], None] = {}
        self._names: dict[str, str] = {}
        self._pendingResolutions = 0
        self.datagramsFromClient = self.bytesFromClient = 0
        self.datagramsToClient = self.bytesToClient = 0
        self.drops: Counter[str] = Counter()

    @property
    def _udp(self) -> IUDPTransport:
        transport = self.transport
        assert transport is not None, "datagrams arrive only once listening"
        return transport

    def activity(self) -> int:
        """
        A count that changes whenever a datagram is relayed.
        """
        return self.datagramsFromClient + self.datagramsToClient

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        host, port = normalizeIP(addr[0]), addr[1]
        if host == self.clientHost and self.clientPort in (0, port):
            self.clientPort = port
            self._fromClient(datagram)
        elif (host, port) in self._targets:
            self._toClient(datagram, host, port)
        else:
            self.drops["unknown source"] += 1

    def _fromClient(self, datagram: bytes) -> None:
        try:
            request = readUDPDatagram(datagram)
        except ProtocolError:
            self.drops["malformed header"] += 1
            return
        if request.fragment != 0:
            self.drops["fragmented"] += 1
            return
        addressType = addressTypeOf(request.host)
        if addressType is _AddressType.DOMAIN:
            known = self._names.get(request.host)
            if known is not None:
                self._send(request.data, known, request.port, request.host)
            else:
                self._resolveAndSend(request)
            return
        wanted = (
            _AddressType.IPV4 if self._family == socket.AF_INET else _AddressType.IPV6
        )
        if addressType is not wanted:
            self.drops["address family"] += 1
        elif isUnspecified(request.host):
            self.drops["unspecified target"] += 1
        else:
            self._send(request.data, request.host, request.port)

    def _resolveAndSend(self, request: UDPDatagram) -> None:
        if self._pendingResolutions >= MAX_PENDING_RESOLUTIONS:
            self.drops["resolver busy"] += 1
            return
        self._pendingResolutions += 1

        def resolved(addresses: list[str]) -> None:
            if len(self._names) < MAX_NAMES:
                self._names[request.host] = addresses[0]
            if self.transport is not None:
                self._send(request.data, addresses[0], request.port, request.host)

        def failed(failure: Failure) -> None:
            self.drops["name not resolved"] += 1

        def done(result: object) -> None:
            self._pendingResolutions -= 1

        d = self._resolve(request.host, self._family)
        d.addCallbacks(resolved, failed)
        d.addBoth(done)

    def _send(self, data: bytes, host: str, port: int, name: str | None = None) -> None:
        host = normalizeIP(host)
        target = (host, port)
        if target not in self._targets:
            if target in self._forbidden:
                self.drops["own address"] += 1
                return
            if self._permit is not None:
                denial = self._permit(host, port, name)
                if denial is not None:
                    self.drops["denied by policy"] += 1
                    if target not in self._denied and len(self._denied) < MAX_NAMES:
                        self._denied.add(target)
                        _log.info(
                            "UDP association of {client} (session {session}): {denial}",
                            client=self.clientHost,
                            session=self.session,
                            denial=denial,
                        )
                    return
            if len(self._targets) >= MAX_TARGETS:
                del self._targets[next(iter(self._targets))]
            self._targets[target] = None
        self.datagramsFromClient += 1
        self.bytesFromClient += len(data)
        try:
            self._udp.write(data, target)
        except OSError as e:
            self.drops[f"send failed ({e.strerror})"] += 1

    def _toClient(self, data: bytes, host: str, port: int) -> None:
        self.datagramsToClient += 1
        self.bytesToClient += len(data)
        try:
            self._udp.write(
                UDPDatagram(host, port, data).toBytes(),
                (self.clientHost, self.clientPort),
            )
        except OSError as e:
            self.drops[f"send failed ({e.strerror})"] += 1

    def logEnd(self, client: str, reason: str) -> None:
        """
        Log the one event that sums the association up.
        """
        drops = ", ".join(f"{why}: {n}" for why, n in sorted(self.drops.items()))
        _log.info(
            "UDP association {client} (session {session}) ended ({reason}): "
            "from client {datagramsFromClient} datagrams / {bytesFromClient} bytes, "
            "to client {datagramsToClient} datagrams / {bytesToClient} bytes, "
            "dropped {dropSummary}",
            client=client,
            session=self.session,
            reason=reason,
            datagramsFromClient=self.datagramsFromClient,
            bytesFromClient=self.bytesFromClient,
            datagramsToClient=self.datagramsToClient,
            bytesToClient=self.bytesToClient,
            drops=dict(self.drops),
            dropSummary=drops or "none",
        )
