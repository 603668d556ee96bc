"""
One SOCKS session on the server: the handshake, the outbound connection, and
the hand-over to the relay.
"""

import ipaddress
import socket
from collections.abc import Callable
from enum import Enum, auto
from typing import TYPE_CHECKING, Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IListeningPort,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .._wire import (
    NEED_DATA,
    AuthMethod,
    Command,
    Message,
    MethodSelection,
    ProtocolError,
    ServerConnection,
    SOCKS4Reply,
    SOCKS4ReplyCode,
    SOCKS4Request,
    SOCKS5Greeting,
    SOCKS5Reply,
    SOCKS5ReplyCode,
    SOCKS5Request,
    UsernamePasswordRequest,
    UsernamePasswordStatus,
    addressTypeOf,
    normalizeIP,
)
from .._wire import AddressType as _AddressType
from ..auth import ISOCKSUser
from ..relay import Relay
from ._bind import BindFactory, UnexpectedPeerError
from ._idle import IdleWatch
from ._outbound import TargetFactory, TargetProtocol, hostAndPort, replyCodeFor
from ._udp import UDPAssociation

if TYPE_CHECKING:
    from ._factory import SOCKSServerFactory

_log = Logger()


class _Phase(Enum):
    HANDSHAKE = auto()
    AUTHENTICATING = auto()
    CONNECTING = auto()  # dialling the target, or waiting for the BIND peer
    RELAYING = auto()
    ASSOCIATED = auto()  # UDP: the TCP connection only keeps it alive
    CLOSED = auto()


#: Seconds a refused session waits for the client to close after the reply
#: (RFC 1928 allows up to 10).
LINGER_TIMEOUT = 2.0

#: The most a session holds of what the client sent before the target is
#: connected (or while its credentials are checked) before it stops reading.
#: Reading on until then is what lets a client's disconnect be noticed.
HOLD_LIMIT = 64 * 1024

_REPLY_NAMES = {code: code.name.lower().replace("_", " ") for code in SOCKS5ReplyCode}


