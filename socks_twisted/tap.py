"""
C{twistd socks}: command-line options and the service they describe.
"""

import ipaddress
import re
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.strcred import AuthOptionMixin
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from .auth import portalFor
from .server import SOCKSServerFactory

DEFAULT_PORT = "tcp:1080:interface=127.0.0.1"

_UNESCAPED_COLON = re.compile(r"(?<!\\):")


def _split(description: str) -> list[str]:
    return [part.replace("\\:", ":") for part in _UNESCAPED_COLON.split(description)]


def isLoopbackOnly(description: str) -> bool:
    """
    Whether a server endpoint description certainly listens only where the
    local host alone can connect: TCP on a loopback interface, or a UNIX
    socket.  Anything this cannot tell (C{systemd:}, unknown plugins) counts
    as public.
    """
    parts = _split(description)
    kind = parts[0].lower()
    if kind == "haproxy":
        return isLoopbackOnly(
            description.split(":", 1)[1] if ":" in description else ""
        )
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6", "ssl"):
        return False
    positional = [p for p in parts[1:] if "=" not in p]
    keywords = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    interface = keywords.get("interface")
    if interface is None:
        interface = positional[2] if len(positional) > 2 else ""
    if interface == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


class Options(usage.Options, AuthOptionMixin):
    """
    Options of C{twistd socks}.
    """

    synopsis = "[options]"
    longdesc = (
        "A SOCKS4, SOCKS4a and SOCKS5 (RFC 1928) proxy server. --auth enables "
        "RFC 1929 username/password authentication through twisted.cred."
    )
    supportedInterfaces = (IUsernamePassword,)
    optFlags = [
        [
            "allow-socks4-with-auth",
            None,
            "With --auth, still serve SOCKS4/4a requests (they carry no password).",
        ],
        [
            "allow-public-unauthenticated",
            None,
            "Allow listening on a non-loopback address without --auth.",
        ],
    ]
    optParameters = [
        [
            "handshake-timeout",
            None,
            30.0,
            "Seconds a client has, in total, to finish its request.",
            float,
        ],
        [
            "connect-timeout",
            None,
            30.0,
            "Seconds allowed to reach a target, name resolution included.",
            float,
        ],
        [
            "idle-timeout",
            None,
            0.0,
            "Close a session idle both ways this long (seconds); 0: never.",
            float,
        ],
        [
            "bind-timeout",
            None,
            120.0,
            "Seconds a BIND listener waits for its one peer.",
            float,
        ],
        [
            "udp-timeout",
            None,
            300.0,
            "End a UDP association idle both ways this long (seconds).",
            float,
        ],
        [
            "external-address",
            None,
            None,
            "The IP that BIND and UDP ASSOCIATE replies name (the public "
            "address behind NAT) instead of the address the client reached.",
        ],
        [
            "max-sessions",
            None,
            1024,
            "Sessions open at once; connections beyond are closed at once.",
            int,
        ],
    ]
    compData = usage.Completions(optActions={"port": usage.Completer()})

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["ports"] = []

    def opt_port(self, description: str) -> None:
        """
        A server endpoint description to listen on (repeatable), e.g.
        tcp:1080:interface=127.0.0.1, tcp6:1080:interface=\\:\\:1,
        unix:/run/socks.sock, systemd:domain=INET:index=0.
        [default: tcp:1080:interface=127.0.0.1]
        """
        self["ports"].append(description)

    opt_p = opt_port

    def postOptions(self) -> None:
        if not self["ports"]:
            self["ports"] = [DEFAULT_PORT]
        for name in (
            "handshake-timeout",
            "connect-timeout",
            "bind-timeout",
            "udp-timeout",
        ):
            if not self[name] > 0:
                raise usage.UsageError(f"--{name} must be positive")
        if self["idle-timeout"] < 0:
            raise usage.UsageError("--idle-timeout must be 0 (off) or positive")
        if self["external-address"] is not None:
            try:
                ipaddress.ip_address(self["external-address"])
            except ValueError:
                raise usage.UsageError(
                    "--external-address must be an IP address"
                ) from None
        if self["max-sessions"] < 1:
            raise usage.UsageError("--max-sessions must be at least 1")
        if not self.get("credCheckers") and not self["allow-public-unauthenticated"]:
            for description in self["ports"]:
                if not isLoopbackOnly(description):
                    raise usage.UsageError(
                        f"refusing to listen on {description!r} without --auth: "
                        "it is not (certainly) a loopback address, so anyone who "
                        "can reach it could use this proxy. Configure --auth, or "
                        "pass --allow-public-unauthenticated if that is intended."
                    )


def makeService(options: dict[str, Any]) -> IService:
    """
    One listening service per C{--port}, all sharing one factory.
    """
    from twisted.internet import reactor

    checkers = options.get("credCheckers") or []
    factory = SOCKSServerFactory(
        reactor,
        portal=portalFor(checkers) if checkers else None,
        allowSOCKS4WithAuth=options["allow-socks4-with-auth"],
        handshakeTimeout=options["handshake-timeout"],
        connectTimeout=options["connect-timeout"],
        idleTimeout=options["idle-timeout"] or None,
        maxSessions=options["max-sessions"],
        bindTimeout=options["bind-timeout"],
        udpTimeout=options["udp-timeout"],
        externalAddress=options["external-address"],
    )
    service = MultiService()
    for description in options["ports"]:
        listening = StreamServerEndpointService(
            serverFromString(reactor, description), factory
        )
        # Fail at start-up, not in a log line, when a port cannot be had.
        listening._raiseSynchronously = True
        listening.setServiceParent(service)
    return service
