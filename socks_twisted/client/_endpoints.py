"""
Client endpoints that reach a target through a SOCKS4, SOCKS4a or SOCKS5
proxy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, TypeAlias, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import (
    IAddress,
    IHostResolution,
    IProtocol,
    IProtocolFactory,
    IReactorPluggableNameResolver,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from .._addresses import addressFor, checkPort, normalizeHost
from .._wire import (
    AddressType,
    AuthMethod,
    Command,
    SOCKS4Request,
    SOCKS5Request,
    UsernamePasswordRequest,
)
from ._gssapi import GSSAPIOptions
from ._handshake import ConnectAttempt, Negotiation

#: The default for C{handshakeTimeout}, in seconds: long enough for a proxy
#: to try a slow target (Dante and our server give up after 30 seconds).
DEFAULT_HANDSHAKE_TIMEOUT = 60.0

_SUPPORTED_METHODS = (AuthMethod.NO_AUTHENTICATION, AuthMethod.USERNAME_PASSWORD)

#: The C{methods} argument of the SOCKS5 clients: a sequence of
#: L{AuthMethod} values, or txsocksx's mapping
#: C{{"anonymous": (), "login": (username, password)}}.
Methods: TypeAlias = (
    Sequence[int] | Mapping[str, tuple[()] | tuple[str | bytes, str | bytes]]
)

_TXSOCKSX_METHODS = {
    "anonymous": AuthMethod.NO_AUTHENTICATION,
    "login": AuthMethod.USERNAME_PASSWORD,
}


class ISOCKSReactor(
    IReactorTCP, IReactorUDP, IReactorTime, IReactorPluggableNameResolver
):
    """
    What a reactor gives the SOCKS clients, in one type for annotations: TCP
    to reach the proxy, UDP for associations, the clock for timeouts and a
    name resolver for locally resolved names.

    Every reactor Twisted ships provides all four; this interface exists for
    type checkers only (no reactor declares it, so never test it with
    C{providedBy}).  Annotate the reactor C{task.react} gives you with it.
    L{socks_twisted.client.SOCKSProxy} takes L{SOCKSReactor}: this, or the
    global reactor (C{from twisted.internet import reactor}) as Twisted
    declares it.
    """


#: The type of the reactor L{socks_twisted.client.SOCKSProxy} takes:
#: L{ISOCKSReactor}, or the global reactor, which Twisted declares as a
#: make-believe interface (C{twisted.internet._IReactorCommon}) that omits
#: UDP and the name resolver although every reactor it ships has them.
if TYPE_CHECKING:
    from twisted.internet import _IReactorCommon

    SOCKSReactor: TypeAlias = ISOCKSReactor | _IReactorCommon
else:
    SOCKSReactor = ISOCKSReactor


def _fromTxsocksx(
    methods: Mapping[str, tuple[()] | tuple[str | bytes, str | bytes]],
    credentials: tuple[str | bytes, str | bytes] | None,
) -> tuple[tuple[int, ...], tuple[str | bytes, str | bytes] | None]:
    """
    Translate txsocksx's C{methods} mapping into methods and credentials.

    @raise ValueError: A key is unknown, a value malformed, or credentials
        are given twice.
    """
    offered: list[int] = []
    for name, value in methods.items():
        if name not in _TXSOCKSX_METHODS:
            raise ValueError(
                f"unknown txsocksx method {name!r}; use 'anonymous' or 'login'"
            )
        if name == "anonymous" and tuple(value) != ():
            raise ValueError("txsocksx method 'anonymous' takes ()")
        if name == "login":
            if len(value) != 2:
                raise ValueError("txsocksx method 'login' takes (username, password)")
            if credentials is not None:
                raise ValueError("credentials given both in methods and credentials")
            credentials = (value[0], value[1])
        offered.append(_TXSOCKSX_METHODS[name])
    return tuple(offered), credentials


def _defaultReactor() -> IReactorTime:
    """
    The global reactor, imported only when an endpoint was built without
    one and is about to connect.
    """
    from twisted.internet import reactor

    return cast(IReactorTime, reactor)


def _toBytes(value: str | bytes) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


def checkVersionOptions(
    version: int,
    methods: object,
    credentials: object,
    userID: str | bytes,
) -> None:
    """
    Check that the options given for a proxy belong to its SOCKS version:
    methods and credentials to SOCKS5, a user ID to SOCKS4.

    @raise ValueError: C{version} is neither 4 nor 5, or an option does not
        belong to it.
    """
    if version not in (4, 5):
        raise ValueError(f"SOCKS version {version!r} is neither 4 nor 5")
    if version == 4 and (methods is not None or credentials is not None):
        raise ValueError("SOCKS4 has no methods or credentials; use userID")
    if version == 5 and userID:
        raise ValueError("userID is for SOCKS4; SOCKS5 takes credentials")


def socks5Authentication(
    methods: Methods | None,
    credentials: tuple[str | bytes, str | bytes] | None,
    gssapi: GSSAPIOptions | None = None,
) -> tuple[tuple[int, ...], UsernamePasswordRequest | None]:
    """
    Check the SOCKS5 authentication options every SOCKS5 client takes.

    @param methods: The methods to offer, in order, or C{None} for the
        default: no authentication, then username/password when
        C{credentials} are given.  txsocksx's mapping
        (C{{"anonymous": (), "login": (username, password)}}, offered in its
        order) is accepted too.
    @param credentials: C{(username, password)} for RFC 1929; C{str} is
        encoded as UTF-8.
    @param gssapi: The GSSAPI method's options: with them the default
        methods are GSSAPI, then username/password when C{credentials} are
        given (never no authentication, which would let the proxy skip
        Kerberos), and GSSAPI may be offered.
    @return: The methods to offer and the RFC 1929 request to send.
    @raise ValueError: The credentials cannot be sent, or the methods are not
        ones this client implements or do not fit the credentials.
    """
    request: UsernamePasswordRequest | None = None
    if isinstance(methods, Mapping):
        methods, credentials = _fromTxsocksx(methods, credentials)
    if credentials is not None:
        username, password = credentials
        request = UsernamePasswordRequest(_toBytes(username), _toBytes(password))
        request.toBytes()  # raises ValueError if too long
    if methods is None:
        methods = (
            (AuthMethod.GSSAPI,)
            if gssapi is not None
            else (AuthMethod.NO_AUTHENTICATION,)
        )
        if credentials is not None:
            methods += (AuthMethod.USERNAME_PASSWORD,)
    offered = tuple(methods)
    if not offered:
        raise ValueError("offer at least one method")
    if len(set(offered)) != len(offered):
        raise ValueError(f"methods offered twice: {offered}")
    unsupported = set(offered) - set(_SUPPORTED_METHODS)
    if gssapi is not None:
        unsupported.discard(AuthMethod.GSSAPI)
    elif AuthMethod.GSSAPI in unsupported:
        raise ValueError("GSSAPI offered without gssapi options")
    if unsupported:
        raise ValueError(f"methods not implemented: {sorted(unsupported)}")
    hasUserPass = AuthMethod.USERNAME_PASSWORD in offered
    if hasUserPass and request is None:
        raise ValueError("username/password offered without credentials")
    if request is not None and not hasUserPass:
        raise ValueError("credentials given but username/password not offered")
    return offered, request


@implementer(IResolutionReceiver)
class _Addresses:
    """
    Collect the addresses of one name resolution into a L{Deferred}.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._addresses: list[IAddress] = []
        self.deferred: Deferred[object] = Deferred()

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        """
        See L{IResolutionReceiver}.
        """

    def addressResolved(self, address: IAddress) -> None:
        """
        See L{IResolutionReceiver}.
        """
        self._addresses.append(address)

    def resolutionComplete(self) -> None:
        """
        See L{IResolutionReceiver}.
        """
        if self.deferred.called:  # cancelled meanwhile
            return
        for address in self._addresses:
            if isinstance(address, IPv4Address | IPv6Address):
                self.deferred.callback(address.host)
                return
        self.deferred.errback(
            Failure(DNSLookupError(f"no usable address found for {self._name!r}"))
        )