@implementer(IHalfCloseableProtocol)
class SOCKSServerProtocol(Protocol):
    """
    The server's side of one client connection.

    The handshake runs on a L{ServerConnection}; its phases here are an
    explicit enum because each one is a single asynchronous wait (a credential
    check, an outbound connection), not a grammar.  Once the session relays,
    C{dataReceived} is one write to the target's transport.
    """

    def __init__(self, factory: "SOCKSServerFactory") -> None:
        self.factory = factory
        self._reactor = factory.reactor
        self._wire = ServerConnection()
        self._phase = _Phase.HANDSHAKE
        self._deadline: IDelayedCall | None = None
        self._lingerCall: IDelayedCall | None = None
        self._pending: defer.Deferred[Any] | None = None
        self._earlyData: list[bytes] = []
        self._clientEOF = False
        self._held = 0
        self._paused = False
        self._target: TargetProtocol | None = None
        self._relay: Relay | None = None
        self._idle: IdleWatch | None = None
        self._association: UDPAssociation | None = None
        self._udpPort: IListeningPort | None = None
        self._ended = False
        self.bytesFromClient = 0
        self.user: bytes | None = None
        self.command: Command | None = None
        self.target: tuple[str, int] | None = None
        self.replyCode: int | None = None
        self.reason = ""

    # Protocol events

    def connectionMade(self) -> None:
        self._started = self._reactor.seconds()
        self._deadline = self._reactor.callLater(
            self.factory.handshakeTimeout, self._handshakeTimedOut
        )

    def dataReceived(self, data: bytes) -> None:
        if self._phase is _Phase.RELAYING:
            self.bytesFromClient += len(data)
            self._target.transport.write(data)  # type: ignore[union-attr]
        elif self._phase is _Phase.HANDSHAKE:
            self._wire.receiveData(data)
            self._advance()
        elif self._phase is _Phase.AUTHENTICATING:
            self._wire.receiveData(data)  # a pipelined request, parsed later
            self._hold(len(data))
        elif self._phase is _Phase.CONNECTING:
            self._earlyData.append(data)
            self._hold(len(data))
        # ASSOCIATED: the control connection carries nothing; CLOSED: too late.

    def readConnectionLost(self) -> None:
        if self._relay is not None:
            self._relay.readClosed(self.transport)  # type: ignore[arg-type]
        elif self._phase is _Phase.CONNECTING:
            self._clientEOF = True  # delivered as a half-close once connected
        else:
            self._close(
                "client closed the UDP control connection"
                if self._phase is _Phase.ASSOCIATED
                else "client closed the connection during the handshake"
            )
            # The client has finished sending: nothing is left to drain.
            self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass  # the relay shut this direction itself

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.sessionClosed(self)
        self._cancelTimers()
        if self._relay is not None:
            self._relay.connectionLost(self.transport, reason)  # type: ignore[arg-type]
            return
        if self._phase is not _Phase.CLOSED:
            self._phase = _Phase.CLOSED
            self.reason = self.reason or (
                "client disconnected: " + reason.getErrorMessage()
            )
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
        self._endAssociation()
        self._endSession()

    # The handshake

    def _advance(self) -> None:
        while self._phase is _Phase.HANDSHAKE:
            try:
                event = self._wire.nextEvent()
            except ProtocolError as e:
                self._close(f"protocol error: {e.reason}", e.reply)
                return
            if event is NEED_DATA:
                return
            self._handle(event)

    def _handle(self, event: Message) -> None:
        if isinstance(event, SOCKS5Greeting):
            self._chooseMethod(event)
        elif isinstance(event, UsernamePasswordRequest):
            self._authenticate(event)
        elif isinstance(event, SOCKS5Request):
            self._request(event.command, event.host, event.port)
        elif isinstance(event, SOCKS4Request):
            self.user = event.userID or None
            if self.factory.portal is not None and not self.factory.allowSOCKS4WithAuth:
                self.command, self.target = event.command, (event.host, event.port)
                self._refuse(
                    SOCKS5ReplyCode.NOT_ALLOWED,
                    "SOCKS4 carries no password and authentication is required",
                )
                return
            self._request(event.command, event.host, event.port)

    def _chooseMethod(self, greeting: SOCKS5Greeting) -> None:
        wanted = (
            AuthMethod.USERNAME_PASSWORD
            if self.factory.portal is not None
            else AuthMethod.NO_AUTHENTICATION
        )
        if wanted in greeting.methods:
            self.transport.write(self._wire.send(MethodSelection(wanted)))  # type: ignore[union-attr]
        else:
            offered = ", ".join(f"{m:#04x}" for m in greeting.methods)
            self.transport.write(  # type: ignore[union-attr]
                self._wire.send(MethodSelection(AuthMethod.NO_ACCEPTABLE_METHODS))
            )
            self.replyCode = AuthMethod.NO_ACCEPTABLE_METHODS
            self._close(f"no acceptable method among those offered ({offered})")

    def _authenticate(self, request: UsernamePasswordRequest) -> None:
        assert self.factory.portal is not None
        self._phase = _Phase.AUTHENTICATING
        self.user = request.username
        credentials = UsernamePassword(request.username, request.password)
        login = self.factory.portal.login(credentials, None, ISOCKSUser)
        self._pending = login
        login.addCallbacks(self._authenticated, self._notAuthenticated)

    def _authenticated(self, result: tuple[Any, Any, Any]) -> None:
        self._pending = None
        _, avatar, _ = result
        self.user = avatar.username or self.user
        self.transport.write(self._wire.send(UsernamePasswordStatus(0)))  # type: ignore[union-attr]
        self._phase = _Phase.HANDSHAKE
        self._release()
        self._advance()

    def _notAuthenticated(self, failure: Failure) -> None:
        self._pending = None
        if isinstance(failure.value, defer.CancelledError):
            return
        if isinstance(failure.value, (UnauthorizedLogin, UnhandledCredentials)):
            reason = "authentication failed: " + (
                failure.getErrorMessage() or "bad username or password"
            )
        else:
            _log.failure("credential checker failed", failure)
            reason = "authentication failed: the credential checker raised an error"
        self.transport.write(self._wire.send(UsernamePasswordStatus(1)))  # type: ignore[union-attr]
        self.replyCode = 1
        self._close(reason)

    def _request(self, command: Command, host: str, port: int) -> None:
        self.command, self.target = command, (host, port)
        if command is Command.CONNECT:
            if _isUnspecified(host):
                self._refuse(
                    SOCKS5ReplyCode.HOST_UNREACHABLE, "unspecified target address"
                )
            else:
                self._connect(host, port)
        elif command is Command.BIND:
            self._bind(host)
        else:
            self._associate(port)

    def _waitForTarget(self) -> None:
        """
        Stop the handshake clock; hold what the client sent so far, and
        sends meanwhile, for the target.
        """
        self._phase = _Phase.CONNECTING
        self._cancelDeadline()
        trailing = self._wire.takeTrailingData()
        self._earlyData.append(trailing)
        self._hold(len(trailing))

    def _hold(self, count: int) -> None:
        self._held += count
        if self._held > HOLD_LIMIT and not self._paused:
            self._paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def _release(self) -> None:
        self._held = 0
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()  # type: ignore[union-attr]

    # The outbound connection

    def _connect(self, host: str, port: int) -> None:
        self._waitForTarget()
        timeout = self.factory.connectTimeout
        try:
            endpoint = self.factory.endpointFor(host, port, timeout)
            connecting = endpoint.connect(TargetFactory(self))
        except Exception as e:  # a name that cannot even be dialled (bad IDNA)
            self._refuse(SOCKS5ReplyCode.HOST_UNREACHABLE, f"invalid host name: {e}")
            return
        connecting.addTimeout(timeout, self._reactor)
        self._pending = connecting
        connecting.addCallbacks(self._dialled, self._connectFailed)

    def _dialled(self, target: TargetProtocol) -> None:
        self._connected(target, hostAndPort(target.transport.getHost()))  # type: ignore[union-attr]

    def _connected(self, target: TargetProtocol, replyAddress: tuple[str, int]) -> None:
        """
        The target (or the BIND peer) is connected: reply success naming
        C{replyAddress}, then relay.
        """
        self._pending = None
        self._target = target
        self.replyCode = 0
        self.transport.write(self._wire.send(self._success(*replyAddress)))  # type: ignore[union-attr]
        self._relay = target.relay = Relay(
            self.transport,  # type: ignore[arg-type]
            target.transport,  # type: ignore[arg-type]
            self._endSession,
        )
        self._phase = _Phase.RELAYING
        self._relay.start()
        early = b"".join(self._earlyData)
        self._earlyData.clear()
        if early:
            self.bytesFromClient += len(early)
            target.transport.write(early)  # type: ignore[union-attr]
        if self._clientEOF:
            self._relay.readClosed(self.transport)  # type: ignore[arg-type]
        else:
            self._release()
        if self.factory.idleTimeout:
            self._watchIdle(self.factory.idleTimeout, self._relayActivity)

    def _connectFailed(self, failure: Failure) -> None:
        self._pending = None
        if self._phase is _Phase.CLOSED:
            return  # the client left; the attempt was cancelled
        self._earlyData.clear()
        code = replyCodeFor(failure)
        self._refuse(code, f"connecting failed: {failure.getErrorMessage()}")

    # BIND

    def _bind(self, host: str) -> None:
        self._waitForTarget()
        family = socket.AF_INET if self._wire.version == 4 else _familyOf(host, self)
        if addressTypeOf(host) is not _AddressType.DOMAIN:
            expecting: defer.Deferred[list[str] | None] = defer.succeed(
                None if _isUnspecified(host) else [host]
            )
        else:
            expecting = self.factory.resolve(host, family)
        self._pending = expecting
        expecting.addCallback(self._listenForPeer, family)
        expecting.addErrback(self._bindFailed)

    def _listenForPeer(self, expected: list[str] | None, family: int) -> None:
        self._pending = None
        peers = BindFactory(
            self, frozenset(map(normalizeIP, expected)) if expected else None
        )
        interface = self._serviceInterface(family)
        listening = self.factory.listenFor(interface).listen(peers)
        self._pending = listening
        listening.addCallback(self._listening, peers)
        listening.addErrback(self._bindFailed)

    def _listening(self, port: IListeningPort, peers: BindFactory) -> None:
        self._pending = None
        peers.listener = port
        if self._phase is _Phase.CLOSED:
            peers.peer.cancel()
            return
        first = self._success(*self._replyAddress(port.getHost()))
        self.transport.write(self._wire.send(first))  # type: ignore[union-attr]
        waiting = peers.peer
        waiting.addTimeout(self.factory.bindTimeout, self._reactor)
        self._pending = waiting
        waiting.addCallbacks(self._peerConnected, self._bindFailed)

    def _peerConnected(self, peer: TargetProtocol) -> None:
        self._connected(peer, hostAndPort(peer.transport.getPeer()))  # type: ignore[union-attr]

    def _bindFailed(self, failure: Failure) -> None:
        self._pending = None
        if self._phase is _Phase.CLOSED:
            return
        self._earlyData.clear()
        if isinstance(failure.value, UnexpectedPeerError):
            code = SOCKS5ReplyCode.NOT_ALLOWED
        elif isinstance(failure.value, defer.TimeoutError):
            code = SOCKS5ReplyCode.TTL_EXPIRED
            failure = Failure(
                defer.TimeoutError(
                    f"no peer connected within {self.factory.bindTimeout:g} s"
                )
            )
        else:
            code = replyCodeFor(failure)
        self._refuse(code, f"BIND failed: {failure.getErrorMessage()}")

    # UDP ASSOCIATE

    def _associate(self, clientPort: int) -> None:
        self._phase = _Phase.ASSOCIATED
        self._cancelDeadline()
        self._wire.takeTrailingData()
        local = self.transport.getHost()  # type: ignore[union-attr]
        family = _familyOfAddress(local)
        clientHost, _ = hostAndPort(self.transport.getPeer())  # type: ignore[union-attr]
        association = UDPAssociation(
            clientHost, clientPort, family, self.factory.resolve
        )
        try:
            port = self.factory.listenUDP(self._serviceInterface(family), association)
        except Exception as e:
            self._refuse(SOCKS5ReplyCode.GENERAL_FAILURE, f"no UDP port: {e}")
            return
        self._association, self._udpPort = association, port
        self.replyCode = 0
        reply = self._success(*self._replyAddress(port.getHost()))
        self.transport.write(self._wire.send(reply))  # type: ignore[union-attr]
        self._watchIdle(self.factory.udpTimeout, association.activity)

    def _endAssociation(self) -> None:
        association, self._association = self._association, None
        port, self._udpPort = self._udpPort, None
        if port is not None:
            port.stopListening()
        if association is not None:
            association.logEnd(self._clientName(), self.reason or "client left")

    # Addresses of the listeners BIND and UDP ASSOCIATE open

    def _serviceInterface(self, family: int) -> str:
        """
        Where to listen for a BIND peer or UDP datagrams: the address the
        client reached this server at, when it is of the right family.
        """
        local = self.transport.getHost()  # type: ignore[union-attr]
        if isinstance(local, IPv4Address | IPv6Address):
            host = normalizeIP(local.host)
            if _familyOfAddress(local) == family:
                return host
            loopback = ipaddress.ip_address(host).is_loopback
        else:
            loopback = True  # a UNIX socket: local clients only
        if family == socket.AF_INET:
            return "127.0.0.1" if loopback else "0.0.0.0"
        return "::1" if loopback else "::"

    def _replyAddress(self, listening: IAddress) -> tuple[str, int]:
        """
        The address a reply names for a listener: the operator's external
        address when configured (for NAT), else the listener's own.
        """
        host, port = hostAndPort(listening)
        external = self.factory.externalAddress
        if external is not None and _familyOf(external, self) == _familyOf(host, self):
            return external, port
        return host, port

    def _success(self, host: str, port: int) -> SOCKS4Reply | SOCKS5Reply:
        if self._wire.version == 4:
            ipv4 = addressTypeOf(host) is _AddressType.IPV4
            return SOCKS4Reply(
                SOCKS4ReplyCode.GRANTED, host if ipv4 else "0.0.0.0", port
            )
        return SOCKS5Reply(SOCKS5ReplyCode.SUCCEEDED, host, port)

    # Idle timeouts

    def _relayActivity(self) -> int:
        assert self._target is not None
        return self.bytesFromClient + self._target.bytesReceived

    def _watchIdle(self, timeout: float, activity: Callable[[], int]) -> None:
        def expired() -> None:
            self._idle = None
            self.reason = f"idle for {timeout:g} s"
            self.transport.loseConnection()  # type: ignore[union-attr]

        self._idle = IdleWatch(self._reactor, timeout, activity, expired)
        self._idle.start()

    # Endings

    def _refuse(self, code: SOCKS5ReplyCode, reason: str) -> None:
        """
        Answer the request with a failure reply and close.  SOCKS4 has one
        failure code for everything.
        """
        reply: SOCKS4Reply | SOCKS5Reply
        if self._wire.version == 4:
            reply = SOCKS4Reply(SOCKS4ReplyCode.REJECTED)
        else:
            reply = SOCKS5Reply(code)
        self.replyCode = reply.code
        self.transport.write(self._wire.send(reply))  # type: ignore[union-attr]
        self._close(f"{reason} ({_REPLY_NAMES[code]})")

    def _close(self, reason: str, finalBytes: bytes | None = None) -> None:
        """
        End the session before it relays anything.
        """
        if self._phase is _Phase.CLOSED:
            return
        self._phase = _Phase.CLOSED
        self.reason = reason
        self._cancelTimers()
        if finalBytes:
            if self.replyCode is None:
                self.replyCode = finalBytes[1] if len(finalBytes) > 1 else None
            self.transport.write(finalBytes)  # type: ignore[union-attr]
        self._linger()

    def _linger(self) -> None:
        """
        Close without a reset: shut the write side once the last reply is
        flushed, then read and discard what the client still sends until it
        closes, or for LINGER_TIMEOUT seconds.  Closing a socket with unread
        input sends a reset, which can make the client lose the reply.
        """
        transport = self.transport
        assert transport is not None
        self._lingerCall = self._reactor.callLater(
            LINGER_TIMEOUT, transport.loseConnection
        )
        transport.loseWriteConnection()  # type: ignore[attr-defined]
        self._release()

    def _handshakeTimedOut(self) -> None:
        self._deadline = None
        pending, self._pending = self._pending, None
        self._close(
            f"handshake not finished within {self.factory.handshakeTimeout:g} s"
        )
        if pending is not None:
            pending.cancel()

    def _cancelDeadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _cancelTimers(self) -> None:
        self._cancelDeadline()
        if self._lingerCall is not None and self._lingerCall.active():
            self._lingerCall.cancel()
        self._lingerCall = None
        if self._idle is not None:
            self._idle.stop()
            self._idle = None

    def _clientName(self) -> str:
        return "{}:{}".format(*hostAndPort(self.transport.getPeer()))  # type: ignore[union-attr]

    def _endSession(self) -> None:
        """
        Log the one event that sums the session up.
        """
        if self._ended:
            return
        self._ended = True
        self._cancelTimers()
        client = self._clientName()
        target = "{}:{}".format(*self.target) if self.target else "-"
        _log.info(
            "SOCKS session {client} user={user} version={version} "
            "command={command} target={target} reply={reply} "
            "bytes_up={bytesFromClient} bytes_down={bytesToClient} "
            "duration={duration:.3f}s{reasonSuffix}",
            client=client,
            user=self.user.decode("utf-8", "replace") if self.user else "-",
            version=self._wire.version or "-",
            command=self.command.name if self.command is not None else "-",
            target=target,
            reply=self.replyCode if self.replyCode is not None else "-",
            bytesFromClient=self.bytesFromClient,
            bytesToClient=self._target.bytesReceived if self._target else 0,
            duration=self._reactor.seconds() - self._started,
            reason=self.reason,
            reasonSuffix=f" reason={self.reason!r}" if self.reason else "",
        )


def _isUnspecified(host: str) -> bool:
    return (
        addressTypeOf(host) is not _AddressType.DOMAIN
        and ipaddress.ip_address(host).is_unspecified
    )


def _familyOfAddress(address: IAddress) -> int:
    return socket.AF_INET6 if isinstance(address, IPv6Address) else socket.AF_INET


def _familyOf(host: str, session: SOCKSServerProtocol) -> int:
    """
    The family of an IP literal; for a name, that of the client's connection.
    """
    addressType = addressTypeOf(host)
    if addressType is _AddressType.IPV4:
        return socket.AF_INET
    if addressType is _AddressType.IPV6:
        return socket.AF_INET6
    return _familyOfAddress(session.transport.getHost())  # type: ignore[union-attr]
