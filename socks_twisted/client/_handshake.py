"""
One client connection attempt through a SOCKS proxy: the protocol that
speaks the handshake on the connection to the proxy and then hands the
connection over to the application protocol, and the attempt that owns the
caller's L{Deferred}, its cancellation and its timeout.

The bytes and the order of the messages are the business of
L{socks_twisted._wire.ClientConnection}; this module only moves them and
maps outcomes to L{socks_twisted.errors}.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any, TypeVar, cast

from twisted.internet.defer import Deferred
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    NoProtocol,
    TimeoutError,
)
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IHandshakeListener,
    ILoggingContext,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from .._addresses import TunnelAddress, addressFor
from .._gssstream import DatagramWrapper, ProtectedTransport, Unwrapper
from .._wire import (
    NEED_DATA,
    AuthMethod,
    ClientConnection,
    HandshakeState,
    Message,
    MethodSelection,
    ProtectionLevel,
    ProtocolError,
    SOCKS4Reply,
    SOCKS4Request,
    SOCKS5Greeting,
    SOCKS5Reply,
    SOCKS5Request,
    UsernamePasswordRequest,
    UsernamePasswordStatus,
)
from ..errors import (
    AuthenticationFailedError,
    NoAcceptableMethodsError,
    SOCKSError,
    SOCKSProtocolError,
    errorForSOCKS4Reply,
    errorForSOCKS5Reply,
)
from ._gssapi import GSSAPIExchange, GSSAPIOptions
from ._tunnel import SOCKSTunnelTransport

_METHOD_NAMES: dict[int, str] = {
    AuthMethod.NO_AUTHENTICATION: "no authentication",
    AuthMethod.GSSAPI: "GSSAPI",
    AuthMethod.USERNAME_PASSWORD: "username/password",
}


_E = TypeVar("_E", bound=ConnectError)


def makeError(cls: type[_E], message: str) -> _E:
    """
    Instantiate one of Twisted's L{ConnectError} classes (whose constructor
    carries no annotations) with a message.
    """
    return cls(string=message)


def describeMethods(methods: tuple[int, ...]) -> str:
    """
    Name SOCKS5 methods in words, for error messages.
    """
    return ", ".join(_METHOD_NAMES.get(m, f"method {m:#04x}") for m in methods)


@dataclass(frozen=True)
class Negotiation:
    """
    What the client says to the proxy, message by message.

    @ivar request: The request; its type decides the SOCKS version.
    @ivar methods: The SOCKS5 methods offered, in the caller's order.
    @ivar credentials: The RFC 1929 request to send if the proxy selects
        username/password.
    @ivar gssapi: How to authenticate if the proxy selects GSSAPI.
    """

    request: SOCKS5Request | SOCKS4Request
    methods: tuple[int, ...] = ()
    credentials: UsernamePasswordRequest | None = field(default=None, repr=False)
    gssapi: GSSAPIOptions | None = None

    @property
    def version(self) -> int:
        """
        4 or 5.
        """
        return 5 if isinstance(self.request, SOCKS5Request) else 4


@implementer(IHalfCloseableProtocol, ILoggingContext)
class SOCKSClientProtocol(Protocol):
    """
    The protocol on the connection to the proxy.

    It sends the greeting (or the SOCKS4 request) as soon as it is connected,
    answers the proxy's messages, and on success connects the application
    protocol to a L{SOCKSTunnelTransport}.  From then on every
    C{dataReceived} is one call to the application's C{dataReceived}, and
    C{connectionLost}, C{readConnectionLost} and C{writeConnectionLost} are
    passed on (the last two only if the application protocol provides
    L{IHalfCloseableProtocol}, checked when they happen, so that a chained
    tunnel, whose application is itself a L{SOCKSClientProtocol}, keeps
    half-close).

    L{IHalfCloseableProtocol} is provided from the start, because
    L{twisted.internet.endpoints}' C{_WrappingProtocol} looks once, when it is
    built.  L{IHandshakeListener} is provided only once the tunnel is up and
    only if the application provides it: C{_WrappingProtocol} calls
    C{directlyProvides} once per interface it finds, so a protocol that
    provides both from the start ends up with the last one only, and loses
    half-close.
    """

    def __init__(self, attempt: ConnectAttempt, negotiation: Negotiation) -> None:
        self._attempt = attempt
        self._negotiation = negotiation
        self._connection = ClientConnection()
        self._app: IProtocol | None = None
        self._tunnel: SOCKSTunnelTransport | None = None
        self._pending = b""
        self._finished = False
        self._waitingFor = "the connection"
        #: Where received bytes go: the handshake, then the application.
        self._receive: Callable[[bytes], None] = self._handshakeDataReceived
        self._gssapi: GSSAPIExchange | None = None
        #: Under GSS-API protection: what unwraps the proxy's bytes, and the
        #: transport that wraps ours.
        self._unwrapper: Unwrapper | None = None
        self._protected: ProtectedTransport | None = None
        self._datagrams: DatagramWrapper | None = None
        #: The GSS-API protection level the proxy granted, if any.
        self.protection: ProtectionLevel | None = None

    def logPrefix(self) -> str:
        """
        The application's log prefix once connected, else our own.
        """
        if self._app is not None:
            if ILoggingContext.providedBy(self._app):
                prefix: str = ILoggingContext(self._app).logPrefix()
                return prefix
            return type(self._app).__name__
        return f"SOCKS{self._negotiation.version}Client"

    # The handshake

    def connectionMade(self) -> None:
        """
        Start the handshake.
        """
        if not self._attempt.negotiationStarted(self):
            self._finished = True
            self._abortTransport()
            return
        if isinstance(self._negotiation.request, SOCKS5Request):
            self._send(
                SOCKS5Greeting(self._negotiation.methods), "the method selection"
            )
        else:
            self._send(self._negotiation.request, "the SOCKS4 reply")

    def dataReceived(self, data: bytes) -> None:
        """
        Feed the handshake, or once it succeeded, the application (unwrapped
        first under GSS-API protection).
        """
        if self._unwrapper is not None:
            try:
                data = self._unwrapper.unwrap(data)
            except ProtocolError as e:
                self._unwrapFailed(e.reason)
                return
            if not data:
                return
        self._receive(data)

    def _unwrapFailed(self, reason: str) -> None:
        self._unwrapper = None
        self._receive = self._discard
        if self._app is None:
            self._fail(
                makeError(SOCKSProtocolError, f"GSSAPI protection: {reason}"), True
            )
        else:
            self._abortTransport()

    def _discard(self, data: bytes) -> None:
        """
        Ignore bytes after a failure: the connection is being closed.
        """

    def _handshakeDataReceived(self, data: bytes) -> None:
        self._connection.receiveData(data)
        while not self._finished:
            try:
                event = self._connection.nextEvent()
            except ProtocolError as e:
                self._fail(
                    makeError(
                        SOCKSProtocolError,
                        f"while waiting for {self._waitingFor}: {e.reason}",
                    ),
                    abort=True,
                )
                return
            if event is NEED_DATA:
                return
            self._eventReceived(event)

    def _send(
        self,
        message: SOCKS5Greeting
        | UsernamePasswordRequest
        | SOCKS5Request
        | SOCKS4Request,
        waitingFor: str,
    ) -> None:
        try:
            data = self._connection.send(message)
        except ValueError as e:
            # The endpoints validate every field before connecting, so this
            # is a bug; still, end the attempt with a clear error.
            self._fail(makeError(SOCKSError, f"cannot encode {message!r}: {e}"), True)
            return
        self._waitingFor = waitingFor
        assert self.transport is not None, "messages are sent once connected"
        if self._protected is not None:
            self._protected.write(data)
        else:
            self.transport.write(data)

    def _eventReceived(self, event: Message) -> None:
        negotiation = self._negotiation
        if isinstance(event, MethodSelection):
            if event.method == AuthMethod.NO_ACCEPTABLE_METHODS:
                self._fail(
                    makeError(
                        NoAcceptableMethodsError,
                        "the proxy accepted none of the methods offered: "
                        + describeMethods(negotiation.methods),
                    )
                )
            elif event.method == AuthMethod.USERNAME_PASSWORD:
                assert negotiation.credentials is not None
                self._send(negotiation.credentials, "the authentication status")
            elif event.method == AuthMethod.GSSAPI:
                self._startGSSAPI()
            else:
                self._send(negotiation.request, "the SOCKS5 reply")
        elif isinstance(event, UsernamePasswordStatus):
            if event.succeeded:
                self._send(negotiation.request, "the SOCKS5 reply")
            else:
                self._fail(
                    makeError(
                        AuthenticationFailedError,
                        "the proxy rejected the username and password "
                        f"(RFC 1929 status {event.status:#04x})",
                    )
                )
        elif isinstance(event, SOCKS5Reply | SOCKS4Reply):
            self.replyReceived(event)
        else:  # pragma: no cover - ClientConnection yields only the above
            self._fail(makeError(SOCKSProtocolError, f"unexpected {event!r}"), True)

    def _startGSSAPI(self) -> None:
        """
        The proxy selected GSSAPI: run RFC 1961's exchange, then send the
        request (wrapped if a protection level was agreed).
        """
        options = self._negotiation.gssapi
        assert options is not None, "GSSAPI is offered only with options"
        transport = self.transport
        assert transport is not None
        self._waitingFor = "the GSSAPI exchange"
        self._gssapi = GSSAPIExchange(
            options,
            self._attempt.reactor,
            transport.write,
            self._gssapiDone,
            self._gssapiFailed,
        )
        self._receive = self._gssapi.dataReceived
        self._gssapi.dataReceived(self._connection.takeTrailingData())
        self._gssapi.start()

    def _gssapiDone(self, level: ProtectionLevel, trailing: bytes) -> None:
        exchange = self._gssapi
        assert exchange is not None and exchange.initiator is not None
        assert self.transport is not None
        self.protection = level
        self._receive = self._handshakeDataReceived
        if level in (ProtectionLevel.INTEGRITY, ProtectionLevel.CONFIDENTIALITY):
            self._protected = ProtectedTransport(
                cast(Any, self.transport), exchange.initiator, level
            )
            self._unwrapper = Unwrapper(exchange.initiator, level)
            self._datagrams = DatagramWrapper(exchange.initiator, level)
        self._send(self._negotiation.request, "the SOCKS5 reply")
        if trailing:
            self.dataReceived(trailing)

    def _gssapiFailed(self, reason: str, refused: bool) -> None:
        # A refusal the proxy sent ends gracefully, an error at once.
        error = makeError(AuthenticationFailedError, f"GSSAPI: {reason}")
        self._fail(error, abort=not refused)

    def replyReceived(self, reply: SOCKS5Reply | SOCKS4Reply) -> None:
        """
        The proxy answered the request.

        A CONNECT has one reply.  (A BIND has two; a BIND client overrides
        this method to report the first one, the address the proxy listens
        on, before the second.)
        """
        if isinstance(reply, SOCKS5Reply):
            if not reply.succeeded:
                self._fail(errorForSOCKS5Reply(reply.code))
                return
        elif not reply.succeeded:
            self._fail(errorForSOCKS4Reply(reply.code))
            return
        if self._connection.state is HandshakeState.ESTABLISHED:
            self._established(reply)
        else:  # pragma: no cover - only BIND gets here, see above
            self._fail(
                makeError(SOCKSProtocolError, "unexpected intermediate reply"), True
            )

    def boundAddress(self, reply: SOCKS5Reply | SOCKS4Reply) -> TunnelAddress:
        """
        What the tunnel reports as L{SOCKSTunnelTransport.proxyBoundAddress}
        once C{reply}, the final reply, succeeded: its BND address.  (A BIND
        client overrides this to report the address of the first reply, where
        the proxy listened.)
        """
        return addressFor(reply.host, reply.port)

    def _established(self, reply: SOCKS5Reply | SOCKS4Reply) -> None:
        self._finished = True
        trailing = self._connection.takeTrailingData()
        app = self._attempt.buildApplication()
        if app is None:
            self._receive = self._discard
            self._abortTransport()
            return
        assert self.transport is not None
        tunnel = SOCKSTunnelTransport(
            cast(ITransport, self._protected)
            if self._protected is not None
            else self.transport,
            self._attempt.target,
            self.boundAddress(reply),
            self._deliverPending,
            self._datagrams,
        )
        self._app = app
        self._tunnel = tunnel
        self._receive = app.dataReceived
        if IHandshakeListener.providedBy(app):
            alsoProvides(self, IHandshakeListener)
        try:
            app.makeConnection(tunnel)
        except BaseException:
            # Twisted's own endpoints would leave the Deferred unfired here.
            self._attempt.failed(Failure())
            self._abortTransport()
            return
        self._attempt.succeeded(app)
        if trailing and not tunnel.closing:
            self._pending = trailing
            self._deliverPending()

    def _deliverPending(self) -> None:
        """
        Give the application the bytes that came with the reply, unless it
        paused reading; then L{SOCKSTunnelTransport.resumeProducing} calls
        this again.
        """
        if self._pending and self._app is not None and self._tunnel is not None:
            if not self._tunnel.paused:
                data, self._pending = self._pending, b""
                self._app.dataReceived(data)

    def _fail(self, reason: Exception, abort: bool = False) -> None:
        """
        End the attempt with C{reason} and close the connection to the proxy:
        gracefully after a refusal the proxy sent, at once after a protocol
        error.
        """
        if self._finished:
            return
        self._finished = True
        self._receive = self._discard
        self._attempt.failed(Failure(reason))
        if abort:
            self._abortTransport()
        elif self.transport is not None:
            self.transport.loseConnection()

    def abort(self) -> None:
        """
        Stop the handshake and abort the connection to the proxy, without
        reporting anything (the attempt was cancelled or timed out).
        """
        self._finished = True
        if self._gssapi is not None:
            self._gssapi.cancel()
        self._receive = self._discard
        self._abortTransport()

    def _abortTransport(self) -> None:
        transport = self.transport
        if transport is None:
            return
        abortConnection = getattr(transport, "abortConnection", None)
        if abortConnection is not None:
            abortConnection()
        else:
            transport.loseConnection()

    # Connection events

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Tell the application, or fail the attempt if the proxy closed the
        connection during the handshake.
        """
        if self._gssapi is not None:
            self._gssapi.cancel()
        if self._app is not None:
            self._app.connectionLost(reason)
            return
        if not self._finished:
            self._finished = True
            self._receive = self._discard
            self._attempt.failed(Failure(self._closedError(reason)))

    def _closedError(self, reason: Failure | None) -> SOCKSProtocolError:
        why = f": {reason.getErrorMessage()}" if reason is not None else ""
        return makeError(
            SOCKSProtocolError,
            "the proxy closed the connection while we waited for "
            f"{self._waitingFor}{why}",
        )

    def readConnectionLost(self) -> None:
        """
        The proxy sent end-of-file: half-close the application if it can,
        close otherwise; during the handshake, fail.
        """
        if self._app is None:
            if self._gssapi is not None and self._gssapi.active:
                self._gssapi.readClosed()
                return
            self._fail(self._closedError(None), abort=True)
        elif IHalfCloseableProtocol.providedBy(self._app):
            IHalfCloseableProtocol(self._app).readConnectionLost()
        else:
            assert self.transport is not None
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Our write side is closed: tell the application if it cares.
        """
        if self._app is not None and IHalfCloseableProtocol.providedBy(self._app):
            IHalfCloseableProtocol(self._app).writeConnectionLost()

    def handshakeCompleted(self) -> None:
        """
        The transport under us finished a TLS handshake.  Passed on only
        after the tunnel is up (this method is reachable through
        L{IHandshakeListener} only then): a handshake before that was with the
        proxy, which is none of the application's business.
        """
        if self._app is not None and IHandshakeListener.providedBy(self._app):
            IHandshakeListener(self._app).handshakeCompleted()


class _Stage(Enum):
    PENDING = auto()
    RESOLVING = auto()
    CONNECTING = auto()
    NEGOTIATING = auto()
    DONE = auto()


class _HandshakeFactory(Factory):
    """
    Builds the one L{SOCKSClientProtocol} of an attempt.
    """

    noisy = False

    def __init__(self, attempt: ConnectAttempt, negotiation: Negotiation) -> None:
        self._attempt = attempt
        self._negotiation = negotiation

    def buildProtocol(self, addr: IAddress | None) -> SOCKSClientProtocol | None:
        """
        Build the handshake protocol, unless the attempt is already over.
        """
        if self._attempt.finished:
            return None
        return self._attempt.handshakeProtocol(self._negotiation)


class ConnectAttempt:
    """
    One C{connect()} through a proxy, from the first step (name resolution
    or the connection to the proxy) to the application protocol.

    @ivar deferred: What C{connect()} returns.  Cancelling it at any stage
        fails it with L{ConnectingCancelledError} and aborts whatever is in
        progress.
    @ivar target: The address the application's transport reports as its
        peer.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        factory: IProtocolFactory,
        target: IAddress,
        handshakeTimeout: float | None,
    ) -> None:
        self.target = target
        #: The reactor the attempt runs in.
        self.reactor = reactor
        self.deferred: Deferred[IProtocol] = Deferred(self._cancel)
        self._reactor = reactor
        self._factory = factory
        self._handshakeTimeout = handshakeTimeout
        self._stage = _Stage.PENDING
        self._step: Deferred[IProtocol] | Deferred[object] | None = None
        self._protocol: SOCKSClientProtocol | None = None
        self._timeoutCall: IDelayedCall | None = None

    @property
    def finished(self) -> bool:
        """
        Whether L{deferred} has fired or is about to.
        """
        return self._stage is _Stage.DONE

    def waitFor(self, step: Deferred[object]) -> None:
        """
        Note a step before the connection to the proxy (a name resolution)
        that cancellation has to cancel.
        """
        if self._stage is _Stage.DONE:
            step.cancel()
            return
        self._stage = _Stage.RESOLVING
        self._step = step

    def connectVia(
        self, proxyEndpoint: IStreamClientEndpoint, negotiation: Negotiation
    ) -> None:
        """
        Connect to the proxy; the handshake starts when it is connected.
        """
        if self._stage is _Stage.DONE:
            return
        self._stage = _Stage.CONNECTING
        try:
            step: Deferred[IProtocol] = proxyEndpoint.connect(
                _HandshakeFactory(self, negotiation)
            )
        except BaseException:
            self.failed(Failure())
            return
        self._step = step
        step.addErrback(self._proxyConnectFailed)

    def handshakeProtocol(self, negotiation: Negotiation) -> SOCKSClientProtocol:
        """
        Build the protocol that speaks the handshake on the connection to the
        proxy.  (A BIND attempt builds one that reports the first reply.)
        """
        return SOCKSClientProtocol(self, negotiation)

    def _proxyConnectFailed(self, reason: Failure) -> None:
        if self._stage is _Stage.CONNECTING:
            self.failed(reason)

    def negotiationStarted(self, protocol: SOCKSClientProtocol) -> bool:
        """
        The connection to the proxy is up: start the handshake timer.

        @return: Whether to go on (C{False} if the attempt is already over).
        """
        if self._stage is _Stage.DONE:
            return False
        self._stage = _Stage.NEGOTIATING
        self._protocol = protocol
        self.startTimer(
            self._handshakeTimeout,
            f"the SOCKS handshake for {self.target} did not "
            f"finish within {self._handshakeTimeout} seconds",
        )
        return True

    def startTimer(self, seconds: float | None, message: str) -> None:
        """
        Replace the running timer, if any, by one that ends the attempt with
        L{twisted.internet.error.TimeoutError}(C{message}) after C{seconds};
        C{None} for no timer.
        """
        self._stopTimer()
        if seconds is not None:
            self._timeoutCall = self._reactor.callLater(
                seconds, self._timedOut, message
            )

    def _stopTimer(self) -> None:
        if self._timeoutCall is not None and self._timeoutCall.active():
            self._timeoutCall.cancel()
        self._timeoutCall = None

    def buildApplication(self) -> IProtocol | None:
        """
        Build the application protocol, or fail the attempt if the factory
        does not give one.
        """
        try:
            app = self._factory.buildProtocol(self.target)
            if app is None:
                raise NoProtocol()
        except BaseException:
            self.failed(Failure())
            return None
        return app

    def succeeded(self, app: IProtocol) -> None:
        """
        The tunnel is up and C{app} connected to it.
        """
        self._finish()
        self.deferred.callback(app)

    def failed(self, reason: Failure) -> None:
        """
        End the attempt with C{reason}, unless it already ended.
        """
        if self._stage is _Stage.DONE:
            return
        self._finish()
        self.report(reason)

    def report(self, reason: Failure) -> None:
        """
        Fail the caller's L{Deferred} with C{reason}.  (A BIND attempt fails
        the one the caller holds at that stage.)
        """
        self.deferred.errback(reason)

    def _finish(self) -> None:
        self._stage = _Stage.DONE
        self._step = None
        self._stopTimer()

    def _stopProgress(self) -> None:
        """
        Cancel the step in progress or abort the connection to the proxy.
        """
        step, protocol = self._step, self._protocol
        self._finish()
        if protocol is not None:
            protocol.abort()
        elif step is not None:
            step.cancel()

    def _cancel(self, deferred: Deferred[Any]) -> None:
        self._stopProgress()
        deferred.errback(Failure(ConnectingCancelledError(self.target)))

    def _timedOut(self, message: str) -> None:
        self._timeoutCall = None
        if self._stage is _Stage.DONE:
            return
        self._stopProgress()
        self.report(Failure(makeError(TimeoutError, message)))
