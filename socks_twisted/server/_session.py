"""
One SOCKS session on the server: the handshake and its phases, the hand-off
to a command handler, the relay, and the session's end.
"""

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.internet import defer
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IListeningPort,
    IReactorTime,
)
from twisted.internet.protocol import Protocol as _Protocol
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .._addresses import formatAddress, formatHostPort, isUnspecified
from .._bandwidth import BucketRegistry, Throttle
from .._gssstream import Unwrapper
from .._transport import StreamTransport, streamTransport, writeNow
from .._wire import (
    LOOKUP_COMMANDS,
    NEED_DATA,
    AuthMethod,
    Command,
    GSSAPIMessageReader,
    Message,
    MethodSelection,
    ProtectionLevel,
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
)
from .._wire import AddressType as _AddressType
from .._wire import addressTypeOf as _addressTypeOf
from ..auth import ISOCKSUser
from ..policy import Decision, Policy
from ..policy import Request as PolicyRequest
from ..relay import CAPPED_READ_SIZE, Relay
from ._associate import associate
from ._bind import bind
from ._command import (
    Associated,
    Handler,
    Outcome,
    RefusedError,
    Relayed,
    Request,
    Resolved,
    deniedBy,
)
from ._connect import connect
from ._foreign import HTTP_ANSWER, LONGEST_PREFIX, Foreign, identify
from ._gssmethod import GSSAPIMethod
from ._idle import IdleWatch
from ._limits import PER_USER, RATE, Limiter
from ._lookup import resolve, resolvePTR
from ._metrics import ServerMetrics, SessionCounts
from ._own import OwnAddresses
from ._phase import Phase as _Phase
from ._sessionlog import clientName, logSession, logSessionStart
from ._settings import Network, ServerSettings
from ._target import TargetProtocol
from ._throttling import SessionBandwidth
from ._udp import UDPAssociation

if TYPE_CHECKING:
    from .._gss import Acceptor

_log = Logger()

_SESSION_IDS = itertools.count(1)

#: The handler of each command.
HANDLERS: dict[Command, Handler] = {
    Command.CONNECT: connect,
    Command.BIND: bind,
    Command.UDP_ASSOCIATE: associate,
    Command.RESOLVE: resolve,
    Command.RESOLVE_PTR: resolvePTR,
}

#: The commands served without Tor's extensions (C{torResolve} off).
_WITHOUT_TOR = frozenset(Command) - LOOKUP_COMMANDS


#: Seconds a refused session waits for the client to close after the reply
#: (RFC 1928 allows up to 10).
LINGER_TIMEOUT = 2.0

#: Seconds a session whose client sent end-of-file before its reply keeps
#: its credential check, dial or BIND listener going.  A client that
#: pipelined its request and data and then half-closed is served if the
#: target answers within it; one that gave up frees its slot after it.
DEPARTURE_GRACE = 3.0

#: The most a session holds of what the client sent before the target is
#: connected (or while its credentials are checked) before it stops reading.
#: Reading on until then is what lets a client's disconnect be noticed.
HOLD_LIMIT = 64 * 1024

#: The reason a session's own pause of its client is held under, once the
#: relay's gate decides (see L{Relay.gate}).
_HOLD = "hold"

#: The names the rules give the commands.
_POLICY_COMMANDS = {
    Command.CONNECT: "connect",
    Command.BIND: "bind",
    Command.UDP_ASSOCIATE: "udp",
    Command.RESOLVE: "resolve",
    Command.RESOLVE_PTR: "resolve_ptr",
}

#: How a refusal by the per-user limits is logged.
_USER_LIMIT_NAMES = {
    PER_USER: "sessions-per-user reached",
    RATE: "new sessions per second for this user exceeded",
}

#: The outcome each failure reply stands for.
_OUTCOMES = {
    SOCKS5ReplyCode.GENERAL_FAILURE: "error",
    SOCKS5ReplyCode.NOT_ALLOWED: "denied",
    SOCKS5ReplyCode.NETWORK_UNREACHABLE: "unreachable",
    SOCKS5ReplyCode.HOST_UNREACHABLE: "unreachable",
    SOCKS5ReplyCode.CONNECTION_REFUSED: "refused",
    SOCKS5ReplyCode.TTL_EXPIRED: "timeout",
    SOCKS5ReplyCode.COMMAND_NOT_SUPPORTED: "protocol_error",
    SOCKS5ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED: "protocol_error",
}

