"""
Tor's lookup commands (torspec socks-extensions.txt, section 2): RESOLVE
answers the addresses a name resolves to, RESOLVE_PTR the name of an
address, each in one reply, after which the session ends.

They go through the same authentication, rules and limits as CONNECT: the
session decides the request as it does any other, and a name whose every
address the rules deny is not resolved for the client (reply 0x02), since
the answer itself would tell what the rules keep from it.  Failures are
answered as Tor answers them: 0x04 (host unreachable) when there is no
answer, and 0x06 when none came in time (C{connectTimeout}).
"""

import socket
from dataclasses import replace

from twisted.internet import defer, error
from twisted.python.failure import Failure

from .._addresses import isUnspecified
from .._wire import AddressType, SOCKS5ReplyCode, addressTypeOf, encodeName
from .._wire import normalizeIP as _normalizeIP
from ..policy import Decision
from ._command import (
    CommandContext,
    Outcome,
    RefusedError,
    Request,
    Resolved,
    deniedBy,
)

_UNSPECIFIED = "unspecified address (0.0.0.0 or ::): no answer"


def _timedOut(failure: Failure, what: str, seconds: float) -> Failure:
    """
    Name a timeout in the refusal; pass anything else on.
    """
    if failure.check(defer.TimeoutError):
        raise RefusedError(
            SOCKS5ReplyCode.TTL_EXPIRED, f"{what}: no answer within {seconds:g} s"
        )
    return failure


def resolve(request: Request, context: CommandContext) -> "defer.Deferred[Outcome]":
    """
    Serve a RESOLVE: the first address of the name the rules allow, IPv4
    before IPv6 (SOCKS4 carries IPv4 only).  An address is its own answer,
    as in Tor; the session has checked it against the rules already.
    """
    host = request.host
    if addressTypeOf(host) is not AddressType.DOMAIN:
        if isUnspecified(host):
            return defer.fail(
                RefusedError(SOCKS5ReplyCode.HOST_UNREACHABLE, _UNSPECIFIED)
            )
        return defer.succeed(Resolved(_normalizeIP(host)))
    try:
        # A NUL would reach getaddrinfo, which raises in its thread.
        encodeName(host)
    except ValueError as e:
        return defer.fail(
            RefusedError(SOCKS5ReplyCode.HOST_UNREACHABLE, f"invalid host name: {e}")
        )
    families = [socket.AF_INET]
    if request.version == 5:
        families.append(socket.AF_INET6)
    # Both families at once; a failure of one is only an empty answer.
    failures: list[Failure] = []

    def noAnswer(failure: Failure) -> list[str]:
        failures.append(failure)
        return []

    try:
        lookups = [
            context.network.resolve(host, family).addErrback(noAnswer)
            for family in families
        ]
    except Exception as e:  # a name the resolver cannot even take (bad IDNA)
        return defer.fail(
            RefusedError(SOCKS5ReplyCode.HOST_UNREACHABLE, f"invalid host name: {e}")
        )
    timeout = context.settings.connectTimeout
    policy, asked = context.policy, context.policyRequest

    def answered(results: list[list[str]]) -> Outcome:
        if any(failure.check(defer.CancelledError) for failure in failures):
            raise defer.CancelledError()  # the session gave up, or timed out
        # 0.0.0.0 (what DNS blocklists answer) is no address to give: a SOCKS4
        # reply with it reads as a server that fills in nothing.
        addresses = [
            address
            for found in results
            for address in found
            if not isUnspecified(address)
        ]
        if not addresses:
            why = failures[0].getErrorMessage() if failures else "no address"
            raise RefusedError(
                SOCKS5ReplyCode.HOST_UNREACHABLE, f"resolving {host} failed: {why}"
            )
        denials: list[Decision] = []
        for address in addresses:
            decision = policy.decide(asked, address)
            if decision.allowed:
                return Resolved(address)
            denials.append(decision)
        raise deniedBy(denials[0], f"every address of {host}")

    result: defer.Deferred[Outcome] = defer.gatherResults(lookups).addCallback(answered)
    # After answered: cancelling the gathering cancels the lookups, whose
    # CancelledErrors answered raises, and which the timeout then turns
    # into a TimeoutError.
    result.addTimeout(timeout, context.reactor)
    result.addErrback(_timedOut, f"resolving {host}", timeout)
    return result


def resolvePTR(request: Request, context: CommandContext) -> "defer.Deferred[Outcome]":
    """
    Serve a RESOLVE_PTR: the name of the address.  The session has checked
    the address against the rules; the name is checked too, so that rules
    denying names (C{.corp.example}) keep them from the client as well.
    """
    host = request.host
    if addressTypeOf(host) is AddressType.DOMAIN:
        # Tor reads in-addr.arpa names here too; an address is what the
        # spec asks for, and 0x08 says exactly what is wrong.
        return defer.fail(
            RefusedError(
                SOCKS5ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED,
                f"RESOLVE_PTR needs an address, not the name {host!r}",
            )
        )
    address = _normalizeIP(host)
    try:
        lookup = context.network.reverse(address)
    except Exception as e:
        return defer.fail(
            RefusedError(
                SOCKS5ReplyCode.GENERAL_FAILURE, f"reverse lookup of {address}: {e}"
            )
        )
    timeout = context.settings.connectTimeout
    lookup.addTimeout(timeout, context.reactor)
    policy, asked = context.policy, context.policyRequest

    def answered(name: str) -> Outcome:
        try:
            encodeName(name)  # what a reply's ATYP 3 can carry
        except ValueError as e:
            raise RefusedError(
                SOCKS5ReplyCode.HOST_UNREACHABLE,
                f"the name of {address} cannot be sent: {e}",
            ) from None
        decision = policy.decide(replace(asked, host=name), address)
        if not decision.allowed:
            raise deniedBy(decision, f"{address}'s name {name}")
        return Resolved(name)

    def failed(failure: Failure) -> Failure:
        if failure.check(defer.CancelledError, defer.TimeoutError):
            return failure
        if failure.check(OSError, error.DNSLookupError):
            raise RefusedError(
                SOCKS5ReplyCode.HOST_UNREACHABLE,
                f"no name for {address}: {failure.getErrorMessage()}",
            )
        return failure  # a bug: the session logs it, answers 0x01

    result: defer.Deferred[Outcome] = lookup.addErrback(failed).addCallback(answered)
    result.addErrback(_timedOut, f"reverse lookup of {address}", timeout)
    return result
