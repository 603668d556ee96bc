"""
The GSSAPI method (RFC 1961) of a server session: the context's tokens
(each step in a thread), the principal's login through the portal, the
protection-level subnegotiation, and, when a protection level was agreed,
the wrapping of everything after it.

A mixin of L{SOCKSServerProtocol<socks_twisted.server.SOCKSServerProtocol>},
whose state it shares; what it uses of the session is declared here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._gssstream import DatagramWrapper, ProtectedTransport, Unwrapper
from .._transport import StreamTransport, writeNow
from .._wire import (
    ABORT_MESSAGE,
    GSSAPIMessageReader,
    MessageType,
    ProtectionLevel,
    ProtocolError,
    ServerConnection,
    contextMessage,
    protectionMessage,
)
from ..auth import GSSAPIPrincipal, ISOCKSUser
from ..relay import Relay
from ._metrics import ServerMetrics
from ._phase import Phase
from ._settings import ServerSettings, chooseProtection

if TYPE_CHECKING:
    from .._gss import Acceptor

_log = Logger()

#: The levels under which everything after the subnegotiation is wrapped.
_WRAPPED = frozenset({ProtectionLevel.INTEGRITY, ProtectionLevel.CONFIDENTIALITY})


class GSSAPIMethod:
    """
    The GSSAPI method's part of a session.
    """

    # What the session provides.
    _phase: Phase
    _client: StreamTransport
    _wire: ServerConnection
    _pending: defer.Deferred[Any] | None
    _relay: Relay | None
    _gssReader: GSSAPIMessageReader | None
    _gssBusy: bool
    _acceptor: Acceptor
    _unwrapper: Unwrapper | None
    settings: ServerSettings
    user: bytes | None
    protection: ProtectionLevel | None
    reason: str
    outcome: str | None
    sessionID: str

    @property
    def metrics(self) -> ServerMetrics:
        raise NotImplementedError

    def _close(
        self, reason: str, finalBytes: bytes | None = None, *, outcome: str
    ) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def _advance(self) -> None:
        raise NotImplementedError

    def _userText(self) -> str | None:
        raise NotImplementedError

    def _admitUser(self, result: tuple[Any, Any, Any]) -> str | None:
        raise NotImplementedError

    def _loginFailed(self, failure: Failure, what: str, rejected: str) -> str:
        raise NotImplementedError

    @property
    def datagramProtection(self) -> DatagramWrapper | None:
        """
        How the datagrams of a UDP association are protected: by the
        context, if integrity or confidentiality was agreed.
        """
        level = self.protection
        if level is None or level not in _WRAPPED:
            return None
        return DatagramWrapper(self._acceptor, level)

    def _startGSSAPI(self) -> None:
        gssapi = self.settings.gssapi
        assert gssapi is not None
        self._phase = Phase.GSSAPI
        self._gssReader = GSSAPIMessageReader()
        self._gssReader.receiveData(self._wire.takeTrailingData())
        try:
            self._acceptor = gssapi.newAcceptor()
        except Exception as e:  # GSSAPIError: python-gssapi is optional here
            self._gssFailed(f"GSS-API authentication failed: {e}")
            return
        self._gssAdvance()

    def _gssAdvance(self) -> None:
        while self._phase is Phase.GSSAPI and not self._gssBusy:
            reader = self._gssReader
            assert reader is not None
            complete = self._acceptor.complete
            try:
                message = reader.nextMessage(
                    {MessageType.PROTECTION if complete else MessageType.CONTEXT}
                )
            except ProtocolError as e:
                self.metrics.authFailed("gssapi")
                self._close(
                    f"protocol error: {e.reason} (GSS-API)", outcome="protocol_error"
                )
                return
            if message is None:
                return
            if complete:
                self._gssProtection(message.token)
            else:
                self._gssBusy = True
                step = self._acceptor.step(message.token)
                self._pending = step
                step.addCallbacks(self._gssStepped, self._gssStepFailed)

    def _gssStepped(self, output: bytes | None) -> None:
        self._pending = None
        self._gssBusy = False
        if self._phase is not Phase.GSSAPI:
            return
        if output:
            writeNow(self._client, contextMessage(output))
        if not self._acceptor.complete:
            self._release()
            self._gssAdvance()
            return
        gssapi = self.settings.gssapi
        assert gssapi is not None
        try:
            principal = self._acceptor.initiatorName
            acceptorName = self._acceptor.acceptorName
        except Exception as e:  # GSSAPIError
            self._gssFailed(f"GSS-API authentication failed: {e}")
            return
        if gssapi.service is not None and (
            acceptorName.split("/", 1)[0] != gssapi.service or "/" not in acceptorName
        ):
            self.user = principal.encode("utf-8")
            self._gssFailed(
                f"GSS-API authentication failed: {principal} has a ticket for "
                f"{acceptorName}, not for the service {gssapi.service}"
            )
            return
        self.user = principal.encode("utf-8")
        self._gssBusy = True
        login = gssapi.portal.login(GSSAPIPrincipal(principal), None, ISOCKSUser)
        self._pending = login
        login.addCallbacks(self._gssAuthorized, self._gssRefused)

    def _gssStepFailed(self, failure: Failure) -> None:
        self._pending = None
        self._gssBusy = False
        if isinstance(failure.value, defer.CancelledError):
            return
        if self._phase is not Phase.GSSAPI:
            return
        self._gssFailed(f"GSS-API authentication failed: {failure.getErrorMessage()}")

    def _gssFailed(self, reason: str) -> None:
        """
        Refuse with RFC 1961's abort message and close.
        """
        self.metrics.authFailed("gssapi")
        self._close(reason, ABORT_MESSAGE, outcome="auth_failed")

    def _gssAuthorized(self, result: tuple[Any, Any, Any]) -> None:
        self._pending = None
        self._gssBusy = False
        if self._phase is not Phase.GSSAPI:
            return
        refusal = self._admitUser(result)
        if refusal is not None:
            self._close(refusal, ABORT_MESSAGE, outcome="limit")
            return
        self._release()
        self._gssAdvance()

    def _gssRefused(self, failure: Failure) -> None:
        self._pending = None
        self._gssBusy = False
        if isinstance(failure.value, defer.CancelledError):
            return
        if self._phase is not Phase.GSSAPI:
            return
        self._gssFailed(
            self._loginFailed(
                failure, "GSS-API authentication failed", "principal not allowed"
            )
        )

    def _gssProtection(self, token: bytes) -> None:
        """
        The client's protection-level message (MTYP 2): answer it the way
        it came (wrapped, or bare for the NEC variant), then read the
        request, unwrapped first if a protection level was agreed.
        """
        gssapi = self.settings.gssapi
        assert gssapi is not None and self._gssReader is not None
        acceptor = self._acceptor
        try:
            requested, nec = acceptor.unwrapProtectionLevel(token)
            answer = chooseProtection(
                requested, acceptor.available(), gssapi.protection
            )
            if answer is None:
                self._gssFailed(
                    "GSS-API: no allowed protection level for a request of "
                    + requested.name.lower()
                )
                return
            message = protectionMessage(acceptor.wrapProtectionLevel(answer, nec))
        except ProtocolError as e:
            self.metrics.authFailed("gssapi")
            self._close(
                f"protocol error: {e.reason} (GSS-API)", outcome="protocol_error"
            )
            return
        except Exception as e:  # GSSAPIError: python-gssapi is optional here
            self._gssFailed(f"GSS-API protection subnegotiation failed: {e}")
            return
        writeNow(self._client, message)
        self.protection = answer
        _log.info(
            "SOCKS session {session}: GSS-API principal {principal} asked for"
            " protection {requested}{nec}, granted {granted}",
            session=self.sessionID,
            principal=self._userText(),
            requested=requested.name.lower(),
            nec=" (NEC, unwrapped)" if nec else "",
            granted=answer.name.lower(),
        )
        leftover = self._gssReader.unconsumed()
        self._gssReader = None
        self._wire.gssapiEstablished()
        self._phase = Phase.HANDSHAKE
        if answer in _WRAPPED:
            self._client = ProtectedTransport(self._client, acceptor, answer)
            self._unwrapper = Unwrapper(acceptor, answer)
            try:
                leftover = self._unwrapper.unwrap(leftover)
            except ProtocolError as e:
                self._protectionBroken(e.reason)
                return
        self._release()
        self._wire.receiveData(leftover)
        self._advance()

    def _protectionBroken(self, reason: str) -> None:
        """
        What the client sent under protection is not a valid MTYP 3 message
        or does not unwrap: end the session at once.
        """
        self._unwrapper = None
        if self._phase is Phase.CLOSED:
            return
        if self._relay is not None:
            self.reason = f"protocol error: {reason}"
            self.outcome = "protocol_error"
            self._client.abortConnection()
            return
        self._close(f"protocol error: {reason}", outcome="protocol_error")
        self._client.abortConnection()
