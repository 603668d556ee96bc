"""
C{--port} endpoint descriptions: checked before anything listens, given a
deep accept queue, C{systemd:} sockets found without Twisted's help, and
whether each listens where only the local host can connect.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.interfaces import (
    IReactorSocket,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import getPlugins
from twisted.protocols.haproxy import proxyEndpoint

#: The accept queue asked for when a description names none: a burst of
#: clients must not be dropped while the reactor is busy (Twisted's own
#: default is 50).
DEFAULT_BACKLOG = 1024

#: Where Linux says how deep an accept queue may be; larger requests are
#: silently cut to it.
SOMAXCONN_PATH = "/proc/sys/net/core/somaxconn"

#: The first descriptor systemd passes (C{SD_LISTEN_FDS_START}).
SYSTEMD_FIRST_DESCRIPTOR = 3

#: The endpoint types C{serverFromString} knows without a plugin; it matches
#: them case-sensitively, and plugin prefixes case-insensitively.
_BUILT_IN_TYPES = ("tcp", "unix", "ssl")

#: For each type that takes a backlog: the positions, among the positional
#: arguments after the type, of its backlog and of its interface (C{None}:
#: it has none), as Twisted's parsers declare them.
_POSITIONS: dict[str, tuple[int, int | None]] = {
    "tcp": (2, 1),
    "tcp6": (1, 2),
    "ssl": (5, 4),
    "unix": (2, None),
}

#: The arguments of a C{systemd:} description, in positional order.
_SYSTEMD_ARGUMENTS = ("domain", "index", "name")


class DescriptionError(ValueError):
    """
    A C{--port} description cannot be used; the message says why, without
    naming the option or the description.
    """


@dataclass(frozen=True)
class Listener:
    """
    A C{--port} description, ready to listen.

    @ivar description: The description as the operator wrote it.
    @ivar endpoint: What listens.
    @ivar loopbackOnly: Whether only the local host can certainly connect:
        TCP on a loopback address, a UNIX socket, or a socket from systemd
        bound to one of those.  (Behind C{haproxy:}, the wrapped
        description decides.)
    @ivar behindProxy: Whether connections come from a load balancer that
        names the real client in a PROXY protocol header (C{haproxy:}).
    """

    description: str
    endpoint: IStreamServerEndpoint
    loopbackOnly: bool
    behindProxy: bool = False


def parseDescription(description: str) -> tuple[list[str], dict[str, str]]:
    """
    Split a description as C{serverFromString} does: C{:} separates
    arguments, the first C{=} of one makes it a keyword, and a backslash
    takes the next character literally.

    @param description: The description.

    @return: The positional arguments, the type first, and the keywords.

    @raise DescriptionError: If it ends with a lone backslash.
    """
    args: list[str] = []
    keywords: dict[str, str] = {}
    pieces: list[str] = []
    current: list[str] = []
    characters = iter(description)
    for character in characters:
        if character == ":":
            pieces.append("".join(current))
            _add(pieces, args, keywords)
            pieces, current = [], []
        elif character == "=" and not pieces:
            pieces.append("".join(current))
            current = []
        elif character == "\\":
            escaped = next(characters, None)
            if escaped is None:
                raise DescriptionError("it ends with a lone backslash")
            current.append(escaped)
        else:
            current.append(character)
    pieces.append("".join(current))
    _add(pieces, args, keywords)
    return args, keywords


def _add(pieces: list[str], args: list[str], keywords: dict[str, str]) -> None:
    """
    Record one argument of a description.

    @param pieces: The argument: its value alone, or its name and value.
    @param args: The positional arguments so far.
    @param keywords: The keywords so far.
    """
    if len(pieces) == 1:
        args.append(pieces[0])
    else:
        keywords[pieces[0]] = pieces[1]


def listenBacklog(path: str = SOMAXCONN_PATH) -> int:
    """
    The accept queue to ask for: L{DEFAULT_BACKLOG}, or the system's
    C{somaxconn} where that is lower.

    @param path: The file that holds C{somaxconn}.

    @return: A positive backlog.
    """
    try:
        with open(path) as somaxconnFile:
            somaxconn = int(somaxconnFile.read().strip())
    except (OSError, ValueError):
        return DEFAULT_BACKLOG
    if somaxconn < 1:
        return DEFAULT_BACKLOG
    return min(DEFAULT_BACKLOG, somaxconn)


def _kind(written: str) -> str:
    """
    @param written: The type a description starts with.

    @return: The type as C{serverFromString} matches it: the built-in types
        as written, plugin prefixes lower-cased.
    """
    lowered = written.lower()
    if lowered in _BUILT_IN_TYPES:
        # "TCP" is no type at all: no plugin provides it.
        return written
    return lowered


def withBacklog(description: str, backlog: int) -> str:
    """
    Give a description that listens with an accept queue (C{tcp}, C{tcp6},
    C{ssl}, C{unix}, or C{haproxy} around one of them) a backlog, unless it
    names its own.

    @param description: The description.
    @param backlog: The backlog to add.

    @return: The description, with C{:backlog=...} appended where needed.
    """
    args, keywords = parseDescription(description)
    kind = _kind(args[0])
    if kind == "haproxy":
        written, _, inner = description.partition(":")
        return f"{written}:{withBacklog(inner, backlog)}" if inner else description
    if kind not in _POSITIONS:
        return description
    backlogPosition = _POSITIONS[kind][0]
    if "backlog" in keywords or len(args) - 1 > backlogPosition:
        return description
    return f"{description}:backlog={backlog}"


def _isLoopbackIP(text: str) -> bool:
    """
    @param text: An interface as written in a description, or a socket's
        address.

    @return: Whether it is certainly a loopback address.
    """
    if text == "localhost":
        return True
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _isLoopbackOnly(description: str) -> bool:
    """
    Whether a description that C{serverFromString} accepts listens where
    only the local host can connect.

    @param description: The description, its type known to Twisted.

    @return: C{True} for TCP on a loopback interface and for UNIX sockets;
        C{False} for anything else, including types this cannot judge.
    """
    args, keywords = parseDescription(description)
    kind = _kind(args[0])
    if kind == "unix":
        return True
    if kind not in _POSITIONS:
        return False
    interfacePosition = _POSITIONS[kind][1]
    assert interfacePosition is not None
    positional = args[1:]
    interface = keywords.get("interface")
    if interface is None and len(positional) > interfacePosition:
        interface = positional[interfacePosition]
    return _isLoopbackIP(interface or "")


def knownEndpointTypes() -> set[str]:
    """
    @return: The server endpoint types C{serverFromString} accepts, plugin
        prefixes lower-cased.
    """
    return set(_BUILT_IN_TYPES) | {
        plugin.prefix.lower()
        for plugin in getPlugins(IStreamServerEndpointStringParser)
    }


def execEnvironment(procPath: str = "/proc/self/environ") -> Mapping[str, str]:
    """
    The environment this process was started with.

    Importing C{twisted.internet.endpoints} deletes C{LISTEN_PID} and
    C{LISTEN_FDS} from C{os.environ}, long before options are parsed; Linux
    still shows the environment C{exec} received.

    @param procPath: Where the kernel shows it.

    @return: The environment at C{exec}, or C{os.environ} where the kernel
        does not show it.
    """
    try:
        with open(procPath, "rb") as environFile:
            raw = environFile.read()
    except OSError:
        return os.environ
    environment = {}
    for entry in raw.split(b"\0"):
        name, separator, value = entry.partition(b"=")
        if separator:
            environment[os.fsdecode(name)] = os.fsdecode(value)
    return environment


@dataclass(frozen=True)
class InheritedSockets:
    """
    The listening sockets systemd passed this process.

    @ivar descriptors: Their file descriptors, in order.
    @ivar names: Their names (C{LISTEN_FDNAMES}), or empty when systemd gave
        none (C{systemd-socket-activate} without C{--fdname}).
    """

    descriptors: Sequence[int]
    names: Sequence[str]

    @classmethod
    def fromEnvironment(
        cls,
        environment: Mapping[str, str],
        pid: int,
        first: int = SYSTEMD_FIRST_DESCRIPTOR,
    ) -> InheritedSockets:
        """
        Read what systemd says it passed, if it said so to this process.

        @param environment: The environment the process started with.
        @param pid: This process's ID, which C{LISTEN_PID} must name.
        @param first: The first descriptor passed.

        @return: The inherited sockets; none if they were meant for another
            process.
        """
        if environment.get("LISTEN_PID") != str(pid):
            return cls((), ())
        try:
            count = int(environment.get("LISTEN_FDS", ""))
        except ValueError:
            return cls((), ())
        names = environment.get("LISTEN_FDNAMES", "")
        return cls(
            tuple(range(first, first + max(count, 0))),
            tuple(names.split(":")) if names else (),
        )

    def find(self, index: str | None, name: str | None) -> int:
        """
        Find one inherited descriptor.

        @param index: Its position, in decimal, or C{None}.
        @param name: Its name, or C{None}.

        @return: The descriptor.

        @raise DescriptionError: If none matches, or not exactly one of
            C{index} and C{name} is given.
        """
        if (index is None) == (name is None):
            raise DescriptionError("give exactly one of index= and name=")
        if not self.descriptors:
            raise DescriptionError(
                "systemd passed no socket to this process "
                "(LISTEN_PID and LISTEN_FDS do not name it)"
            )
        if name is not None:
            if name not in self.names:
                known = ", ".join(repr(n) for n in self.names) or "none"
                raise DescriptionError(
                    f"systemd passed no socket named {name!r} (names: {known})"
                )
            return self.descriptors[self.names.index(name)]
        assert index is not None
        try:
            position = int(index)
        except ValueError:
            raise DescriptionError(f"index {index!r} is not a number") from None
        if not 0 <= position < len(self.descriptors):
            raise DescriptionError(
                f"index {position} is out of range: systemd passed "
                f"{len(self.descriptors)} socket(s)"
            )
        return self.descriptors[position]


def _systemdListener(
    reactor: IReactorSocket,
    description: str,
    args: list[str],
    keywords: dict[str, str],
    inherited: InheritedSockets,
) -> Listener:
    """
    Adopt a socket systemd passed, and judge it by the address it is bound
    to.

    @param reactor: Adopts the socket.
    @param description: The description as written.
    @param args: Its positional arguments, the type first.
    @param keywords: Its keywords.
    @param inherited: What systemd passed.

    @return: The listener.

    @raise DescriptionError: If the description or the socket is unusable.
    """
    if len(args) - 1 > len(_SYSTEMD_ARGUMENTS):
        raise DescriptionError("too many arguments for systemd:")
    given = dict(zip(_SYSTEMD_ARGUMENTS, args[1:], strict=False))
    for keyword, value in keywords.items():
        if keyword not in _SYSTEMD_ARGUMENTS:
            raise DescriptionError(f"systemd: takes no argument {keyword!r}")
        if keyword in given:
            raise DescriptionError(f"{keyword}= is given twice")
        given[keyword] = value
    domain = given.get("domain")
    if domain is None:
        raise DescriptionError("systemd: needs domain= (INET, INET6 or UNIX)")
    family = getattr(socket, "AF_" + domain, None)
    if not isinstance(family, int):
        raise DescriptionError(f"unknown address family {domain!r}")
    descriptor = inherited.find(given.get("index"), given.get("name"))
    actualFamily, address = _boundAddress(descriptor)
    if actualFamily != family:
        raise DescriptionError(
            f"descriptor {descriptor} is not an AF_{domain} socket "
            f"(its address is {address!r})"
        )
    if family == socket.AF_UNIX:
        loopbackOnly = True
    else:
        loopbackOnly = _isLoopbackIP(str(address[0]))
    return Listener(
        description,
        AdoptedStreamServerEndpoint(reactor, descriptor, family),
        loopbackOnly,
    )


def _boundAddress(descriptor: int) -> tuple[int, tuple[object, ...]]:
    """
    Look at an inherited socket without taking it over.

    @param descriptor: Its file descriptor, which stays open.

    @return: Its address family and its address (a 1-tuple holding the path
        for a UNIX socket).

    @raise DescriptionError: If it is not a socket.
    """
    try:
        sock = socket.socket(fileno=descriptor)
    except OSError as e:
        raise DescriptionError(
            f"descriptor {descriptor} is not a socket ({e.strerror})"
        ) from None
    try:
        address = sock.getsockname()
        family = sock.family
    finally:
        # The reactor adopts the descriptor later: it must stay open.
        sock.detach()
    return int(family), address if isinstance(address, tuple) else (address,)


def listenerFor(
    reactor: IReactorSocket,
    description: str,
    backlog: int,
    inherited: InheritedSockets,
) -> Listener:
    """
    Check a C{--port} description and make its endpoint, which does not
    listen yet.

    @param reactor: The reactor the endpoint listens with.
    @param description: The description as the operator wrote it.
    @param backlog: The accept queue it gets unless it names one.
    @param inherited: The sockets systemd passed, for C{systemd:}.

    @return: The listener.

    @raise DescriptionError: If the description cannot be used.
    """
    args, keywords = parseDescription(description)
    written = args[0]
    kind = _kind(written)
    if kind == "haproxy":
        inner = description.partition(":")[2]
        if not inner:
            raise DescriptionError("haproxy: needs the description it wraps")
        wrapped = listenerFor(reactor, inner, backlog, inherited)
        return Listener(
            description,
            proxyEndpoint(wrapped.endpoint),
            wrapped.loopbackOnly,
            behindProxy=True,
        )
    if kind == "systemd":
        # Twisted's own systemd: parser finds nothing when systemd named no
        # socket (LISTEN_FDNAMES), which systemd-socket-activate omits.
        return _systemdListener(reactor, description, args, keywords, inherited)
    if kind not in _BUILT_IN_TYPES and kind not in knownEndpointTypes():
        raise DescriptionError(f"unknown endpoint type {written!r}")
    effective = withBacklog(description, backlog)
    try:
        endpoint = serverFromString(reactor, effective)
    except Exception as e:
        # Parsers report bad arguments as whatever Python raised for them:
        # int() on a port, an unexpected keyword, a missing key file.
        raise DescriptionError(f"invalid description: {e}") from None
    return Listener(description, endpoint, _isLoopbackOnly(effective))
