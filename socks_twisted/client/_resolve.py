"""
Tor's lookup commands through a SOCKS proxy (torspec socks-extensions.txt,
section 2): RESOLVE asks the proxy for an address of a name (SOCKS5, or
SOCKS4a with the answer in DSTIP), RESOLVE_PTR for the name of an address
(SOCKS5 only, the answer in ATYP 3).

This reuses the CONNECT machinery of L{socks_twisted.client._handshake}: the
same negotiation, authentication, cancellation, timeout and error mapping.
Only the success reply is new: it carries the answer, and ends the
connection instead of starting a tunnel.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from .._wire import AddressType, Command, SOCKS4Reply, SOCKS5Reply, addressTypeOf
from ..errors import SOCKSProtocolError
from ._endpoints import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    Methods,
    _SOCKS4Requester,
    _SOCKS5Requester,
    _SOCKSRequester,
)
from ._gssapi import GSSAPIOptions
from ._handshake import ConnectAttempt, Negotiation, SOCKSClientProtocol, makeError


class _LookupProtocol(SOCKSClientProtocol):
    """
    The handshake protocol of a lookup: a successful reply is the answer,
    handed to the attempt; then the connection to the proxy is closed.
    """

    def __init__(self, attempt: LookupAttempt, negotiation: Negotiation) -> None:
        super().__init__(attempt, negotiation)
        self._lookupAttempt = attempt

    def replyReceived(self, reply: SOCKS5Reply | SOCKS4Reply) -> None:
        """
        Report the answer, or fail as a CONNECT's refusal does.
        """
        if not reply.succeeded:
            super().replyReceived(reply)
            return
        problem = self._lookupAttempt.answered(reply.host)
        if problem is not None:
            self._fail(makeError(SOCKSProtocolError, problem), abort=True)
            return
        self._finished = True
        self._receive = self._discard
        assert self.transport is not None
        self.transport.loseConnection()


class LookupAttempt(ConnectAttempt):
    """
    One lookup: a L{ConnectAttempt} whose caller holds L{answer} instead of
    a protocol.

    @ivar answer: Fires with the address (RESOLVE) or name (RESOLVE_PTR).
    """

    def __init__(
        self,
        reactor: IReactorTime,
        target: IAddress,
        handshakeTimeout: float | None,
        command: Command,
    ) -> None:
        # No application protocol is ever built: a lookup has no tunnel.
        super().__init__(reactor, Factory(), target, handshakeTimeout)
        self.answer: Deferred[str] = Deferred(self._cancel)
        self._command = command

    def handshakeProtocol(self, negotiation: Negotiation) -> SOCKSClientProtocol:
        """
        A handshake protocol that reports the answer.
        """
        return _LookupProtocol(self, negotiation)

    def report(self, reason: Failure) -> None:
        """
        Fail L{answer}.
        """
        self.answer.errback(reason)

    def answered(self, host: str) -> str | None:
        """
        The proxy answered C{host} (BND.ADDR or DSTIP): fire L{answer} if it
        is the kind of answer asked for.

        @return: What is wrong with it, if something is.
        """
        isName = addressTypeOf(host) is AddressType.DOMAIN
        if self._command is Command.RESOLVE_PTR and not isName:
            return f"the proxy answered RESOLVE_PTR with an address ({host})"
        if self._command is Command.RESOLVE and (isName or host == "0.0.0.0"):
            # 0.0.0.0 is what a SOCKS4 server that ignores DSTIP sends.
            return f"the proxy answered RESOLVE without an address ({host})"
        # Not ConnectAttempt.succeeded: that fires the CONNECT Deferred,
        # which nobody holds here.
        self._finish()
        self.answer.callback(host)
        return None


class _Lookup(_SOCKSRequester):
    """
    What the lookup clients share: port 0 (as tor-resolve sends), the name
    always sent to the proxy, and the attempt that reports the answer.
    """

    _lowestPort = 0

    def __init__(
        self,
        host: str | bytes,
        proxyEndpoint: IStreamClientEndpoint,
        *,
        handshakeTimeout: float | None,
        reactor: IReactorTime | None,
    ) -> None:
        super().__init__(
            host,
            0,
            proxyEndpoint,
            resolveLocally=False,
            handshakeTimeout=handshakeTimeout,
            reactor=reactor,
        )

    def _newAttempt(
        self, reactor: IReactorTime, protocolFactory: IProtocolFactory, target: IAddress
    ) -> LookupAttempt:
        return LookupAttempt(reactor, target, self._handshakeTimeout, self._command)

    def lookup(self) -> Deferred[str]:
        """
        Connect to the proxy and ask.

        @return: A L{Deferred} that fires with the answer, or fails as a
            CONNECT endpoint's C{connect} does.
        """
        attempt = self._start(Factory())
        assert isinstance(attempt, LookupAttempt)
        return attempt.answer


class SOCKS5Resolve(_SOCKS5Requester, _Lookup):
    """
    RESOLVE over SOCKS5: C{host} is a name (or an address, which a proxy
    answers as itself).
    """

    _command = Command.RESOLVE

    def __init__(
        self,
        host: str | bytes,
        proxyEndpoint: IStreamClientEndpoint,
        *,
        methods: Methods | None = None,
        credentials: tuple[str | bytes, str | bytes] | None = None,
        handshakeTimeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        reactor: IReactorTime | None = None,
        gssapi: GSSAPIOptions | None = None,
    ) -> None:
        """
        @param gssapi: As for L{socks_twisted.client.SOCKS5ClientEndpoint}.

        @raise ValueError: A field cannot be sent.
        """
        super().__init__(
            host, proxyEndpoint, handshakeTimeout=handshakeTimeout, reactor=reactor
        )
        self._authenticate(methods, credentials, gssapi)


class SOCKS5ResolvePTR(SOCKS5Resolve):
    """
    RESOLVE_PTR over SOCKS5: C{host} is an address.
    """

    _command = Command.RESOLVE_PTR


class SOCKS4Resolve(_SOCKS4Requester, _Lookup):
    """
    RESOLVE over SOCKS4a (SOCKS4 for an IPv4 literal); the answer comes in
    DSTIP, so IPv4 only.
    """

    _command = Command.RESOLVE

    def __init__(
        self,
        host: str | bytes,
        proxyEndpoint: IStreamClientEndpoint,
        *,
        userID: bytes | str = b"",
        handshakeTimeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        reactor: IReactorTime | None = None,
    ) -> None:
        """
        @raise ValueError: The host is an IPv6 literal, or a field cannot be
            sent.
        """
        super().__init__(
            host, proxyEndpoint, handshakeTimeout=handshakeTimeout, reactor=reactor
        )
        self._identify(userID)