_REPLY_NAMES = {code: code.name.lower().replace("_", " ") for code in SOCKS5ReplyCode}


class SessionFactory(Protocol):
    """
    What a session needs of the factory that built it.
    """

    reactor: IReactorTime
    settings: ServerSettings
    network: Network
    ownAddresses: OwnAddresses
    limiter: Limiter
    metrics: ServerMetrics

    @property
    def policy(self) -> Policy:
        """
        The rules in force now.
        """

    userBandwidthUp: BucketRegistry
    userBandwidthDown: BucketRegistry

    def sessionClosed(self, protocol: "SOCKSServerProtocol") -> None:
        """
        Forget a session whose client connection ended.
        """

    def admitBehindProxy(self, protocol: "SOCKSServerProtocol", peer: IAddress) -> bool:
        """
        Whether the real client C{peer} (from a PROXY protocol header) may
        start a session; if so, C{protocol.clientKey} is set.
        """


@implementer(IHalfCloseableProtocol)
class SOCKSServerProtocol(_Protocol, GSSAPIMethod):
    """
    The server's side of one client connection.

    The handshake runs on a L{ServerConnection}; its phases here are an
    explicit enum because each one is a single asynchronous wait (a credential
    check, a command's outcome), not a grammar.  Once the session relays,
    C{dataReceived} is one write to the target's transport.
    """

    # A server holds thousands of these: their own attributes in slots, not
    # in a dictionary each (Protocol's, and anything else, still go in one).
    __slots__ = (
        "_admittedUser",
        "_association",
        "_awaitingAdmission",
        "_bandwidth",
        "_bound",
        "_client",
        "_clientEOF",
        "_clientNameText",
        "_counted",
        "_deadline",
        "_decision",
        "_earlyData",
        "_ended",
        "_graceCall",
        "_held",
        "_host",
        "_idle",
        "_isSOCKS",
        "_lingerCall",
        "_paused",
        "_pending",
        "_phase",
        "_policy",
        "_policyRequest",
        "_prefix",
        "_relay",
        "_requestRead",
        "_started",
        "_target",
        "_targetHost",
        "_targetTransport",
        "_udpPort",
        "_upThrottle",
        "_wire",
        "bytesFromClient",
        "clientKey",
        "command",
        "network",
        "outcome",
        "ownAddresses",
        "reactor",
        "reason",
        "replyCode",
        "rule",
        "sessionID",
        "settings",
        "target",
        "user",
        "versionName",
        "via",
        "viaBound",
    )

    #: Put before every session id: a worker's number and a dot under
    #: C{--workers}, so that ids stay unique across the worker processes.
    sessionPrefix = ""

    def __init__(
        self,
        factory: SessionFactory,
        clientKey: str | None = None,
        behindProxy: bool = False,
    ) -> None:
        """
        @param clientKey: The client's IP as the limits count it (see
            L{clientKey}); C{None} for none.
        @param behindProxy: Whether the connection comes through a load
            balancer speaking the PROXY protocol: the real client is known,
            and admitted or refused, only once the header has been read (see
            L{SessionFactory.admitBehindProxy}).
        """
        self.factory = factory
        self.clientKey = clientKey
        self._awaitingAdmission = behindProxy
        self.settings: ServerSettings = factory.settings
        self.network: Network = factory.network
        self.ownAddresses: OwnAddresses = factory.ownAddresses
        self.reactor: IReactorTime = factory.reactor
        self._wire = ServerConnection(
            None if self.settings.torResolve else _WITHOUT_TOR
        )
        self._phase = _Phase.HANDSHAKE
        self._deadline: IDelayedCall | None = None
        self._lingerCall: IDelayedCall | None = None
        self._graceCall: IDelayedCall | None = None
        self._pending: defer.Deferred[Any] | None = None
        self._isSOCKS = False
        self._prefix = b""
        self._earlyData: list[bytes] = []
        self._clientEOF = False
        self._held = 0
        self._paused = False
        self._admittedUser: bytes | None = None
        self._policy: Policy
        self._policyRequest: PolicyRequest
        self._decision: Decision
        self._bandwidth: SessionBandwidth | None = None
        self._upThrottle: Throttle | None = None
        self._target: TargetProtocol | None = None
        self._targetTransport: StreamTransport
        self._relay: Relay | None = None
        self._idle: IdleWatch | None = None
        self._association: UDPAssociation | None = None
        self._udpPort: IListeningPort | None = None
        self._ended = False
        self._bound: str | None = None
        self.bytesFromClient = 0
        self.user: bytes | None = None
        self.versionName = "-"
        self.command: Command | None = None
        self.target: tuple[str, int] | None = None
        self.replyCode: int | None = None
        self.reason = ""
        #: How the session ended, as the metrics and the log name it.
        self.outcome: str | None = None
        #: The rule that decided the request, if the rules were asked.
        self.rule: str | None = None
        #: The upstream proxy the request went through, and the address
        #: its reply named (see L{routed}).
        self.via: str | None = None
        self.viaBound: str | None = None
        #: Short, unique in this process: in every log line of the session.
        self.sessionID = self.sessionPrefix + format(next(_SESSION_IDS), "x")
        self._requestRead: float | None = None
        self._clientNameText: str | None = None
        self._counted = SessionCounts(factory.metrics)
        self._gssReader: GSSAPIMessageReader | None = None
        self._gssBusy = False
        self._acceptor: Acceptor
        self._unwrapper: Unwrapper | None = None
        #: The GSS-API protection level agreed, if the GSSAPI method was.
        self.protection: ProtectionLevel | None = None

    # What a command handler sees (CommandContext)

    @property
    def client(self) -> StreamTransport:
        """
        The client's connection.
        """
        return self._client

    @property
    def localAddress(self) -> IAddress:
        """
        The address the client reached this server at.
        """
        return self._host

    @property
    def metrics(self) -> ServerMetrics:
        """
        Where the server counts what it does.
        """
        metrics: ServerMetrics = self.factory.metrics
        return metrics

    @property
    def policy(self) -> Policy:
        """
        The rules in force when the request was read.
        """
        return self._policy

    @property
    def policyRequest(self) -> PolicyRequest:
        """
        The request as the rules see it.
        """
        return self._policyRequest

    @property
    def decision(self) -> Decision:
        """
        The rules' decision on the request.
        """
        return self._decision

    def announce(self, host: str, port: int) -> None:
        """
        Send an interim success reply (BIND's first).
        """
        self._bound = formatHostPort(host, port)
        self._reply(self._success(host, port))

    def routed(self, via: str, bound: str | None = None) -> None:
        """
        Note the upstream proxy the request goes through, for the log.
        """
        self.via, self.viaBound = via, bound

    # Protocol events

    def connectionMade(self) -> None:
        self._client = streamTransport(self.transport)
        # Kept: a TCP transport cannot tell its own address once closed.
        # Behind a PROXY-protocol wrapper this is still the socket's own
        # address (the header is read after connectionMade), which is what
        # BIND and UDP must listen on: this node's, not the balancer's.
        self._host = self._client.getHost()
        self.ownAddresses.add(self._host)
        self._started = self.reactor.seconds()
        self._deadline = self.reactor.callLater(
            self.settings.handshakeTimeout, self._handshakeTimedOut
        )

    def dataReceived(self, data: bytes) -> None:
        if self._unwrapper is not None:
            try:
                data = self._unwrapper.unwrap(data)
            except ProtocolError as e:
                self._protectionBroken(e.reason)
                return
            if not data:
                return
        if self._phase is _Phase.RELAYING:
            self._targetTransport.write(data)
            self._sentUp(len(data))
        elif self._phase is _Phase.HANDSHAKE:
            if self._awaitingAdmission and not self._admitted():
                return
            if not self._isSOCKS:
                if self._prefix or data[:1] not in (b"\x04", b"\x05"):
                    self._notSOCKS(data)
                    return
                self._isSOCKS = True
            self._wire.receiveData(data)
            self._advance()
        elif self._phase is _Phase.AUTHENTICATING:
            self._wire.receiveData(data)  # a pipelined request, parsed later
            self._hold(len(data))
        elif self._phase is _Phase.CONNECTING:
            self._earlyData.append(data)
            self._hold(len(data))
        elif self._phase is _Phase.GSSAPI:
            assert self._gssReader is not None
            self._gssReader.receiveData(data)
            if self._gssBusy:
                self._hold(len(data))
            else:
                self._gssAdvance()
        # ASSOCIATED: the control connection carries nothing; CLOSED: too late.

    def _admitted(self) -> bool:
        """
        The PROXY header has been read (the wrapper passes on nothing
        before it): admit or refuse the real client now.  A refused one is
        closed without a session of its own in the log; the factory logged
        the refusal.
        """
        self._awaitingAdmission = False
        if self.factory.admitBehindProxy(self, self._client.getPeer()):
            return True
        self._ended = True
        self._phase = _Phase.CLOSED
        self._cancelTimers()
        self._client.abortConnection()
        return False

    def readConnectionLost(self) -> None:
        if self._relay is not None:
            self._relay.readClosed(self._client)
        elif self._phase in (_Phase.AUTHENTICATING, _Phase.CONNECTING):
            # Either a client that gave up, or one that pipelined its request
            # and data and half-closed: serve it if the outcome comes soon.
            self._clientEOF = True
            self._graceCall = self.reactor.callLater(DEPARTURE_GRACE, self._departed)
        elif self._phase is _Phase.CLOSED:
            self._client.loseConnection()  # lingering: the client is done
        else:
            self._close(
                "client closed the UDP control connection"
                if self._phase is _Phase.ASSOCIATED
                else "client closed the connection during the handshake",
                outcome="client_left",
            )
            # The client has finished sending: nothing is left to drain.
            self._client.loseConnection()

    def writeConnectionLost(self) -> None:
        pass  # the relay shut this direction itself

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.sessionClosed(self)
        self._cancelTimers()
        if self._relay is not None:
            self._relay.connectionLost(self._client, reason)
            return
        if self._phase is not _Phase.CLOSED:
            phase = self._phaseName()
            self._phase = _Phase.CLOSED
            self.reason = self.reason or (
                f"client left during {phase}: {reason.getErrorMessage()}"
            )
            self.outcome = self.outcome or "client_left"
        self._cancelPending()
        self._endAssociation()
        self._endSession()

    # Not SOCKS at all

    def _notSOCKS(self, data: bytes) -> None:
        self._prefix += data
        kind = identify(self._prefix[:LONGEST_PREFIX])
        if kind is Foreign.UNDECIDED:
            return
        prefix, self._prefix = self._prefix, b""
        if kind is Foreign.UNKNOWN:
            self._isSOCKS = True
            self._wire.receiveData(prefix)  # the wire layer names the error
            self._advance()
            return
        self.replyCode = None
        if kind is Foreign.HTTP:
            self._close(
                "protocol error: an HTTP request, not a SOCKS request "
                "(is the client configured with this as an HTTP proxy?)",
                HTTP_ANSWER,
                outcome="protocol_error",
            )
        else:
            self._close(
                "protocol error: a TLS ClientHello, not a SOCKS request",
                outcome="protocol_error",
            )

    # The handshake

    def _advance(self) -> None:
        while self._phase is _Phase.HANDSHAKE:
            try:
                event = self._wire.nextEvent()
            except ProtocolError as e:
                self._close(
                    f"protocol error: {e.reason}", e.reply, outcome="protocol_error"
                )
                return
            if event is NEED_DATA:
                return
            self._handle(event)

    def _handle(self, event: Message) -> None:
        if isinstance(event, SOCKS5Greeting):
            self.versionName = "5"
            self._chooseMethod(event)
        elif isinstance(event, UsernamePasswordRequest):
            self._authenticate(event)
        elif isinstance(event, SOCKS5Request):
            self._request(Request(event.command, event.host, event.port, 5))
        elif isinstance(event, SOCKS4Request):
            self.versionName = "4a" if event.isSOCKS4a else "4"
            self.user = event.userID or None
            request = Request(event.command, event.host, event.port, 4)
            if (
                self.settings.portal is not None or self.settings.gssapi is not None
            ) and not self.settings.allowSOCKS4WithAuth:
                self.command, self.target = event.command, (event.host, event.port)
                self._refuse(
                    SOCKS5ReplyCode.NOT_ALLOWED,
                    "SOCKS4 carries no password and authentication is required",
                )
                return
            self._request(request)

    def _chooseMethod(self, greeting: SOCKS5Greeting) -> None:
        # With both GSSAPI and username/password configured, the first of
        # the client's methods that the server supports wins: the client
        # lists them in its order of preference.
        supported = set()
        if self.settings.gssapi is not None:
            supported.add(AuthMethod.GSSAPI)
        if self.settings.portal is not None:
            supported.add(AuthMethod.USERNAME_PASSWORD)
        if not supported:
            supported.add(AuthMethod.NO_AUTHENTICATION)
        wanted = next((m for m in greeting.methods if m in supported), None)
        if wanted is not None:
            self._reply(MethodSelection(AuthMethod(wanted)))
            if wanted == AuthMethod.GSSAPI:
                self._startGSSAPI()
        else:
            offered = ", ".join(f"{m:#04x}" for m in greeting.methods)
            self._reply(MethodSelection(AuthMethod.NO_ACCEPTABLE_METHODS))
            self.replyCode = AuthMethod.NO_ACCEPTABLE_METHODS
            self.factory.metrics.authFailed("no acceptable method")
            self._close(
                f"no acceptable method among those offered ({offered})",
                outcome="auth_failed",
            )

    def _authenticate(self, request: UsernamePasswordRequest) -> None:
        portal = self.settings.portal
        assert portal is not None
        self._phase = _Phase.AUTHENTICATING
        self.user = request.username
        credentials = UsernamePassword(request.username, request.password)
        login = portal.login(credentials, None, ISOCKSUser)
        self._pending = login
        login.addCallbacks(self._authenticated, self._notAuthenticated)

    def _authenticated(self, result: tuple[Any, Any, Any]) -> None:
        self._pending = None
        refusal = self._admitUser(result)
        if refusal is not None:
            self._reply(UsernamePasswordStatus(1))
            self.replyCode = 1
            self._close(refusal, outcome="limit")
            return
        self._reply(UsernamePasswordStatus(0))
        self._phase = _Phase.HANDSHAKE
        self._release()
        self._advance()

    def _notAuthenticated(self, failure: Failure) -> None:
        self._pending = None
        if isinstance(failure.value, defer.CancelledError):
            return
        reason = self._loginFailed(
            failure, "authentication failed", "bad username or password"
        )
        self._reply(UsernamePasswordStatus(1))
        self.replyCode = 1
        self.factory.metrics.authFailed("username/password")
        self._close(reason, outcome="auth_failed")

    def _admitUser(self, result: tuple[Any, Any, Any]) -> str | None:
        """
        A login succeeded: the avatar's user becomes the session's, if the
        per-user limits admit it.

        @return: Why it was refused, or C{None} if it was admitted.
        """
        _, avatar, _ = result
        self.user = avatar.username or self.user
        assert self.user is not None
        refusal = self.factory.limiter.admitUser(self.user)
        if refusal is not None:
            self.factory.metrics.refused(refusal)
            return f"refused: {_USER_LIMIT_NAMES[refusal]}"
        self._admittedUser = self.user
        return None

    def _loginFailed(self, failure: Failure, what: str, rejected: str) -> str:
        """
        A login failed: count a rejection against the client's back-off, or
        log a checker that broke.

        @param what: How the reason starts.
        @param rejected: The reason when the checker gave none.
        @return: The reason, for the log.
        """
        if isinstance(failure.value, (UnauthorizedLogin, UnhandledCredentials)):
            self.factory.limiter.authFailed(self.clientKey)
            return f"{what}: {failure.getErrorMessage() or rejected}"
        _log.failure(
            "credential checker failed (session {session})",
            failure,
            session=self.sessionID,
        )
        return f"{what}: the credential checker raised an error"

    # The request

    def _request(self, request: Request) -> None:
        self.command, self.target = request.command, (request.host, request.port)
        now = self._requestRead = self.reactor.seconds()
        metrics = self.factory.metrics
        metrics.handshakeTook(now - self._started)
        metrics.sessionStarted(_POLICY_COMMANDS[request.command])
        self._logStart()
        policy = self._policy = self.factory.policy
        asked = self._policyRequest = PolicyRequest(
            client=self.clientKey,
            user=self._userText(),
            version=self.versionName,
            command=_POLICY_COMMANDS[request.command],
            host=request.host,
            port=request.port,
        )
        # UDP ASSOCIATE names no destination, nor does a BIND for any peer
        # (0.0.0.0): their datagrams' destinations and their peer are
        # checked when known.
        anyDestination = request.command is Command.UDP_ASSOCIATE or (
            request.command is Command.BIND and isUnspecified(request.host)
        )
        decision = self._decision = policy.decide(
            asked, destinationKnown=not anyDestination
        )
        if decision.rule is not None:
            self.rule = decision.rule.describe()
        if decision.allowed is False:
            denied = deniedBy(
                decision,
                f"{request.command.name} {formatHostPort(request.host, request.port)}",
            )
            self._refuse(denied.code, denied.reason)
            return
        self._phase = _Phase.CONNECTING
        self._cancelDeadline()
        trailing = self._wire.takeTrailingData()
        if request.command is not Command.UDP_ASSOCIATE:
            self._earlyData.append(trailing)
            self._hold(len(trailing))
        outcome = HANDLERS[request.command](request, self)
        self._pending = outcome
        outcome.addCallbacks(self._succeeded, self._failed)

    def _succeeded(self, outcome: Outcome) -> None:
        self._pending = None
        if isinstance(outcome, Relayed):
            self._relayTo(outcome.target, outcome.replyAddress)
        elif isinstance(outcome, Resolved):
            self._answered(outcome.answer)
        else:
            self._associated(outcome)

    def _failed(self, failure: Failure) -> None:
        self._pending = None
        if self._phase is _Phase.CLOSED:
            return  # the client left or the deadline passed: already ended
        self._earlyData.clear()
        if isinstance(failure.value, RefusedError):
            reason = failure.value.reason
            if failure.value.code is SOCKS5ReplyCode.NOT_ALLOWED:
                self.rule = failure.value.rule
            if self._clientEOF:
                reason += " (after the client sent end-of-file)"
            self._refuse(failure.value.code, reason)
        else:
            _log.failure(
                "command handler failed (session {session})",
                failure,
                session=self.sessionID,
            )
            self._refuse(SOCKS5ReplyCode.GENERAL_FAILURE, "internal error")

    def _hold(self, count: int) -> None:
        self._held += count
        if self._held > HOLD_LIMIT and not self._paused:
            self._paused = True
            self._client.pauseProducing()

    def _release(self) -> None:
        self._held = 0
        if self._paused:
            self._paused = False
            if self._relay is not None:
                # Relaying: flow control and throttles may have their own
                # pauses in force; lift only ours.
                self._relay.gate(self._client).resume(_HOLD)
            else:
                self._client.resumeProducing()

    # Success

    def _relayTo(self, target: TargetProtocol, replyAddress: tuple[str, int]) -> None:
        """
        The target (or the BIND peer) is connected: reply success naming
        C{replyAddress}, then relay.
        """
        self._cancelGrace()
        self._target = target
        self._targetTransport = target.stream
        self._targetHost = target.stream.getHost()
        self.replyCode = 0
        self.outcome = "success"
        if self._requestRead is not None:
            self.factory.metrics.connectTook(self.reactor.seconds() - self._requestRead)
        writeNow(self._client, self._wire.send(self._success(*replyAddress)))
        # Data the client sent ahead goes first, before the relay starts:
        # the splicing path writes to the socket directly.
        early = b"".join(self._earlyData)
        self._earlyData.clear()
        if early:
            writeNow(self._targetTransport, early)
        self._relay = target.relay = Relay(
            self._client,
            self._targetTransport,
            self._endSession,
            # Under GSS-API protection the bytes are wrapped here, in Python.
            splice=self.settings.splice and self._unwrapper is None,
            counted=(self._sentUp, target.sent),
        )
        self._phase = _Phase.RELAYING
        if self._paused:
            self._relay.gate(self._client).pause(_HOLD)
        self._relay.start()
        self._throttle(self.settings)
        if early:
            self._sentUp(len(early))
        if self._clientEOF:
            self._relay.readClosed(self._client)
        else:
            self._release()
        if self.settings.idleTimeout:
            self._watchIdle(self.settings.idleTimeout, self._relayActivity)

    def _sentUp(self, count: int) -> None:
        """
        C{count} bytes from the client went to the target.
        """
        self.bytesFromClient += count
        if self._upThrottle is not None:
            self._upThrottle.transferred(count)

    def _throttle(self, settings: ServerSettings) -> None:
        """
        Cap the relay's bandwidth each way if C{settings} say so, or make
        the caps follow them.
        """
        if self._bandwidth is not None:
            self._bandwidth.reconfigure(settings)
            return
        relay, target = self._relay, self._target
        if relay is None or target is None:
            return  # not relaying (yet)
        if not SessionBandwidth.wanted(settings, self.user):
            return
        self._bandwidth = SessionBandwidth(
            self.reactor,
            settings,
            relay.gate(self._client),
            relay.gate(self._targetTransport),
            self.user,
            (self.factory.userBandwidthUp, self.factory.userBandwidthDown),
        )
        self._upThrottle = self._bandwidth.up
        target.throttle = self._bandwidth.down
        relay.limitReads(CAPPED_READ_SIZE)

    def reconfigure(self, settings: ServerSettings) -> None:
        """
        New settings (a reload): a relayed session's bandwidth caps follow
        them; everything else it was started with stays.
        """
        self._throttle(settings)

    def _associated(self, outcome: Associated) -> None:
        self._cancelGrace()
        self._phase = _Phase.ASSOCIATED
        self._association, self._udpPort = outcome.association, outcome.port
        self._bound = formatHostPort(*outcome.replyAddress)
        self.replyCode = 0
        self.outcome = "success"
        self._reply(self._success(*outcome.replyAddress))
        self._watchIdle(self.settings.udpTimeout, outcome.association.activity)
        if self._clientEOF:
            self._close("client closed the UDP control connection", outcome="success")
            self._client.loseConnection()

    def _answered(self, answer: str) -> None:
        """
        A lookup (RESOLVE, RESOLVE_PTR) succeeded: reply with the answer,
        port 0 as Tor does, and end the session.
        """
        self._cancelGrace()
        self._earlyData.clear()
        self.replyCode = 0
        self.outcome = "success"
        self._client.write(self._wire.send(self._success(answer, 0)))
        self._close(f"answered {answer}", outcome="success")

    def _endAssociation(self) -> None:
        association, self._association = self._association, None
        port, self._udpPort = self._udpPort, None
        if port is not None:
            port.stopListening()
        if association is not None:
            self._flushDatagrams(association)
            association.logEnd(self._clientName(), self.reason or "client left")

    def _reply(
        self,
        message: MethodSelection | UsernamePasswordStatus | SOCKS4Reply | SOCKS5Reply,
    ) -> None:
        """
        Send a handshake reply at once: the client waits for it, so a turn
        of the reactor (and two C{epoll_ctl} calls) saved is latency and
        CPU saved; L{writeNow} keeps the order of bytes.
        """
        writeNow(self._client, self._wire.send(message))

    def _success(self, host: str, port: int) -> SOCKS4Reply | SOCKS5Reply:
        if self._wire.version == 4:
            ipv4 = _addressTypeOf(host) is _AddressType.IPV4
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
            self._client.loseConnection()

        self._idle = IdleWatch(self.reactor, timeout, activity, expired)
        self._idle.start()

    # Endings

    def _departed(self) -> None:
        """
        The client sent end-of-file before its reply and the grace is over:
        abandon the credential check, the dial or the BIND listener.
        """
        self._graceCall = None
        phase = self._phaseName()
        self._phase = _Phase.CLOSED
        self.reason = (
            f"client left during {phase} (end-of-file, no outcome within "
            f"{DEPARTURE_GRACE:g} s)"
        )
        self.outcome = "client_left"
        self._cancelPending()
        self._client.loseConnection()

    def _phaseName(self) -> str:
        if self._phase is _Phase.CONNECTING and self.command is Command.BIND:
            return "waiting for the BIND peer"
        if self._phase is _Phase.CONNECTING and self.command in LOOKUP_COMMANDS:
            return "resolving"
        return self._phase.value

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
        self._reply(reply)
        if code is SOCKS5ReplyCode.NOT_ALLOWED and self.rule is not None:
            self.factory.metrics.denied(self.rule)
        self._close(f"{reason} ({_REPLY_NAMES[code]})", outcome=_OUTCOMES[code])

    def _close(
        self, reason: str, finalBytes: bytes | None = None, *, outcome: str
    ) -> None:
        """
        End the session before it relays anything.

        @param outcome: How the session ended, unless already said.
        """
        if self._phase is _Phase.CLOSED:
            return
        self._phase = _Phase.CLOSED
        self.reason = reason
        self.outcome = self.outcome or outcome
        self._cancelTimers()
        if finalBytes:
            if self.replyCode is None and finalBytes[:1] in (b"\x00", b"\x05"):
                self.replyCode = finalBytes[1] if len(finalBytes) > 1 else None
            writeNow(self._client, finalBytes)
        if self._clientEOF:
            self._client.loseConnection()  # nothing more will come to drain
        else:
            self._linger()

    def _linger(self) -> None:
        """
        Close without a reset: shut the write side once the last reply is
        flushed, then read and discard what the client still sends until it
        closes, or for LINGER_TIMEOUT seconds.  Closing a socket with unread
        input sends a reset, which can make the client lose the reply.
        """
        self._lingerCall = self.reactor.callLater(
            LINGER_TIMEOUT, self._client.loseConnection
        )
        self._client.loseWriteConnection()
        self._release()

    def _handshakeTimedOut(self) -> None:
        self._deadline = None
        pending, self._pending = self._pending, None
        self._close(
            f"handshake not finished within {self.settings.handshakeTimeout:g} s",
            outcome="timeout",
        )
        if pending is not None:
            pending.cancel()

    def _cancelPending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    def _cancelDeadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _cancelGrace(self) -> None:
        if self._graceCall is not None and self._graceCall.active():
            self._graceCall.cancel()
        self._graceCall = None

    def _cancelTimers(self) -> None:
        self._cancelDeadline()
        self._cancelGrace()
        if self._lingerCall is not None and self._lingerCall.active():
            self._lingerCall.cancel()
        self._lingerCall = None
        if self._idle is not None:
            self._idle.stop()
            self._idle = None

    def _userText(self) -> str | None:
        return self.user.decode("utf-8", "surrogateescape") if self.user else None

    def _logStart(self) -> None:
        logSessionStart(
            _log,
            session=self.sessionID,
            client=self._clientName(),
            user=self.user,
            version=self.versionName,
            command=self.command.name if self.command is not None else "-",
            target=self.target,
        )

    def flushTransferred(self) -> None:
        """
        Count the bytes (and datagrams) relayed since the last call in the
        metrics: called every second for every session, and at its end.
        """
        if self._association is not None:
            self._flushDatagrams(self._association)
        down = self._target.bytesReceived if self._target is not None else 0
        self._counted.bytes(self.bytesFromClient, down, self._userText())

    def _flushDatagrams(self, association: UDPAssociation) -> None:
        self._counted.datagrams(
            association.datagramsFromClient,
            association.datagramsToClient,
            association.drops,
        )

    def _clientName(self) -> str:
        # Both log lines (and a UDP association's) name the client: worked
        # out once, as the client's address does not change.
        if self._clientNameText is None:
            self._clientNameText = clientName(self._client.getPeer(), self._host)
        return self._clientNameText

    def _endSession(self) -> None:
        """
        Release what the session held of the limits, and log the one event
        that sums the session up.
        """
        if self._ended:
            return
        self._ended = True
        self._cancelTimers()
        if self._bandwidth is not None:
            self._bandwidth.stop()
        if self._admittedUser is not None:
            self.factory.limiter.releaseUser(self._admittedUser)
        self.flushTransferred()
        metrics = self.factory.metrics
        metrics.sessionEnded(
            self.versionName,
            _POLICY_COMMANDS[self.command] if self.command is not None else "-",
            self.outcome or "error",
            self._userText(),
            started=self._requestRead is not None,
        )
        dialled = outbound = None
        if self._target is not None:
            dialled = formatAddress(self._targetTransport.getPeer())
            outbound = formatAddress(self._targetHost)
        logSession(
            _log,
            session=self.sessionID,
            client=self._clientName(),
            user=self.user,
            version=self.versionName,
            command=self.command.name if self.command is not None else "-",
            target=self.target,
            dialled=dialled,
            outbound=outbound,
            reply=self.replyCode,
            outcome=self.outcome or "error",
            rule=self.rule,
            bytesFromClient=self.bytesFromClient,
            bytesToClient=self._target.bytesReceived if self._target else 0,
            duration=self.reactor.seconds() - self._started,
            reason=self.reason,
            relay=self._relay.path if self._relay is not None else None,
            via=self.via,
            viaBound=self.viaBound,
            bound=self._bound,
            protection=(
                self.protection.name.lower() if self.protection is not None else None
            ),
        )