class _SOCKSRequester:
    """
    What every SOCKS client shares (the CONNECT endpoints, the BIND and UDP
    clients): the request's address, local resolution of a name, the
    handshake timeout, and starting a L{ConnectAttempt}.

    @cvar _command: The command the request asks for.
    @cvar _lowestPort: The lowest port the request may name (BIND and UDP
        ASSOCIATE may name port 0).
    """

    _command: ClassVar[Command]
    _addressTypes: Sequence[type[IAddress]] = (IPv4Address, IPv6Address)
    _lowestPort = 1

    def __init__(
        self,
        host: str | bytes,
        port: int,
        proxyEndpoint: IStreamClientEndpoint,
        *,
        resolveLocally: bool,
        handshakeTimeout: float | None,
        reactor: IReactorTime | None,
    ) -> None:
        self._addressType, self._host = normalizeHost(host)
        self._port = checkPort(port, self._lowestPort)
        self._proxyEndpoint = proxyEndpoint
        self._resolveLocally = bool(resolveLocally)
        if handshakeTimeout is not None and handshakeTimeout <= 0:
            raise ValueError("handshakeTimeout must be positive or None")
        self._handshakeTimeout = handshakeTimeout
        self._reactor = reactor
        if (
            self._resolveLocally
            and reactor is not None
            and not IReactorPluggableNameResolver.providedBy(reactor)
        ):
            raise ValueError(
                "resolveLocally needs a reactor providing IReactorPluggableNameResolver"
            )

    def _negotiation(self, host: str) -> Negotiation:
        raise NotImplementedError()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self._host}:{self._port} "
            f"via {self._proxyEndpoint!r}>"
        )

    def _newAttempt(
        self, reactor: IReactorTime, protocolFactory: IProtocolFactory, target: IAddress
    ) -> ConnectAttempt:
        """
        Make the attempt that L{_start} drives.  (The BIND client makes one
        that reports the first reply.)
        """
        return ConnectAttempt(reactor, protocolFactory, target, self._handshakeTimeout)

    def _getReactor(self) -> IReactorTime:
        """
        The reactor given, or else the global reactor.
        """
        return self._reactor if self._reactor is not None else _defaultReactor()

    def _start(self, protocolFactory: IProtocolFactory) -> ConnectAttempt:
        """
        Resolve the name if asked to, connect to the proxy, and start the
        handshake; a protocol from C{protocolFactory} is connected once the
        proxy replies success.
        """
        reactor = self._getReactor()
        if self._resolveLocally and self._addressType is AddressType.DOMAIN:
            return self._resolveThenConnect(reactor, protocolFactory)
        attempt = self._newAttempt(
            reactor,
            protocolFactory,
            addressFor(self._host.encode("ascii"), self._port),
        )
        attempt.connectVia(self._proxyEndpoint, self._negotiation(self._host))
        return attempt

    def _resolveThenConnect(
        self, reactor: IReactorTime, protocolFactory: IProtocolFactory
    ) -> ConnectAttempt:
        resolver = IReactorPluggableNameResolver(reactor).nameResolver
        receiver = _Addresses(self._host)
        # Until resolved, the target is known by its name.
        attempt = self._newAttempt(
            reactor,
            protocolFactory,
            addressFor(self._host.encode("ascii"), self._port),
        )
        attempt.waitFor(receiver.deferred)

        def resolved(address: object) -> None:
            host = str(address)
            attempt.target = addressFor(host, self._port)
            attempt.connectVia(self._proxyEndpoint, self._negotiation(host))

        def failed(reason: Failure) -> None:
            attempt.failed(reason)

        receiver.deferred.addCallbacks(resolved, failed)
        try:
            resolver.resolveHostName(
                receiver, self._host, self._port, self._addressTypes, "TCP"
            )
        except BaseException:
            attempt.failed(Failure())
        return attempt


