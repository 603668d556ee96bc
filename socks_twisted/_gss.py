"""
GSS-API security contexts for the SOCKS5 GSSAPI method (RFC 1961), over
python-gssapi (the C{gssapi} package, the C{gssapi} extra of this project).

An L{Acceptor} is the server's side, an L{Initiator} the client's.  Each
one's L{step<_Context.step>} runs C{gss_accept_sec_context} or
C{gss_init_sec_context} in a thread of a given pool (either may block: the
initiator asks the KDC for a service ticket, the acceptor reads its keytab
and replay cache) and returns a L{Deferred}.  C{gss_wrap} and C{gss_unwrap}
only compute, so the per-message methods run in the caller's thread: the
data path of a session stays in order without a round trip through a
thread.

Every GSS-API failure is raised as (or fails a Deferred with) one exception
type, L{GSSAPIError}, whose message carries the major and minor status
texts.  The framing of the tokens is L{socks_twisted._wire._gssapi}'s.

The server session (L{socks_twisted.server}) uses an L{Acceptor}, the
client handshake (L{socks_twisted.client}) an L{Initiator}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import gssapi
import gssapi.exceptions
from gssapi.raw.misc import GSSError
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ._wire import (
    MAX_TOKEN_LENGTH,
    ProtectionLevel,
    decodeProtectionLevel,
    encodeProtectionLevel,
    isUnprotectedProtectionToken,
)

_T = TypeVar("_T")

#: The service name RFC 1961 and curl default to.
DEFAULT_SERVICE = "rcmd"

#: What an initiator asks for: mutual authentication (the server proves
#: itself with the last context token), replay and sequence detection for
#: the wrapped stream, integrity and confidentiality for RFC 1961's levels.
INITIATOR_FLAGS = (
    gssapi.RequirementFlag.mutual_authentication
    | gssapi.RequirementFlag.replay_detection
    | gssapi.RequirementFlag.out_of_sequence_detection
    | gssapi.RequirementFlag.integrity
    | gssapi.RequirementFlag.confidentiality
)


class GSSAPIError(Exception):
    """
    A GSS-API call failed.

    @ivar operation: What was being done, such as C{"accepting a context
        token"}.
    @ivar major: The GSS major status code, or 0 when the failure is not a
        GSS status (a level the context cannot provide, say).
    @ivar minor: The mechanism's minor status code, or 0.
    @ivar reason: The texts of both, fit for a log line.
    """

    def __init__(
        self, operation: str, reason: str, major: int = 0, minor: int = 0
    ) -> None:
        super().__init__(f"{operation}: {reason}")
        self.operation = operation
        self.reason = reason
        self.major = major
        self.minor = minor


def _translated(operation: str, call: Callable[[], _T]) -> _T:
    """
    Call C{call}, raising any python-gssapi failure as a L{GSSAPIError}.
    """
    try:
        return call()
    except GSSError as e:
        raise GSSAPIError(
            operation, e.gen_message(), e.maj_code or 0, e.min_code or 0
        ) from e
    except gssapi.exceptions.GeneralError as e:
        raise GSSAPIError(operation, str(e) or type(e).__name__) from e


def serviceName(service: str, host: str) -> gssapi.Name:
    """
    The name of the SOCKS server's service principal, the way curl makes it
    (C{lib/socks_gssapi.c}): C{service} with a C{/} in it is a whole
    Kerberos principal name (C{"rcmd/proxy.example.com@EXAMPLE.COM"});
    otherwise the host-based service C{service@host}, which Kerberos turns
    into C{service/host} in the host's realm (after canonicalising C{host}
    as C{krb5.conf} says: C{dns_canonicalize_hostname}, C{rdns}).
    """
    if "/" in service:
        return _translated(
            "importing the service name",
            lambda: gssapi.Name(service, gssapi.NameType.kerberos_principal),
        )
    return _translated(
        "importing the service name",
        lambda: gssapi.Name(f"{service}@{host}", gssapi.NameType.hostbased_service),
    )


def acceptorCredentials(
    keytab: str | None = None, principal: str | None = None
) -> gssapi.Credentials:
    """
    A SOCKS server's acceptor credentials.

    @param keytab: The keytab file holding the service keys, or C{None} for
        the default keytab (C{KRB5_KTNAME}).
    @param principal: The Kerberos principal to accept for, such as
        C{"rcmd/proxy.example.com@EXAMPLE.COM"}; C{None} accepts a ticket
        for any principal whose key is in the keytab.

    @raise GSSAPIError: If the keytab cannot be used.
    """
    name = (
        None
        if principal is None
        else gssapi.Name(principal, gssapi.NameType.kerberos_principal)
    )
    store: dict[bytes | str, bytes | str] | None = (
        None if keytab is None else {"keytab": keytab}
    )

    def acquire() -> gssapi.Credentials:
        credentials = gssapi.Credentials(name=name, usage="accept", store=store)
        # MIT opens the keytab lazily; inquire now so that a missing or
        # unreadable one fails here, not at the first client.
        credentials.inquire()
        return credentials

    return _translated("acquiring acceptor credentials", acquire)


def initiatorCredentials(ccache: str | None = None) -> gssapi.Credentials | None:
    """
    A SOCKS client's initiator credentials: those of the credential cache
    C{ccache} (such as C{"FILE:/tmp/krb5cc_1000"}), or C{None}, meaning the
    default ones (C{KRB5CCNAME}), when C{ccache} is C{None}.

    @raise GSSAPIError: If the cache holds no usable credentials.
    """
    if ccache is None:
        return None
    return _translated(
        "acquiring initiator credentials",
        lambda: gssapi.Credentials(usage="initiate", store={"ccache": ccache}),
    )


class _Context:
    """
    What both sides of an RFC 1961 context do: step through establishment
    in a thread, then wrap and unwrap.

    @ivar complete: Whether the context is established.
    """

    _operation = "establishing the context"

    def __init__(
        self,
        context: gssapi.SecurityContext,
        reactor: IReactorFromThreads,
        threadpool: ThreadPool,
    ) -> None:
        self._context = context
        self._reactor = reactor
        self._threadpool = threadpool
        self._stepping = False
        self.complete = False

    def _step(self, token: bytes | None) -> tuple[bytes | None, bool]:
        """
        One establishment call, in a pool thread.

        @return: The token for the peer, if any, and whether the context is
            now complete.
        """
        context = self._context

        def step() -> tuple[bytes | None, bool]:
            output = context.step(token) or None
            # When the mechanism fails with a token for the peer (a Kerberos
            # KRB-ERROR), python-gssapi returns the token and raises the
            # error at the context's next use: use it now.  RFC 1961 answers
            # a failure with the abort message, not with that token.
            return output, bool(context.complete)

        output, complete = _translated(self._operation, step)
        if output is not None and len(output) > MAX_TOKEN_LENGTH:
            raise GSSAPIError(
                self._operation,
                f"a context token of {len(output)} octets cannot be framed",
            )
        return output, complete

    def step(self, token: bytes | None) -> Deferred[bytes | None]:
        """
        Process the peer's context token (C{None} for an initiator's first
        step) in a thread.

        @return: A L{Deferred} that fires with the token to send to the peer
            (C{None} when there is none) after which L{complete} says
            whether the context is established; or fails with
            L{GSSAPIError}.

        @raise RuntimeError: If a step is still running or the context is
            already complete (the caller's bug).
        """
        if self._stepping:
            raise RuntimeError("a GSS-API step is already running")
        if self.complete:
            raise RuntimeError("the GSS-API context is already established")
        self._stepping = True
        stepping: Deferred[tuple[bytes | None, bool]] = deferToThreadPool(
            self._reactor, self._threadpool, self._step, token
        )

        def done(result: tuple[bytes | None, bool]) -> bytes | None:
            self._stepping = False
            output, self.complete = result
            return output

        def failed(failure: Failure) -> Failure:
            self._stepping = False
            return failure

        return stepping.addCallbacks(done, failed)

    def _established(self) -> gssapi.SecurityContext:
        if not self.complete:
            raise RuntimeError("the GSS-API context is not established yet")
        return self._context

    def available(self) -> frozenset[ProtectionLevel]:
        """
        The protection levels this context can provide: L{ProtectionLevel.NONE}
        always, L{INTEGRITY<ProtectionLevel.INTEGRITY>} with
        C{GSS_C_INTEG_FLAG}, L{CONFIDENTIALITY<ProtectionLevel.CONFIDENTIALITY>}
        with C{GSS_C_CONF_FLAG} too.  (L{SELECTIVE<ProtectionLevel.SELECTIVE>}
        is never offered: it needs a per-message policy RFC 1961 leaves to
        local configuration.)
        """
        flags = self._established().actual_flags
        levels = {ProtectionLevel.NONE}
        if gssapi.RequirementFlag.integrity in flags:
            levels.add(ProtectionLevel.INTEGRITY)
            if gssapi.RequirementFlag.confidentiality in flags:
                levels.add(ProtectionLevel.CONFIDENTIALITY)
        return frozenset(levels)

    def wrapProtectionLevel(self, level: ProtectionLevel, nec: bool = False) -> bytes:
        """
        The MTYP 2 token that says C{level}: the octet wrapped with
        C{conf_req} false (RFC 1961 section 4.4), or bare for the NEC
        variant.
        """
        octet = encodeProtectionLevel(level)
        if nec:
            return octet
        context = self._established()
        return _translated(
            "wrapping the protection level",
            lambda: context.wrap(octet, False).message,
        )

    def unwrapProtectionLevel(self, token: bytes) -> tuple[ProtectionLevel, bool]:
        """
        Read the peer's MTYP 2 token.

        @return: The protection level, and whether the token was the NEC
            variant's bare octet (answer it the same way).

        @raise GSSAPIError: If a wrapped token does not unwrap.
        @raise socks_twisted._wire.ProtocolError: If it holds no protection
            level.
        """
        if isUnprotectedProtectionToken(token):
            return decodeProtectionLevel(token), True
        context = self._established()
        octets = _translated(
            "unwrapping the protection level", lambda: context.unwrap(token).message
        )
        return decodeProtectionLevel(octets), False

    def maxDataLength(self, level: ProtectionLevel) -> int:
        """
        The most octets of data one MTYP 3 message can carry at C{level}:
        the longest input whose C{gss_wrap} output fits in 65535 octets.
        """
        context = self._established()
        return _translated(
            "sizing wrapped data",
            lambda: context.get_wrap_size_limit(
                MAX_TOKEN_LENGTH, level is ProtectionLevel.CONFIDENTIALITY
            ),
        )

    def wrap(self, data: bytes, level: ProtectionLevel) -> list[bytes]:
        """
        Wrap C{data} for MTYP 3 messages at C{level}: C{conf_req} false for
        integrity, true for confidentiality (RFC 1961 section 5), cut so that
        each token fits in a message.

        @return: The tokens, in order (none for empty data).

        @raise ValueError: If C{level} is L{ProtectionLevel.NONE} (nothing is
            wrapped) or L{ProtectionLevel.SELECTIVE} (unsupported).
        @raise GSSAPIError: If wrapping fails.
        """
        if level not in (ProtectionLevel.INTEGRITY, ProtectionLevel.CONFIDENTIALITY):
            raise ValueError(f"cannot wrap at protection level {level.name}")
        context = self._established()
        encrypt = level is ProtectionLevel.CONFIDENTIALITY
        chunk = self.maxDataLength(level)

        def wrapAll() -> list[bytes]:
            return [
                context.wrap(data[start : start + chunk], encrypt).message
                for start in range(0, len(data), chunk)
            ]

        return _translated("wrapping data", wrapAll)

    def unwrap(self, token: bytes, level: ProtectionLevel) -> bytes:
        """
        Unwrap the token of an MTYP 3 message at C{level}.

        @raise GSSAPIError: If it does not unwrap (tampered, replayed, out of
            sequence, another context's), or if at the confidentiality level
            it was not encrypted.
        """
        context = self._established()
        result = _translated("unwrapping data", lambda: context.unwrap(token))
        if level is ProtectionLevel.CONFIDENTIALITY and not result.encrypted:
            raise GSSAPIError(
                "unwrapping data",
                "the peer sent data without confidentiality"
                " at the confidentiality level",
            )
        return result.message


class Acceptor(_Context):
    """
    The server's side of an RFC 1961 context.
    """

    _operation = "accepting a context token"

    def __init__(
        self,
        credentials: gssapi.Credentials,
        reactor: IReactorFromThreads,
        threadpool: ThreadPool,
    ) -> None:
        """
        @param credentials: From L{acceptorCredentials}.
        @param reactor: The reactor the results are delivered in.
        @param threadpool: The threads the establishment calls run in.
        """
        super().__init__(
            gssapi.SecurityContext(creds=credentials, usage="accept"),
            reactor,
            threadpool,
        )

    def step(self, token: bytes | None) -> Deferred[bytes | None]:
        """
        Accept the client's context token; see L{_Context.step}.
        """
        if not token:
            return fail(GSSAPIError(self._operation, "no token from the client"))
        return super().step(token)

    @property
    def initiatorName(self) -> str:
        """
        The authenticated client's Kerberos principal, such as
        C{"alice@EXAMPLE.COM"}.
        """
        context = self._established()
        return _translated("naming the initiator", lambda: str(context.initiator_name))

    @property
    def acceptorName(self) -> str:
        """
        The service principal the client's ticket was for.
        """
        context = self._established()
        return _translated("naming the acceptor", lambda: str(context.target_name))


class Initiator(_Context):
    """
    The client's side of an RFC 1961 context.
    """

    _operation = "initiating the context"

    def __init__(
        self,
        target: gssapi.Name,
        reactor: IReactorFromThreads,
        threadpool: ThreadPool,
        credentials: gssapi.Credentials | None = None,
    ) -> None:
        """
        @param target: The server's service name, from L{serviceName}.
        @param reactor: The reactor the results are delivered in.
        @param threadpool: The threads the establishment calls run in.
        @param credentials: From L{initiatorCredentials}; C{None} for the
            default credentials.
        """
        super().__init__(
            gssapi.SecurityContext(
                name=target,
                creds=credentials,
                usage="initiate",
                mech=gssapi.MechType.kerberos,
                flags=INITIATOR_FLAGS,
            ),
            reactor,
            threadpool,
        )

    @property
    def targetName(self) -> str:
        """
        The service principal the context is with, once established.
        """
        context = self._established()
        return _translated("naming the target", lambda: str(context.target_name))


__all__ = [
    "DEFAULT_SERVICE",
    "Acceptor",
    "GSSAPIError",
    "Initiator",
    "acceptorCredentials",
    "initiatorCredentials",
    "serviceName",
]
