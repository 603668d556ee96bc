"""
The one log event that sums up a session, with every client-controlled
string escaped so that no log line can be forged or carry terminal escapes.
"""

from twisted.internet.interfaces import IAddress
from twisted.logger import Logger

from .._addresses import formatAddress, formatHostPort

_PRINTABLE = frozenset(range(0x20, 0x7F)) - {ord("\\")}
_WORD = _PRINTABLE - {ord(" ")}


def escape(value: bytes | str, *, spaces: bool = False) -> str:
    """
    Printable ASCII as is; every other byte (of the UTF-8 encoding, for
    text), and the backslash itself so that an escape cannot be forged, as
    C{\\xNN}.

    @param spaces: Keep spaces as they are.  A field that is one word of a
        C{key=value} line (a user name, a host) escapes them, so that a
        client cannot add fields of its own; the reason, always last, keeps
        them.
    """
    plain = _PRINTABLE if spaces else _WORD
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if all(byte in plain for byte in raw):
        return raw.decode("ascii")
    return "".join(chr(b) if b in plain else f"\\x{b:02x}" for b in raw)


def clientName(peer: IAddress, host: IAddress) -> str:
    """
    How the log names a client: its address, or for an unnamed UNIX-socket
    client, the path of the socket it connected to.
    """
    name = formatAddress(peer)
    if name == "unix":
        listening = formatAddress(host)
        if listening not in ("unix", "-"):
            return f"unix:{listening}"
    return name


def _target(target: tuple[str, int] | None) -> str:
    return formatHostPort(escape(target[0]), target[1]) if target else "-"


def _via(via: str | None, bound: str | None) -> str:
    if via is None:
        return ""
    return f" via=upstream={via}" + (f" upstream_bound={bound}" if bound else "")


def logSessionStart(
    log: Logger,
    *,
    session: str,
    client: str,
    user: bytes | None,
    version: str,
    command: str,
    target: tuple[str, int] | None,
) -> None:
    """
    Log that a session's request was read: who asks for what.
    """
    log.info(
        "SOCKS request {session}: {client} user={user} version={version} "
        "command={command} target={target}",
        session=session,
        client=client,
        user=escape(user) if user else "-",
        version=version,
        command=command,
        target=_target(target),
    )


def logSession(
    log: Logger,
    *,
    session: str,
    client: str,
    user: bytes | None,
    version: str,
    command: str,
    target: tuple[str, int] | None,
    dialled: str | None,
    outbound: str | None,
    reply: int | None,
    outcome: str,
    rule: str | None,
    bytesFromClient: int,
    bytesToClient: int,
    duration: float,
    reason: str,
    relay: str | None = None,
    via: str | None = None,
    viaBound: str | None = None,
    bound: str | None = None,
    protection: str | None = None,
) -> None:
    """
    Log the session's summary to C{log} as it ends; C{user}, the target's
    host and C{reason} (which can quote a client's bytes) are escaped here.

    @param dialled: The address actually connected to, if any.
    @param outbound: The local address of that connection.
    @param outcome: How it ended (the metrics' C{outcome} label).
    @param rule: The access rule that decided the request, described.
    @param relay: How the relayed bytes moved (C{splice} or C{copy}); C{None}
        when nothing was relayed.
    @param via: The upstream proxy the session went through (its URL
        without credentials); C{None} when it went direct.
    @param viaBound: The address the upstream's reply named (where it
        connected from, listened or relays datagrams), once it answered.
    @param bound: The address a BIND's first reply or a UDP ASSOCIATE's
        reply named (where the server listened, or relays datagrams).
    @param protection: The GSS-API protection level agreed (C{none},
        C{integrity}, C{confidentiality}), when the session authenticated
        with GSSAPI.
    """
    reason = escape(reason, spaces=True)
    log.info(
        "SOCKS session {session} {client} user={user}{protectionText} "
        "version={version} "
        "command={command} target={target} reply={replyText}{boundText} "
        "outcome={outcome} "
        "bytes_up={bytesFromClient} bytes_down={bytesToClient} "
        "relay={relayText}{viaText} duration={duration:.3f}s{reasonSuffix}",
        session=session,
        client=client,
        user=escape(user) if user else "-",
        protection=protection,
        protectionText=f" gssapi={protection}" if protection else "",
        version=version,
        command=command,
        target=_target(target),
        dialled=dialled,
        outbound=outbound,
        reply=reply,
        replyText="-" if reply is None else reply,
        bound=bound,
        boundText=f" bound={bound}" if bound else "",
        outcome=outcome,
        rule=rule,
        bytesFromClient=bytesFromClient,
        bytesToClient=bytesToClient,
        duration=duration,
        relay=relay,
        relayText=relay or "-",
        via=via,
        viaBound=viaBound,
        viaText=_via(via, viaBound),
        reason=reason,
        reasonSuffix=f" reason={reason}" if reason else "",
    )