class _SOCKS5Requester(_SOCKSRequester):
    """
    What every SOCKS5 client shares: the authentication options, and a
    SOCKS5 request for the client's C{_command}.
    """

    def _authenticate(
        self,
        methods: Methods | None,
        credentials: tuple[str | bytes, str | bytes] | None,
        gssapi: GSSAPIOptions | None = None,
    ) -> None:
        """
        Check and keep the authentication options (see
        L{socks5Authentication}).

        @raise ValueError: They, or the request, cannot be sent.
        """
        self._methods, self._credentials = socks5Authentication(
            methods, credentials, gssapi
        )
        self._gssapi = gssapi
        # Fail now, not after connecting, if the request cannot be encoded.
        self._negotiation(self._host).request.toBytes()

    def _negotiation(self, host: str) -> Negotiation:
        return Negotiation(
            SOCKS5Request(self._command, host, self._port),
            self._methods,
            self._credentials,
            self._gssapi,
        )


class _SOCKS4Requester(_SOCKSRequester):
    """
    What every SOCKS4 client shares: IPv4 only, a user ID, and a SOCKS4 or
    SOCKS4a request for the client's C{_command}.
    """

    _addressTypes = (IPv4Address,)

    def _identify(self, userID: bytes | str) -> None:
        """
        Check that the host fits SOCKS4 and keep the user ID.

        @raise ValueError: The host is an IPv6 literal, or the request cannot
            be sent.
        """
        if self._addressType is AddressType.IPV6:
            raise ValueError("SOCKS4 cannot carry an IPv6 address; use SOCKS5")
        self._userID = _toBytes(userID)
        # Fail now, not after connecting, if the request cannot be encoded.
        self._negotiation(self._host).request.toBytes()

    def _negotiation(self, host: str) -> Negotiation:
        return Negotiation(SOCKS4Request(self._command, host, self._port, self._userID))


