"""
The client's side of the SOCKS5 GSSAPI method (RFC 1961): its options, and
the exchange between the method selection and the request.

python-gssapi (the C{gssapi} extra) is imported only when a proxy selects
the method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from .._wire import (
    GSSAPIMessageReader,
    MessageType,
    ProtectionLevel,
    ProtocolError,
    contextMessage,
    protectionMessage,
)

if TYPE_CHECKING:
    from .._gss import Initiator


@dataclass(frozen=True)
class GSSAPIOptions:
    """
    How a SOCKS5 client authenticates with the GSSAPI method (Kerberos, RFC
    1961), given as C{gssapi=} to L{SOCKS5ClientEndpoint
    <socks_twisted.client.SOCKS5ClientEndpoint>} and the other SOCKS5
    clients.

    @ivar host: The proxy's host name as its service principal names it:
        the ticket is for C{service/host} (C{rcmd/proxy.example.com}).
    @ivar service: The service name, RFC 1961's and curl's C{rcmd} by
        default; with a C{/} in it, a whole principal name
        (C{"rcmd/proxy.example.com@EXAMPLE.COM"}) and C{host} is unused.
    @ivar protection: The per-message protection level to ask for: 0 (none),
        1 (integrity) or 2 (confidentiality).  The proxy chooses; the client
        goes on with whatever level up to 2 it answers, and under 1 or 2
        wraps every byte of the tunnel both ways, transparently.
    @ivar minimumProtection: The least level the client accepts from the
        proxy; a lower answer fails the attempt with
        L{AuthenticationFailedError<socks_twisted.errors.AuthenticationFailedError>}.
    @ivar nec: Send the protection level unwrapped, as the NEC reference
        implementation (and C{curl --socks5-gssapi-nec}) does.
    @ivar ccache: The credential cache to use (C{"FILE:/tmp/krb5cc_1000"});
        the default one (C{KRB5CCNAME}) when C{None}.
    @ivar threadpool: The threads context establishment runs in (it may
        wait for the KDC); the reactor's pool when C{None}.
    """

    host: str
    service: str = "rcmd"
    protection: ProtectionLevel = ProtectionLevel.CONFIDENTIALITY
    minimumProtection: ProtectionLevel = ProtectionLevel.NONE
    nec: bool = False
    ccache: str | None = None
    threadpool: ThreadPool | None = None

    def __post_init__(self) -> None:
        for name in ("protection", "minimumProtection"):
            level = ProtectionLevel(getattr(self, name))
            if level is ProtectionLevel.SELECTIVE:
                raise ValueError(f"{name}: selective protection is not implemented")
            object.__setattr__(self, name, level)


class GSSAPIExchange:
    """
    The RFC 1961 exchange of one client connection: context tokens until the
    context is established, then the protection level.

    @ivar initiator: The context, once made.
    @ivar level: The protection level the proxy granted, once it did.
    """

    def __init__(
        self,
        options: GSSAPIOptions,
        reactor: IReactorTime,
        write: Callable[[bytes], None],
        done: Callable[[ProtectionLevel, bytes], None],
        failed: Callable[[str, bool], None],
    ) -> None:
        """
        @param write: Sends bytes to the proxy.
        @param done: Called with the level granted and the bytes received
            after the proxy's answer.
        @param failed: Called with why the exchange failed and whether it
            was the proxy's refusal (an abort message) rather than an error.
        """
        self._options = options
        self._reactor = reactor
        self._write = write
        self._done = done
        self._failed = failed
        self._reader = GSSAPIMessageReader()
        self._busy = False
        self._finished = False
        self._closed = False
        self._pending: Deferred[bytes | None] | None = None
        self.initiator: Initiator | None = None
        self.level: ProtectionLevel | None = None

    def start(self) -> None:
        """
        Make the context and send the first token.
        """
        try:
            from .._gss import (
                GSSAPIError,
                Initiator,
                initiatorCredentials,
                serviceName,
            )
        except ImportError:
            self._fail("the GSSAPI method needs python-gssapi (the gssapi extra)")
            return
        options = self._options
        threadpool = options.threadpool
        if threadpool is None:
            threadpool = cast(Any, self._reactor).getThreadPool()
        try:
            self.initiator = Initiator(
                serviceName(options.service, options.host),
                cast(IReactorFromThreads, self._reactor),
                threadpool,
                initiatorCredentials(options.ccache),
            )
        except GSSAPIError as e:
            self._fail(str(e))
            return
        self._step(None)

    def cancel(self) -> None:
        """
        Stop: the connection is gone or the attempt was abandoned.
        """
        self._finished = True
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    @property
    def active(self) -> bool:
        """
        Whether the exchange is still going on.
        """
        return not self._finished

    def readClosed(self) -> None:
        """
        The proxy sent end-of-file: read what it sent before (an abort,
        likely), then fail if that decided nothing.
        """
        self._closed = True
        self.dataReceived(b"")

    def _fail(self, reason: str, refused: bool = False) -> None:
        if not self._finished:
            self._finished = True
            self._failed(reason, refused)

    def _step(self, token: bytes | None) -> None:
        assert self.initiator is not None
        self._busy = True
        step = self._pending = self.initiator.step(token)
        step.addCallbacks(self._stepped, self._stepFailed)

    def _stepped(self, output: bytes | None) -> None:
        self._pending = None
        self._busy = False
        if self._finished:
            return
        assert self.initiator is not None
        if output:
            self._write(contextMessage(output))
        if self.initiator.complete:
            try:
                token = self.initiator.wrapProtectionLevel(
                    self._options.protection, self._options.nec
                )
            except Exception as e:  # GSSAPIError
                self._fail(str(e))
                return
            self._write(protectionMessage(token))
        self.dataReceived(b"")

    def _stepFailed(self, failure: Failure) -> None:
        self._pending = None
        self._busy = False
        if not self._finished:
            self._fail(failure.getErrorMessage())

    def dataReceived(self, data: bytes) -> None:
        """
        Read the proxy's messages.
        """
        self._reader.receiveData(data)
        if self._closed and self.initiator is None and not self._finished:
            self._fail("the proxy closed the connection")
        while not (self._busy or self._finished or self.initiator is None):
            expected = {
                MessageType.ABORT,
                MessageType.PROTECTION
                if self.initiator.complete
                else MessageType.CONTEXT,
            }
            try:
                message = self._reader.nextMessage(expected)
            except ProtocolError as e:
                self._fail(f"GSSAPI: {e.reason}")
                return
            if message is None:
                if self._closed:
                    self._fail("the proxy closed the connection")
                return
            if message.type is MessageType.ABORT:
                self._fail("the proxy aborted the GSSAPI exchange", refused=True)
            elif message.type is MessageType.CONTEXT:
                self._step(message.token)
            else:
                self._protection(message.token)

    def _protection(self, token: bytes) -> None:
        assert self.initiator is not None
        try:
            level, _ = self.initiator.unwrapProtectionLevel(token)
        except ProtocolError as e:
            self._fail(f"GSSAPI: {e.reason}")
            return
        except Exception as e:  # GSSAPIError
            self._fail(str(e))
            return
        if level is ProtectionLevel.SELECTIVE:
            self._fail("the proxy chose selective protection, not implemented")
            return
        if level < self._options.minimumProtection:
            self._fail(
                f"the proxy granted protection level {level.name.lower()}, below "
                f"the minimum {self._options.minimumProtection.name.lower()}",
                refused=True,
            )
            return
        self._finished = True
        self.level = level
        self._done(level, self._reader.unconsumed())
