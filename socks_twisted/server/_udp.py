"""
UDP ASSOCIATE: one UDP socket per association, relaying between the client
and the targets it sends to.
"""

import errno
import os
import socket
from collections import Counter
from collections.abc import Callable, Container
from typing import TypeVar

from twisted.internet.error import MessageLengthError
from twisted.internet.interfaces import IUDPTransport
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._addresses import isUnspecified
from .._gssstream import DatagramTooLongError, DatagramWrapper
from .._wire import AddressType as _AddressType
from .._wire import (
    ProtocolError,
    UDPDatagram,
    addressTypeOf,
    encodeSOCKS5Address,
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
#: Entries in each of an association's per-datagram caches (destination
#: headers the client sent, and sources that answered), so that a client
#: spraying destinations costs a bounded amount of memory.
MAX_CACHED = 256

#: RSV and FRAG of a whole (unfragmented) datagram's header.
_WHOLE = b"\x00\x00\x00"
#: ATYP of IP literals as plain ints, compared on every datagram.
_ATYP_IPV4 = int(_AddressType.IPV4)
_ATYP_IPV6 = int(_AddressType.IPV6)
#: Where the header of a datagram to an IPv4 or IPv6 literal ends.
_IPV4_END = 3 + 1 + 4 + 2
_IPV6_END = 3 + 1 + 16 + 2

Address = tuple[str, int]

_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> None:
    """
    Put C{key} in C{cache}, evicting the oldest entry when it is full.
    """
    if key not in cache and len(cache) >= MAX_CACHED:
        del cache[next(iter(cache))]
    cache[key] = value


class UDPAssociation(DatagramProtocol):
    """
    The relay of one association.

    Datagrams from the client's IP (and port, once known) carry the SOCKS5
    UDP header; their payload goes to the target from this socket.  Datagrams
    from a target the client has sent to go to the client with a header
    naming the target.  Everything else is dropped and counted by reason.

    A destination is parsed and checked once: its header bytes are then
    looked up as they come (L{MAX_CACHED} of them), and so is the source
    address of a target's answers, with the header that goes before them to
    the client.  Entries are found only while their target is still one of
    the association's (L{MAX_TARGETS}); the rules an association is decided
    by do not change while it lasts (a reload applies to new requests).

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
    @param protection: The session's GSS-API protection, if it agreed
        integrity or confidentiality: every datagram to and from the client
        is then wrapped, and the client's source port is locked onto only
        by a datagram that unwraps.
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
        protection: DatagramWrapper | None = None,
    ) -> None:
        self.clientHost = normalizeIP(clientHost)
        self.clientPort = clientPort
        self._family = family
        self._resolve = resolve
        self._forbidden = forbidden
        self._permit = permit
        self.session = session
        self._protection = protection
        self._wanted = (
            _AddressType.IPV4 if family == socket.AF_INET else _AddressType.IPV6
        )
        self._denied: set[Address] = set()
        #: Targets the client sent to (checked and allowed), oldest first.
        self._targets: dict[Address, None] = {}
        #: Header bytes naming a destination (ATYP to port) -> its target.
        self._destinations: dict[bytes, Address] = {}
        #: A target's source address as the socket gives it -> the target
        #: and the header of its datagrams to the client.
        self._replies: dict[tuple[str, int], tuple[Address, bytes]] = {}
        #: The client's source address as the socket gives it, once seen.
        self._clientSource: tuple[str, int] | None = None
        self._socket: socket.socket | None = None
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

    def startProtocol(self) -> None:
        """
        Listening: find the socket to send on.
        """
        # Twisted's udp.Port.write checks the address's syntax and family
        # on every call, which costs more than the send; the relay sends only
        # to addresses it has already parsed and checked, so it uses the
        # socket itself when the transport has one.
        sock = getattr(self.transport, "socket", None)
        self._socket = sock if isinstance(sock, socket.socket) else None

    def stopProtocol(self) -> None:
        """
        The socket is closed: nothing more is sent on it.
        """
        self._socket = None

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        # The address tuple as the socket gave it is compared before any
        # parsing: the same source always reads the same.
        if addr == self._clientSource:
            if self._protection is None:
                self._fromClient(datagram)
            else:
                self._fromProtectedClient(datagram)
            return
        known = self._replies.get(addr)
        if known is not None and known[0] in self._targets:
            self._toClient(datagram, known[1])
            return
        host, port = normalizeIP(addr[0]), addr[1]
        if host == self.clientHost and self.clientPort in (0, port):
            if self._protection is not None:
                unwrapped = self._unwrap(datagram)
                if unwrapped is None:
                    return
                datagram = unwrapped
            self.clientPort = port
            self._clientSource = addr
            self._fromClient(datagram)
        elif (host, port) in self._targets:
            header = _WHOLE + encodeSOCKS5Address(host, port)
            _remember(self._replies, addr, ((host, port), header))
            self._toClient(datagram, header)
        else:
            self.drops["unknown source"] += 1

    def _unwrap(self, datagram: bytes) -> bytes | None:
        """
        The client's datagram under protection, unwrapped; C{None} (and
        counted as dropped) if it does not unwrap.
        """
        assert self._protection is not None
        try:
            return self._protection.unwrap(datagram)
        except ProtocolError:
            self.drops["GSS-API unwrap failed"] += 1
            return None

    def _fromProtectedClient(self, datagram: bytes) -> None:
        unwrapped = self._unwrap(datagram)
        if unwrapped is not None:
            self._fromClient(unwrapped)

    def _fromClient(self, datagram: bytes) -> None:
        if datagram[:3] == _WHOLE and len(datagram) > 4:
            # A destination seen before is found by the bytes that name it
            # (ATYP, address, port), without decoding them.  A truncated
            # header cannot match: every key is a whole one, and its own
            # ATYP (and a name's length byte) fix its length.
            atyp = datagram[3]
            if atyp == _ATYP_IPV4:
                end = _IPV4_END
            elif atyp == _ATYP_IPV6:
                end = _IPV6_END
            else:
                end = 3 + 2 + datagram[4] + 2
            target = self._destinations.get(datagram[3:end])
            # Only while the target is still one the client may send to and
            # hear from: it may have been evicted since.
            if target is not None and target in self._targets:
                self._forward(datagram[end:], target)
                return
        self._fromClientSlowly(datagram)

    def _readRequest(self, datagram: bytes) -> tuple[UDPDatagram, bytes] | None:
        """
        Read a client's datagram: its request and the key its destination
        is cached by (the header's address and port bytes, as sent); a
        malformed or fragmented one is counted as dropped.
        """
        try:
            request = readUDPDatagram(datagram)
        except ProtocolError:
            self.drops["malformed header"] += 1
            return None
        if request.fragment != 0:
            self.drops["fragmented"] += 1
            return None
        return request, datagram[3 : len(datagram) - len(request.data)]

    def _fromClientSlowly(self, datagram: bytes) -> None:
        read = self._readRequest(datagram)
        if read is None:
            return
        request, key = read
        addressType = addressTypeOf(request.host)
        if addressType is _AddressType.DOMAIN:
            known = self._names.get(request.host)
            if known is not None:
                self._send(request.data, known, request.port, request.host, key)
            else:
                self._resolveAndSend(request)
            return
        if addressType is not self._wanted:
            self.drops["address family"] += 1
        elif isUnspecified(request.host):
            self.drops["unspecified target"] += 1
        else:
            self._send(request.data, request.host, request.port, None, key)

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

    def _send(
        self,
        data: bytes,
        host: str,
        port: int,
        name: str | None = None,
        key: bytes | None = None,
    ) -> None:
        """
        Send to a destination not found in the cache of destinations:
        check it, and remember it under C{key} (the header bytes that named
        it) if it may be sent to.
        """
        host = normalizeIP(host)
        target = (host, port)
        if target not in self._targets:
            if name is not None and addressTypeOf(host) is not self._wanted:
                # The socket is sent on directly, so a resolver's answer of
                # the other family is refused here rather than by the socket.
                self.drops["address family"] += 1
                return
            if target in self._forbidden:
                self.drops["own address"] += 1
                return
            if self._permit is not None:
                denial = self._permit(host, port, name)
                if denial is not None:
                    self._deny(target, denial)
                    return
            if len(self._targets) >= MAX_TARGETS:
                del self._targets[next(iter(self._targets))]
            self._targets[target] = None
        if key is not None:
            _remember(self._destinations, key, target)
        self._forward(data, target)

    def _deny(self, target: tuple[str, int], denial: str) -> None:
        """
        Drop a datagram the policy denies C{target}; say so once a target
        (for a bounded number of targets).
        """
        self.drops["denied by policy"] += 1
        if target not in self._denied and len(self._denied) < MAX_NAMES:
            self._denied.add(target)
            _log.info(
                "UDP association of {client} (session {session}): {denial}",
                client=self.clientHost,
                session=self.session,
                denial=denial,
            )

    def _forward(self, data: bytes, target: Address) -> None:
        self.datagramsFromClient += 1
        self.bytesFromClient += len(data)
        self._write(data, target)

    def _toClient(self, data: bytes, header: bytes) -> None:
        datagram = header + data
        if self._protection is not None:
            try:
                datagram = self._protection.wrap(datagram)
            except DatagramTooLongError:
                self.drops["too long to wrap"] += 1
                return
            except ProtocolError:
                self.drops["GSS-API wrap failed"] += 1
                return
        self.datagramsToClient += 1
        self.bytesToClient += len(data)
        self._write(datagram, (self.clientHost, self.clientPort))

    def _write(self, datagram: bytes, address: Address) -> None:
        """
        Send C{datagram} to C{address}, a checked IP literal of the socket's
        family; a datagram the system refuses is dropped and counted by the
        reason, as UDP would lose it anyway.
        """
        sock = self._socket
        try:
            if sock is not None:
                sock.sendto(datagram, address)
            else:
                self._udp.write(datagram, address)
        except OSError as e:
            # EAGAIN / ENOBUFS (buffers full), EMSGSIZE (too big with the
            # header), ECONNREFUSED (an earlier ICMP error) and the like.
            self.drops[f"send failed ({e.strerror or e})"] += 1
        except MessageLengthError:
            # Twisted's write turns EMSGSIZE into this.
            self.drops[f"send failed ({os.strerror(errno.EMSGSIZE)})"] += 1

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