class _SOCKSEndpoint(_SOCKSRequester):
    """
    What both CONNECT endpoints share: C{connect}.
    """

    _command = Command.CONNECT

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Connect to the proxy, ask it for the target, and connect a protocol
        built by C{protocolFactory} once the proxy reports success.

        @return: A L{Deferred} that fires with that protocol, or fails with a
            L{socks_twisted.errors.SOCKSError}, the error of the connection to
            the proxy, L{twisted.internet.error.TimeoutError} (handshake
            timeout), L{twisted.internet.error.DNSLookupError} (local
            resolution) or L{twisted.internet.error.ConnectingCancelledError}.
        """
        return self._start(protocolFactory).deferred


@implementer(IStreamClientEndpoint)
class SOCKS5ClientEndpoint(_SOCKS5Requester, _SOCKSEndpoint):
    """
    Reach C{host}:C{port} through a SOCKS5 proxy (RFC 1928), with no
    authentication or with a username and password (RFC 1929).

    Names are sent to the proxy for it to resolve (ATYP 3), IDNA-encoded,
    unless C{resolveLocally} is true; IP literals go out as ATYP 1 or 4.

    @ivar proxyEndpoint: Leads to the proxy; it can itself be a SOCKS
        endpoint, to chain proxies.
    """

    def __init__(
        self,
        host: str | bytes,
        port: int,
        proxyEndpoint: IStreamClientEndpoint,
        *,
        methods: Methods | None = None,
        credentials: tuple[str | bytes, str | bytes] | None = None,
        resolveLocally: bool = False,
        handshakeTimeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        reactor: IReactorTime | None = None,
        gssapi: GSSAPIOptions | None = None,
    ) -> None:
        """
        @param host: The target: an IPv4 or IPv6 literal or a name.
        @param port: The target's TCP port.
        @param proxyEndpoint: The endpoint that connects to the proxy.
        @param methods: The authentication methods to offer, in this order,
            from L{AuthMethod.NO_AUTHENTICATION} and
            L{AuthMethod.USERNAME_PASSWORD}.  By default no authentication,
            followed by username/password when C{credentials} are given.
            txsocksx's mapping, C{{"anonymous": (), "login": (username,
            password)}}, is also accepted.
        @param credentials: C{(username, password)} for RFC 1929; C{str} is
            encoded as UTF-8.
        @param resolveLocally: Resolve a name here (with the reactor's name
            resolver) and send the proxy an address.
        @param handshakeTimeout: Seconds from the connection to the proxy to
            its final reply (which includes the proxy's connection to the
            target) before giving up with
            L{twisted.internet.error.TimeoutError}; C{None} waits forever.
        @param reactor: Provides the clock for the timeout, and the name
            resolver for C{resolveLocally}.  If C{None}, the global reactor is
            imported when C{connect} is called.
        @param gssapi: Authenticate with the GSSAPI method (Kerberos, RFC
            1961) this way; it is then offered first by default (see
            L{GSSAPIOptions}).  Under a protection level of 1 or 2 every byte
            of the tunnel is wrapped, transparently to the application.

        @raise ValueError: The host, port or credentials cannot be sent, or
            the methods are not ones this client implements.
        """
        super().__init__(
            host,
            port,
            proxyEndpoint,
            resolveLocally=resolveLocally,
            handshakeTimeout=handshakeTimeout,
            reactor=reactor,
        )
        self._authenticate(methods, credentials, gssapi)


@implementer(IStreamClientEndpoint)
class SOCKS4ClientEndpoint(_SOCKS4Requester, _SOCKSEndpoint):
    """
    Reach C{host}:C{port} through a SOCKS4 proxy: SOCKS4 for IPv4 literals,
    SOCKS4a for names (the proxy resolves them), or SOCKS4 with a locally
    resolved IPv4 address when C{resolveLocally} is true.

    SOCKS4 cannot carry IPv6 addresses.
    """

    def __init__(
        self,
        host: str | bytes,
        port: int,
        proxyEndpoint: IStreamClientEndpoint,
        *,
        userID: bytes | str = b"",
        resolveLocally: bool = False,
        handshakeTimeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        reactor: IReactorTime | None = None,
    ) -> None:
        """
        @param host: The target: an IPv4 literal or a name.
        @param port: The target's TCP port.
        @param proxyEndpoint: The endpoint that connects to the proxy.
        @param userID: The SOCKS4 USERID field (no NUL, at most 255 bytes).
        @param resolveLocally: Resolve a name here (IPv4 only) and speak plain
            SOCKS4 instead of SOCKS4a.
        @param handshakeTimeout: As for L{SOCKS5ClientEndpoint}.
        @param reactor: As for L{SOCKS5ClientEndpoint}.

        @raise ValueError: The host is an IPv6 literal, or a field cannot be
            sent.
        """
        super().__init__(
            host,
            port,
            proxyEndpoint,
            resolveLocally=resolveLocally,
            handshakeTimeout=handshakeTimeout,
            reactor=reactor,
        )
        self._identify(userID)
