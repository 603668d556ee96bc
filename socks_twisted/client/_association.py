"""
The transport of a UDP association through a SOCKS5 proxy (RFC 1928 section
7): what a L{DatagramProtocol<twisted.internet.protocol.DatagramProtocol>}
writes goes to the proxy's relay with the SOCKS5 UDP request header (and,
under GSS-API protection, wrapped); what the relay sends back is checked,
stripped of its header and handed to the protocol.
"""

from __future__ import annotations

from collections import Counter
from typing import cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import InvalidAddressError, MessageLengthError
from twisted.internet.interfaces import (
    IListeningPort,
    IUDPTransport,
)
from twisted.internet.protocol import (
    DatagramProtocol,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from .._gssstream import DatagramTooLongError
from .._wire import (
    ProtocolError,
    encodeSOCKS5Address,
    normalizeIP,
    readUDPDatagram,
)
from ..errors import SOCKSProtocolError
from ._handshake import makeError
from ._tunnel import SOCKSTunnelTransport

#: How many encoded headers (one per destination) are kept for reuse.
_HEADER_CACHE = 1024


class _RelayReceiver(DatagramProtocol):
    """
    The protocol of the local UDP socket: hands every datagram to its
    association.
    """

    noisy = False

    def __init__(self, association: SOCKS5UDPAssociation) -> None:
        self._association = association

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        """
        See L{SOCKS5UDPAssociation}.
        """
        self._association._datagramFromRelay(datagram, addr)


@implementer(IUDPTransport)
class SOCKS5UDPAssociation:
    """
    A UDP association through a SOCKS5 proxy, as the transport of a
    L{DatagramProtocol<twisted.internet.protocol.DatagramProtocol>}.

    L{write} adds the SOCKS5 UDP header naming the destination (an IP
    address or a name, which the proxy resolves) and sends the datagram to
    the relay.  Datagrams from the relay have their header removed, and the
    protocol's C{datagramReceived} is given the payload and the C{(host,
    port)} the header names: the remote that really sent it.  Datagrams
    from any other source, with FRAG other than 0 (fragments: nobody
    implements them) or with a malformed header are dropped and counted in
    L{drops}.

    The association lives as long as its TCP control connection.
    L{stopListening} closes both; if the control connection is lost first,
    the UDP socket is closed, the protocol is stopped (C{stopProtocol}) and
    L{whenEnded} reports the reason.

    Under GSS-API integrity or confidentiality (the control connection's
    L{SOCKSTunnelTransport.datagramProtection}), every datagram, header
    included, is wrapped in one RFC 1961 message on its way to the relay,
    and every datagram from the relay must unwrap.

    @ivar relayAddress: Where datagrams go: an
        L{IPv4Address<twisted.internet.address.IPv4Address>} or
        L{IPv6Address<twisted.internet.address.IPv6Address>} of type C{"UDP"}.
    @ivar proxyBoundAddress: BND.ADDR and BND.PORT of the proxy's reply, as
        sent (see L{SOCKSTunnelTransport.proxyBoundAddress}).
    @ivar proxyAddress: The proxy's address, as the control connection
        reports it.
    @ivar controlTransport: The transport of the control connection.
    @ivar drops: Datagrams received and dropped, by reason: C{"not from the
        relay"}, C{"GSS-API unwrap failed"}, C{"malformed header"},
        C{"fragmented"}, C{"not from the connected address"}.
    @ivar datagramsSent: Datagrams sent to the relay.
    @ivar datagramsReceived: Datagrams from the relay given to the protocol.
    """

    def __init__(
        self,
        protocol: DatagramProtocol,
        relay: tuple[str, int],
        control: SOCKSTunnelTransport,
        answersFromNames: bool = False,
    ) -> None:
        self._protocol = protocol
        self._answersFromNames = answersFromNames
        self._sentNames: dict[int, list[str]] = {}
        self._learnedNames: dict[tuple[str, int], tuple[str, int]] = {}
        self._relay = relay
        self.relayAddress: IPv4Address | IPv6Address = (
            IPv6Address("UDP", *relay)
            if ":" in relay[0]
            else IPv4Address("UDP", *relay)
        )
        self.controlTransport = control
        self._protection = control.datagramProtection
        self.proxyBoundAddress = control.proxyBoundAddress
        self.proxyAddress = control.proxyAddress
        self.drops: Counter[str] = Counter()
        self.datagramsSent = 0
        self.datagramsReceived = 0
        self._port: IUDPTransport | None = None
        self._headers: dict[tuple[str, int], bytes] = {}
        self._connectedTo: tuple[str, int] | None = None
        self._broadcast = False
        self._started = False
        self._ended = False
        self._endReason: Failure | None = None
        self._portClosed = False
        self._controlClosed = False
        self._endWaiters: list[Deferred[None]] = []
        self._closeWaiters: list[Deferred[None]] = []

    def __repr__(self) -> str:
        return (
            f"<SOCKS5UDPAssociation relay {self.relayAddress} via {self.proxyAddress}>"
        )

    def _newReceiver(self) -> DatagramProtocol:
        """
        A protocol for the local UDP socket, that feeds this association.
        """
        return _RelayReceiver(self)

    def _listening(self, port: IListeningPort) -> None:
        """
        The local UDP socket is open: connect the application's protocol.
        """
        # What listenUDP returns is the UDP transport too (IListeningPort is
        # how IReactorUDP declares it).
        self._port = cast(IUDPTransport, port)
        try:
            self._protocol.makeConnection(self)
        except BaseException:
            # startProtocol raised: the protocol never started, so it is not
            # stopped either; the attempt fails with this exception.
            self._protocol.transport = None
            self._end(None)
            raise
        self._started = True

    # IUDPTransport

    def write(self, packet: bytes, addr: tuple[str, int] | None = None) -> None:
        """
        Send C{packet} through the relay to C{addr}.

        @param addr: C{(host, port)}: C{host} is an IPv4 or IPv6 literal, or a
            name that the proxy resolves (sent as ATYP 3, IDNA-encoded when
            not ASCII).  Optional after L{connect}, and then it must be the
            connected address.
        @raise ValueError: C{addr} is missing, differs from the connected
            address, or cannot be encoded (a name longer than 255 bytes, a
            port out of range).
        @raise twisted.internet.error.MessageLengthError: The datagram, header
            included, is too long for the local socket (or, under GSS-API
            protection, for one wrapped message).
        @raise socks_twisted.errors.SOCKSProtocolError: Under GSS-API
            protection, wrapping failed (the context expired, say).
        """
        if addr is None:
            if self._connectedTo is None:
                raise ValueError("write needs an address unless connected")
            addr = self._connectedTo
        elif self._connectedTo is not None:
            try:
                same = (normalizeIP(addr[0]), addr[1]) == self._connectedTo
            except ValueError:
                same = False
            if not same:
                raise ValueError(
                    f"connected to {self._connectedTo}; cannot write to {addr}"
                )
        if self._ended or self._port is None:
            return
        host, port = addr[0], addr[1]
        header = self._headers.get((host, port))
        if header is None and self._answersFromNames:
            self._rememberName(host, port)
        if header is None:
            header = b"\x00\x00\x00" + encodeSOCKS5Address(host, port)
            if len(self._headers) >= _HEADER_CACHE:
                self._headers.clear()
            self._headers[(host, port)] = header
        datagram = header + packet
        if self._protection is not None:
            try:
                datagram = self._protection.wrap(datagram)
            except DatagramTooLongError as e:
                raise MessageLengthError(e.reason) from None
            except ProtocolError as e:
                raise makeError(
                    SOCKSProtocolError, f"GSSAPI protection: {e.reason}"
                ) from None
        self._port.write(datagram, self._relay)
        self.datagramsSent += 1

    def _rememberName(self, host: str, port: int) -> None:
        """
        Note that a datagram went to the name C{host}, so that answers can be
        reported as coming from it (see C{answersFromNames}).
        """
        try:
            normalizeIP(host)
        except ValueError:
            names = self._sentNames.setdefault(port, [])
            if host not in names and len(names) < _HEADER_CACHE:
                names.append(host)

    def _reportedRemote(self, host: str, port: int) -> tuple[str, int]:
        """
        The remote to give the protocol for an answer from C{(host, port)}:
        with C{answersFromNames}, the name this association sent to, when
        exactly one name on that port has not been matched to an address
        yet (the first answer from a new address on that port then teaches
        which address the proxy resolved it to); else C{(host, port)}.
        """
        if not self._answersFromNames:
            return (host, port)
        learned = self._learnedNames.get((host, port))
        if learned is not None:
            return learned
        taken = {name for name, p in self._learnedNames.values() if p == port}
        waiting = [n for n in self._sentNames.get(port, []) if n not in taken]
        if len(waiting) != 1:
            return (host, port)
        self._learnedNames[(host, port)] = (waiting[0], port)
        return (waiting[0], port)

    def connect(self, host: str, port: int) -> None:
        """
        Send to C{(host, port)} only, and only pass on datagrams from it.

        @param host: An IP address, not a name: the relay reports the
            address a datagram came from, so a name could never match.
        @raise twisted.internet.error.InvalidAddressError: C{host} is not an
            IP address.
        @raise RuntimeError: Already connected.
        """
        if self._connectedTo is not None:
            raise RuntimeError(
                "already connected, reconnecting is not currently supported"
            )
        try:
            normalized = normalizeIP(host)
        except ValueError:
            raise InvalidAddressError(host, "not an IPv4 or IPv6 address.") from None
        self._connectedTo = (normalized, port)

    def getHost(self) -> IPv4Address | IPv6Address:
        """
        The address of the local UDP socket.
        """
        assert self._port is not None
        return self._port.getHost()

    def stopListening(self) -> Deferred[None]:
        """
        End the association: close the control connection (which tells the
        proxy to end it) and the UDP socket, and stop the protocol.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} that fires
            once both are closed.
        """
        if not self._ended:
            self._end(None)
            self.controlTransport.loseConnection()
        waiter: Deferred[None] = Deferred()
        self._closeWaiters.append(waiter)
        self._checkClosed()
        return waiter

    def setBroadcastAllowed(self, enabled: bool) -> None:
        """
        Record the setting.  It changes nothing: every datagram goes to the
        relay, which decides whether it may broadcast.
        """
        self._broadcast = bool(enabled)

    def getBroadcastAllowed(self) -> bool:
        """
        The setting recorded by L{setBroadcastAllowed}.
        """
        return self._broadcast

    # The end

    def whenEnded(self) -> Deferred[None]:
        """
        Learn when the association ends, and why.

        @return: A new L{Deferred<twisted.internet.defer.Deferred>} that
            fires with C{None} once the association ended by
            L{stopListening}, or fails with the reason the control connection
            was lost when the proxy closed it first
            (L{twisted.internet.error.ConnectionDone} for a clean close) or
            it broke.  Either way it fires after the UDP socket is closed.
        """
        waiter: Deferred[None] = Deferred()
        if self._ended and self._portClosed:
            self._fireEnded(waiter)
        else:
            self._endWaiters.append(waiter)
        return waiter

    def _fireEnded(self, waiter: Deferred[None]) -> None:
        if self._endReason is None:
            waiter.callback(None)
        else:
            waiter.errback(self._endReason)

    def _end(self, reason: Failure | None) -> None:
        """
        Close the UDP socket and stop the protocol; C{reason} is C{None} when
        we end it, else why the control connection was lost.
        """
        if self._ended:
            return
        self._ended = True
        self._endReason = reason
        port, self._port = self._port, None
        if port is None:
            self._portStopped(None)
        else:
            maybeDeferred(port.stopListening).addBoth(self._portStopped)
        if self._started:
            self._started = False
            self._protocol.doStop()

    def _portStopped(self, result: object) -> None:
        self._portClosed = True
        waiters, self._endWaiters = self._endWaiters, []
        for waiter in waiters:
            self._fireEnded(waiter)
        self._checkClosed()

    def _controlLost(self, reason: Failure) -> None:
        self._controlClosed = True
        self._end(reason)
        self._checkClosed()

    def _checkClosed(self) -> None:
        if self._portClosed and self._controlClosed:
            waiters, self._closeWaiters = self._closeWaiters, []
            for waiter in waiters:
                waiter.callback(None)

    # Datagrams from the relay

    def _datagramFromRelay(self, datagram: bytes, addr: tuple[str, int]) -> None:
        if self._ended:
            return
        if (addr[0], addr[1]) != self._relay:
            try:
                fromRelay = (normalizeIP(addr[0]), addr[1]) == self._relay
            except ValueError:
                fromRelay = False
            if not fromRelay:
                self.drops["not from the relay"] += 1
                return
        if self._protection is not None:
            try:
                datagram = self._protection.unwrap(datagram)
            except ProtocolError:
                self.drops["GSS-API unwrap failed"] += 1
                return
        try:
            message = readUDPDatagram(datagram)
        except ProtocolError:
            self.drops["malformed header"] += 1
            return
        if message.fragment != 0:
            self.drops["fragmented"] += 1
            return
        remote = (message.host, message.port)
        if self._connectedTo is not None:
            try:
                matches = (normalizeIP(message.host), message.port) == self._connectedTo
            except ValueError:
                matches = False
            if not matches:
                self.drops["not from the connected address"] += 1
                return
        self.datagramsReceived += 1
        self._protocol.datagramReceived(message.data, self._reportedRemote(*remote))
