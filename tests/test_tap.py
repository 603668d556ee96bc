"""
In-process tests of C{twistd socks}'s options, start-up checks and services:
L{socks_twisted.tap} and the modules it is built from.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from twisted.application.service import IService, MultiService
from twisted.internet import reactor as _globalReactor  # noqa: N812
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    TCP4ServerEndpoint,
    UNIXServerEndpoint,
    _parse,
    serverFromString,
)
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocolFactory,
    IReactorSocket,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import implementer

from socks_twisted import tap
from socks_twisted._descriptors import (
    MARGIN,
    PER_SESSION,
    SessionBudget,
    budgetSessions,
    descriptorsNeeded,
)
from socks_twisted._listen import (
    DEFAULT_BACKLOG,
    DescriptionError,
    InheritedSockets,
    execEnvironment,
    knownEndpointTypes,
    listenBacklog,
    listenerFor,
    parseDescription,
    withBacklog,
)
from socks_twisted._sighup import IGNORED_MESSAGE, SIGHUPService
from socks_twisted._startup import (
    ListeningService,
    StartupError,
    listenFailureMessage,
)
from socks_twisted.server import SOCKSServerFactory

#: A key and certificate that Twisted's own tests use, for C{ssl:}.
SERVER_PEM = os.path.join(
    os.path.dirname(
        os.path.dirname(os.path.abspath(serverFromString.__code__.co_filename))
    ),
    "test",
    "server.pem",
)

NO_SOCKETS = InheritedSockets((), ())


def memoryReactor() -> IReactorSocket:
    """
    @return: A reactor that records instead of listening.
    """
    return IReactorSocket(MemoryReactor())


def parse(*argv: str) -> tap.Options:
    """
    Parse a C{twistd socks} command line, with a reactor that never listens.

    @param argv: The arguments after C{socks}.

    @return: The parsed options.
    """
    options = tap.Options(memoryReactor())
    options.parseOptions(list(argv))
    return options


def usageError(*argv: str) -> str:
    """
    Parse a command line that must be refused.

    @param argv: The arguments after C{socks}.

    @return: The message of the L{usage.UsageError}.

    @raise AssertionError: If the command line is accepted.
    """
    try:
        parse(*argv)
    except usage.UsageError as e:
        return str(e)
    raise AssertionError(f"{argv} was accepted")


@contextmanager
def blockedImports(*names: str) -> Iterator[None]:
    """
    Make importing some modules fail, as it does on Pythons without them.

    @param names: The modules.
    """
    saved = {name: sys.modules.get(name) for name in names}
    for name in names:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


def children(service: IService) -> list[IService]:
    """
    @param service: A L{MultiService}.

    @return: The services in it, in order.
    """
    return list(cast(MultiService, service))


def messages(events: list[LogEvent] | Any) -> list[str]:
    """
    @param events: Captured log events.

    @return: Their formatted texts.
    """
    return [formatEvent(event) for event in events]


class ParseDescriptionTests(SynchronousTestCase):
    """
    L{parseDescription} splits a description as C{serverFromString} does.
    """

    def test_sameAsTwisted(self) -> None:
        """
        Positional arguments, keywords, escaped colons and backslashes, and
        C{=} inside values come out as Twisted's own parser gives them.
        """
        for description in [
            "tcp:1080",
            "tcp:1080:interface=127.0.0.1",
            r"tcp6:1080:interface=\:\:1",
            r"unix:/tmp/a\:b:mode=600",
            "ssl:443:privateKey=k=v.pem:certKey=c.pem",
            r"unix:/tmp/back\\slash",
            r"tcp:1080:\=literal",
            "",
            "tcp:",
        ]:
            args, keywords = _parse(description)
            self.assertEqual(
                parseDescription(description), (args, keywords), description
            )

    def test_loneBackslash(self) -> None:
        """
        A description that ends in a lone backslash is refused (Twisted
        fails on it with an internal error).
        """
        self.assertRaises(DescriptionError, parseDescription, "unix:/tmp/x\\")


class ListenBacklogTests(SynchronousTestCase):
    """
    L{listenBacklog} asks for 1024, or the system's C{somaxconn} if lower.
    """

    def somaxconn(self, content: str) -> str:
        """
        @param content: What the file holds.

        @return: The path of a new file that holds it.
        """
        path: str = self.mktemp()
        FilePath(path).setContent(content.encode("ascii"))
        return path

    def test_lowerOfTheTwo(self) -> None:
        """
        A C{somaxconn} above 1024 leaves 1024; one below it wins.
        """
        self.assertEqual(listenBacklog(self.somaxconn("4096\n")), DEFAULT_BACKLOG)
        self.assertEqual(DEFAULT_BACKLOG, 1024)
        self.assertEqual(listenBacklog(self.somaxconn("128\n")), 128)

    def test_unreadable(self) -> None:
        """
        Without a usable C{somaxconn} (another system, garbage, zero), the
        backlog is 1024; the kernel cuts it if it must.
        """
        self.assertEqual(listenBacklog(self.mktemp()), DEFAULT_BACKLOG)
        self.assertEqual(listenBacklog(self.somaxconn("many")), DEFAULT_BACKLOG)
        self.assertEqual(listenBacklog(self.somaxconn("0")), DEFAULT_BACKLOG)


class WithBacklogTests(SynchronousTestCase):
    """
    L{withBacklog} adds C{backlog=} to descriptions with an accept queue
    that name none.
    """

    def test_default(self) -> None:
        """
        The default description gets the backlog.
        """
        self.assertEqual(
            withBacklog(tap.DEFAULT_PORT, 1024),
            "tcp:1080:interface=127.0.0.1:backlog=1024",
        )

    def test_everyQueuedType(self) -> None:
        """
        C{tcp}, C{tcp6}, C{ssl}, C{unix} and C{haproxy} around one of them
        get it, escaped colons and all, and Twisted accepts the result.
        """
        for description in [
            "tcp:0",
            r"tcp6:0:interface=\:\:1",
            r"TCP6:0:interface=\:\:1",
            "ssl:0:privateKey=server.pem",
            r"unix:/tmp/a\:b\:c",
            "haproxy:tcp:0:interface=127.0.0.1",
        ]:
            rewritten = withBacklog(description, 77)
            self.assertEqual(rewritten, description + ":backlog=77")
            self.assertEqual(_parse(rewritten)[1]["backlog"], "77")

    def test_ownBacklogKept(self) -> None:
        """
        A backlog the description names, by keyword or by position, is
        left alone.
        """
        for description in [
            "tcp:0:backlog=5",
            "tcp:0:127.0.0.1:5",
            "tcp6:0:5",
            r"unix:/tmp/s:666:5",
            "ssl:0:k.pem:c.pem:SSLv23_METHOD:127.0.0.1:5",
            "haproxy:tcp:0:interface=127.0.0.1:backlog=5",
        ]:
            self.assertEqual(withBacklog(description, 77), description)

    def test_othersUnchanged(self) -> None:
        """
        Types without an accept queue of their own, and types this does not
        know, are left alone.
        """
        for description in [
            "systemd:domain=INET:index=0",
            "stdio:",
            "bogus:1080",
            "TCP:1080",
            "haproxy:",
            "haproxy",
        ]:
            self.assertEqual(withBacklog(description, 77), description)


class ListenerForTests(SynchronousTestCase):
    """
    L{listenerFor} checks a description, makes its endpoint and judges
    whether it is loopback only.
    """

    def listener(self, description: str) -> tuple[IStreamServerEndpoint, bool]:
        """
        @param description: A C{--port} description.

        @return: Its endpoint, and whether it is loopback only.
        """
        made = listenerFor(memoryReactor(), description, 99, NO_SOCKETS)
        self.assertEqual(made.description, description)
        return made.endpoint, made.loopbackOnly

    def test_backlogApplied(self) -> None:
        """
        The endpoint listens with the backlog given, or with the one the
        description names.
        """
        reactor = MemoryReactor()
        for description, backlog in [
            ("tcp:0:interface=127.0.0.1", 99),
            ("tcp:0:interface=127.0.0.1:backlog=7", 7),
        ]:
            made = listenerFor(IReactorSocket(reactor), description, 99, NO_SOCKETS)
            made.endpoint.listen(Factory())
            self.assertEqual(reactor.tcpServers[-1][2], backlog)

    def test_loopback(self) -> None:
        """
        TCP on a loopback address (by keyword or by position, IPv4, IPv6,
        IPv4-mapped or C{localhost}) and UNIX sockets are loopback only,
        behind C{haproxy:} too.
        """
        for description in [
            "tcp:0:interface=127.0.0.1",
            "tcp:0:127.0.0.2",
            "tcp:0:interface=localhost",
            r"tcp6:0:interface=\:\:1",
            r"tcp6:0:50:\:\:1",
            r"tcp6:0:interface=\:\:ffff\:127.0.0.1",
            f"ssl:0:privateKey={SERVER_PEM}:interface=127.0.0.1",
            "unix:/tmp/socks-test.sock",
            "haproxy:tcp:0:interface=127.0.0.1",
        ]:
            self.assertTrue(self.listener(description)[1], description)

    def test_public(self) -> None:
        """
        Everything else counts as public: no interface, a wildcard, a
        routable address, a host name, and types this cannot judge.
        """
        for description in [
            "tcp:0",
            "tcp:0:interface=0.0.0.0",
            "tcp:0:interface=192.0.2.1",
            "tcp:0:interface=example.com",
            "tcp6:0",
            r"tcp6:0:interface=\:\:",
            r"tcp6:0:interface=\:\:ffff\:192.0.2.1",
            f"ssl:0:privateKey={SERVER_PEM}",
            "haproxy:tcp:0",
            "stdio:",
        ]:
            self.assertFalse(self.listener(description)[1], description)

    def test_unknownType(self) -> None:
        """
        A type no parser or plugin provides is named in the error.
        """
        error = self.assertRaises(DescriptionError, self.listener, "bogus:1080")
        self.assertEqual(str(error), "unknown endpoint type 'bogus'")
        error = self.assertRaises(DescriptionError, self.listener, "TCP:1080")
        self.assertEqual(str(error), "unknown endpoint type 'TCP'")
        self.assertNotIn("bogus", knownEndpointTypes())
        self.assertIn("tcp6", knownEndpointTypes())

    def test_invalidArguments(self) -> None:
        """
        Arguments the type's parser refuses give one line saying so.
        """
        for description, detail in [
            ("tcp:abc", "invalid literal for int()"),
            ("tcp:0:colour=blue", "colour"),
            ("ssl:0:privateKey=/nonexistent.pem", "nonexistent"),
            ("unix:/tmp/x\\", "lone backslash"),
        ]:
            error = self.assertRaises(DescriptionError, self.listener, description)
            self.assertIn(detail, str(error), description)

    def test_haproxy(self) -> None:
        """
        C{haproxy:} wraps the endpoint of the description it holds, and
        needs one.
        """
        endpoint = self.listener("haproxy:tcp:0:interface=127.0.0.1")[0]
        self.assertNotIsInstance(endpoint, TCP4ServerEndpoint)
        self.assertIsInstance(endpoint._wrappedEndpoint, TCP4ServerEndpoint)  # type: ignore[attr-defined]
        self.assertRaises(DescriptionError, self.listener, "haproxy:")

    def test_unix(self) -> None:
        """
        A UNIX description makes Twisted's UNIX endpoint.
        """
        self.assertIsInstance(
            self.listener("unix:/tmp/socks-test.sock")[0], UNIXServerEndpoint
        )


class InheritedSocketsTests(SynchronousTestCase):
    """
    L{InheritedSockets} reads what systemd passed, from the environment the
    process started with.
    """

    def test_forThisProcess(self) -> None:
        """
        With C{LISTEN_PID} naming the process, C{LISTEN_FDS} descriptors from
        3 on are inherited, named by C{LISTEN_FDNAMES} when it is there.
        """
        named = InheritedSockets.fromEnvironment(
            {"LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}, 42
        )
        self.assertEqual(named, InheritedSockets((3, 4), ("a", "b")))
        self.assertEqual(named.find(None, "b"), 4)
        self.assertEqual(named.find("0", None), 3)
        unnamed = InheritedSockets.fromEnvironment(
            {"LISTEN_PID": "42", "LISTEN_FDS": "1"}, 42
        )
        self.assertEqual(unnamed, InheritedSockets((3,), ()))
        self.assertEqual(unnamed.find("0", None), 3)

    def test_forAnotherProcess(self) -> None:
        """
        Descriptors meant for another process, or a C{LISTEN_FDS} that is
        not a number, give nothing.
        """
        for environment in [
            {"LISTEN_PID": "41", "LISTEN_FDS": "1"},
            {"LISTEN_FDS": "1"},
            {"LISTEN_PID": "42", "LISTEN_FDS": "one"},
        ]:
            self.assertEqual(
                InheritedSockets.fromEnvironment(environment, 42), NO_SOCKETS
            )

    def test_findErrors(self) -> None:
        """
        Each way of asking for a socket that is not there says why.
        """
        sockets = InheritedSockets((3,), ("web",))
        for index, name, detail in [
            ("1", None, "out of range: systemd passed 1 socket(s)"),
            ("-1", None, "out of range"),
            ("first", None, "'first' is not a number"),
            (None, "socks", "no socket named 'socks' (names: 'web')"),
            (None, None, "exactly one of index= and name="),
            ("0", "web", "exactly one of index= and name="),
        ]:
            error = self.assertRaises(DescriptionError, sockets.find, index, name)
            self.assertIn(detail, str(error))
        error = self.assertRaises(DescriptionError, NO_SOCKETS.find, "0", None)
        self.assertIn("systemd passed no socket to this process", str(error))

    def test_execEnvironment(self) -> None:
        """
        L{execEnvironment} reads the kernel's copy of the environment, which
        Twisted's deletions from L{os.environ} do not touch; without it, it
        falls back to L{os.environ}.
        """
        path = self.mktemp()
        FilePath(path).setContent(b"LISTEN_PID=7\0LISTEN_FDS=1\0EMPTY=\0junk\0")
        self.assertEqual(
            execEnvironment(path), {"LISTEN_PID": "7", "LISTEN_FDS": "1", "EMPTY": ""}
        )
        self.assertIs(execEnvironment(self.mktemp()), os.environ)
        if os.path.exists("/proc/self/environ"):
            self.assertEqual(execEnvironment().get("PATH"), os.environ.get("PATH"))


class SystemdListenerTests(SynchronousTestCase):
    """
    C{systemd:} descriptions adopt the socket systemd passed, and are judged
    by the address that socket is bound to.
    """

    def listeningSocket(
        self, family: int = socket.AF_INET, address: Any = ("127.0.0.1", 0)
    ) -> socket.socket:
        """
        @return: A new listening socket, closed when the test ends.
        """
        sock = socket.socket(family, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.bind(address)
        sock.listen()
        return sock

    def systemd(
        self, description: str, sock: socket.socket
    ) -> tuple[IStreamServerEndpoint, bool]:
        """
        @param description: A C{systemd:} description.
        @param sock: The socket systemd would have passed.

        @return: The endpoint and whether it is loopback only.
        """
        inherited = InheritedSockets((sock.fileno(),), ("socks",))
        made = listenerFor(memoryReactor(), description, 99, inherited)
        return made.endpoint, made.loopbackOnly

    def test_loopbackSocket(self) -> None:
        """
        A socket bound to 127.0.0.1 is adopted and is loopback only; the
        look at its address leaves it open.
        """
        sock = self.listeningSocket()
        endpoint, loopbackOnly = self.systemd("systemd:domain=INET:index=0", sock)
        self.assertTrue(loopbackOnly)
        self.assertIsInstance(endpoint, AdoptedStreamServerEndpoint)
        self.assertEqual(endpoint.fileno, sock.fileno())  # type: ignore[attr-defined]
        self.assertEqual(endpoint.addressFamily, socket.AF_INET)  # type: ignore[attr-defined]
        os.fstat(sock.fileno())
        self.assertEqual(sock.getsockname()[0], "127.0.0.1")

    def test_byNameAndPosition(self) -> None:
        """
        The socket may be named, and the arguments given by position.
        """
        sock = self.listeningSocket()
        self.assertTrue(self.systemd("systemd:domain=INET:name=socks", sock)[1])
        self.assertTrue(self.systemd("systemd:INET:0", sock)[1])

    def test_publicSocket(self) -> None:
        """
        A socket bound to the wildcard address is public.
        """
        sock = self.listeningSocket(address=("0.0.0.0", 0))
        self.assertFalse(self.systemd("systemd:domain=INET:index=0", sock)[1])

    def test_unixSocket(self) -> None:
        """
        A UNIX socket is loopback only.
        """
        # A short directory of its own: a socket path is limited to 107
        # bytes, and the test's own directory can be deeper than that (as
        # in an unpacked sdist).
        directory = tempfile.mkdtemp(prefix="socks-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "s")
        sock = self.listeningSocket(socket.AF_UNIX, path)
        self.assertTrue(self.systemd("systemd:domain=UNIX:index=0", sock)[1])

    def test_errors(self) -> None:
        """
        A wrong family, an unknown family, a missing domain, an argument
        systemd: does not take, or too many, are refused.
        """
        sock = self.listeningSocket()
        for description, detail in [
            ("systemd:domain=INET6:index=0", "is not an AF_INET6 socket"),
            ("systemd:domain=BOGUS:index=0", "unknown address family 'BOGUS'"),
            ("systemd:index=0", "needs domain="),
            ("systemd:domain=INET:index=0:colour=blue", "no argument 'colour'"),
            ("systemd:INET:domain=INET:index=0", "domain= is given twice"),
            ("systemd:INET:0:socks:extra", "too many arguments"),
        ]:
            error = self.assertRaises(DescriptionError, self.systemd, description, sock)
            self.assertIn(detail, str(error), description)

    def test_notASocket(self) -> None:
        """
        A descriptor that is not a socket is refused, and left open.
        """
        readEnd, writeEnd = os.pipe()
        self.addCleanup(os.close, readEnd)
        self.addCleanup(os.close, writeEnd)
        inherited = InheritedSockets((readEnd,), ())
        error = self.assertRaises(
            DescriptionError,
            listenerFor,
            memoryReactor(),
            "systemd:domain=INET:index=0",
            99,
            inherited,
        )
        self.assertIn(f"descriptor {readEnd} is not a socket", str(error))
        os.fstat(readEnd)


class SystemdListensTests(TestCase):
    """
    The adopted socket serves once the reactor listens on it.
    """

    async def test_adoptAndServe(self) -> None:
        """
        A connection to the socket systemd passed reaches the factory.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        address = sock.getsockname()
        # The reactor closes its own copy; this one is the test's to close.
        descriptor = os.dup(sock.fileno())
        sock.close()
        made = listenerFor(
            IReactorSocket(_globalReactor),
            "systemd:domain=INET:index=0",
            99,
            InheritedSockets((descriptor,), ()),
        )
        connected: Deferred[None] = Deferred()

        class Accepted(Protocol):
            def connectionMade(self) -> None:
                connected.callback(None)
                self.transport.loseConnection()  # type: ignore[union-attr]

        port = await made.endpoint.listen(Factory.forProtocol(Accepted))
        self.addCleanup(port.stopListening)
        self.assertEqual(port.getHost().port, address[1])  # type: ignore[attr-defined]
        client = socket.create_connection(address, timeout=10)
        self.addCleanup(client.close)
        await connected


class OptionsTests(SynchronousTestCase):
    """
    L{tap.Options} checks every option before anything starts.
    """

    def test_defaults(self) -> None:
        """
        Without options the server listens on 127.0.0.1:1080 only, which
        needs no C{--auth}.
        """
        options = parse()
        self.assertEqual(options["ports"], [tap.DEFAULT_PORT])
        [listener] = options["listeners"]
        self.assertTrue(listener.loopbackOnly)
        self.assertEqual(options["max-sessions"], 1024)

    def test_timeouts(self) -> None:
        """
        Every timeout must be positive; the idle timeout may be 0 (off).
        """
        for name in ["handshake", "connect", "bind", "udp"]:
            for value in ["0", "-1"]:
                self.assertEqual(
                    usageError(f"--{name}-timeout", value),
                    f"--{name}-timeout must be positive",
                )
        self.assertEqual(
            usageError("--idle-timeout", "-0.5"),
            "--idle-timeout must be 0 (off) or positive",
        )
        self.assertEqual(parse("--idle-timeout", "0")["idle-timeout"], 0.0)
        self.assertEqual(parse("--idle-timeout", "2.5")["idle-timeout"], 2.5)

    def test_relay(self) -> None:
        """
        C{--relay} is C{auto} (splice where possible) by default, or
        C{copy}; nothing else.
        """
        self.assertEqual(parse()["relay"], "auto")
        self.assertEqual(parse("--relay", "copy")["relay"], "copy")
        self.assertEqual(
            usageError("--relay", "zerocopy"), "--relay must be 'auto' or 'copy'"
        )

    def test_externalAddress(self) -> None:
        """
        C{--external-address} takes IP addresses, one per family.
        """
        message = (
            "--external-address must be an IP address, or one IPv4 and one "
            "IPv6 address separated by a comma"
        )
        self.assertEqual(usageError("--external-address", "example.com"), message)
        self.assertEqual(
            usageError("--external-address", "192.0.2.1,example.com"), message
        )
        self.assertEqual(
            usageError("--external-address", "192.0.2.1,192.0.2.2"),
            "--external-address takes one address per family",
        )
        self.assertEqual(
            parse("--external-address", "2001:db8::1")["externalAddresses"],
            ("2001:db8::1",),
        )
        self.assertEqual(
            parse("--external-address", "192.0.2.1, 2001:db8::1")["externalAddresses"],
            ("192.0.2.1", "2001:db8::1"),
        )
        self.assertEqual(parse()["externalAddresses"], ())

    def test_maxSessions(self) -> None:
        """
        C{--max-sessions} must be at least 1.
        """
        for value in ["0", "-3"]:
            self.assertEqual(
                usageError("--max-sessions", value),
                "--max-sessions must be at least 1",
            )
        self.assertEqual(parse("--max-sessions", "1")["max-sessions"], 1)

    def test_publicNeedsAuth(self) -> None:
        """
        A public address is refused without C{--auth} unless
        C{--allow-public-unauthenticated}; one among loopback ones is enough
        to refuse.
        """
        message = usageError("--port", "tcp:0:interface=127.0.0.1", "--port", "tcp:0")
        self.assertIn("refusing to listen on 'tcp:0' without --auth", message)
        self.assertIn("--allow-public-unauthenticated", message)
        parse("--port", "tcp:0", "--allow-public-unauthenticated")
        parse("--port", "tcp:0", "--auth", "memory:user:pass")

    def test_unknownEndpointType(self) -> None:
        """
        An unknown endpoint type is named before the loopback check, which
        would otherwise blame the missing C{--auth}.
        """
        self.assertEqual(
            usageError("--port", "bogus:1080"),
            "--port 'bogus:1080': unknown endpoint type 'bogus'",
        )

    def test_invalidDescription(self) -> None:
        """
        A description its parser refuses gives one line naming it.
        """
        message = usageError("--port", "tcp:abc")
        self.assertTrue(
            message.startswith("--port 'tcp:abc': invalid description: "), message
        )

    def test_authFileMissing(self) -> None:
        """
        C{--auth file:} with a file that is not there is refused at once
        (Twisted only warns, then refuses every login).
        """
        missing = os.path.abspath(self.mktemp())
        self.assertEqual(
            usageError("--auth", f"file:{missing}"),
            f"--auth file:{missing}: no such file",
        )
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        self.assertEqual(
            usageError("--auth", f"file:{directory}"),
            f"--auth file:{directory}: is a directory, not a file",
        )
        self.assertEqual(
            usageError("--auth", "file:"), "--auth file:: needs the path of a file"
        )

    def test_authFileUnreadable(self) -> None:
        """
        A file that cannot be opened for another reason is refused, with the
        system's reason.
        """
        notDirectory = self.mktemp()
        FilePath(notDirectory).setContent(b"")
        path = os.path.join(notDirectory, "users")
        self.assertEqual(
            usageError("--auth", f"file:{path}"),
            f"--auth file:{path}: cannot read it (Not a directory)",
        )

    def test_authFile(self) -> None:
        """
        An existing file gives a checker, and C{--auth} makes a public
        address acceptable.
        """
        path = self.mktemp()
        FilePath(path).setContent(b"user:pass\n")
        options = parse("--auth", f"file:{path}", "--port", "tcp:0")
        self.assertEqual(len(options["credCheckers"]), 1)

    def test_authUnixWithoutCrypt(self) -> None:
        """
        C{--auth unix} is refused where C{crypt} or C{spwd} cannot be
        imported (Python 3.13 removed both).
        """
        for missing in ["crypt", "spwd"]:
            with blockedImports(missing):
                self.assertFalse(tap.canCheckSystemPasswords())
                self.assertEqual(
                    usageError("--auth", "unix"),
                    "--auth unix: this Python cannot check system passwords "
                    "(crypt and spwd were removed in 3.13)",
                )

    def test_authUnix(self) -> None:
        """
        Where both modules exist, C{--auth unix} is accepted.
        """
        if not tap.canCheckSystemPasswords():
            raise SkipTest("this Python has no crypt or spwd")
        self.assertEqual(len(parse("--auth", "unix")["credCheckers"]), 1)

    def test_authOtherErrors(self) -> None:
        """
        Twisted's own errors for C{--auth} still come through.
        """
        self.assertIn("not recognized", usageError("--auth", "bogus:x"))

    def test_systemd(self) -> None:
        """
        C{systemd:} finds the socket systemd passed this process, and a
        loopback one needs no C{--auth}.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        options = tap.Options(memoryReactor())
        self.patch(
            options,
            "inheritedSockets",
            lambda: InheritedSockets((sock.fileno(),), ()),
        )
        options.parseOptions(["--port", "systemd:domain=INET:index=0"])
        [listener] = options["listeners"]
        self.assertTrue(listener.loopbackOnly)

    def test_systemdNothingInherited(self) -> None:
        """
        Without socket activation, C{systemd:} says that nothing was
        passed: this process's own environment names no socket for it.
        """
        message = usageError("--port", "systemd:domain=INET:index=0")
        self.assertIn("systemd passed no socket to this process", message)

    def test_globalReactor(self) -> None:
        """
        Without a reactor of its own, the options make endpoints for the
        global one.
        """
        options = tap.Options()
        options.parseOptions([])
        [listener] = options["listeners"]
        self.assertIs(listener.endpoint._reactor, _globalReactor)


class BudgetSessionsTests(SynchronousTestCase):
    """
    L{budgetSessions} fits C{--max-sessions} into C{RLIMIT_NOFILE}.
    """

    def limits(
        self, soft: int, hard: int, refuse: bool = False
    ) -> tuple[
        Callable[[int], tuple[int, int]],
        Callable[[int, tuple[int, int]], None],
        list[tuple[int, int]],
    ]:
        """
        Fake C{getrlimit} and C{setrlimit}.

        @param soft: The soft limit.
        @param hard: The hard limit.
        @param refuse: Whether setting fails.

        @return: The two functions, and the list of limits set.
        """
        current = [(soft, hard)]
        setCalls: list[tuple[int, int]] = []

        def getrlimit(which: int) -> tuple[int, int]:
            self.assertEqual(which, resource.RLIMIT_NOFILE)
            return current[0]

        def setrlimit(which: int, limits: tuple[int, int]) -> None:
            self.assertEqual(which, resource.RLIMIT_NOFILE)
            setCalls.append(limits)
            if refuse:
                raise ValueError("not allowed")
            current[0] = limits

        return getrlimit, setrlimit, setCalls

    def test_needed(self) -> None:
        """
        A session needs two descriptors; the server keeps a margin.
        """
        self.assertEqual(PER_SESSION, 2)
        self.assertEqual(descriptorsNeeded(1000), 2000 + MARGIN)

    def test_enough(self) -> None:
        """
        A soft limit that is enough is left alone.
        """
        getrlimit, setrlimit, setCalls = self.limits(4096, 8192)
        budget = budgetSessions(1024, getrlimit, setrlimit)
        self.assertEqual(budget, SessionBudget(1024, 1024, 4096, 8192))
        self.assertFalse(budget.lowered)
        self.assertEqual(setCalls, [])
        getrlimit, setrlimit, setCalls = self.limits(
            resource.RLIM_INFINITY, resource.RLIM_INFINITY
        )
        self.assertEqual(budgetSessions(10**6, getrlimit, setrlimit).sessions, 10**6)
        self.assertEqual(setCalls, [])

    def test_raised(self) -> None:
        """
        A soft limit too low is raised as far as the sessions need, when
        the hard limit allows it.
        """
        needed = descriptorsNeeded(1024)
        getrlimit, setrlimit, setCalls = self.limits(1024, 524288)
        budget = budgetSessions(1024, getrlimit, setrlimit)
        self.assertEqual(setCalls, [(needed, 524288)])
        self.assertEqual(budget, SessionBudget(1024, 1024, needed, 524288, 1024))
        getrlimit, setrlimit, setCalls = self.limits(256, resource.RLIM_INFINITY)
        budgetSessions(1024, getrlimit, setrlimit)
        self.assertEqual(setCalls, [(needed, resource.RLIM_INFINITY)])

    def test_lowered(self) -> None:
        """
        When even the hard limit is too low, the soft limit is raised to it
        and the sessions are cut to what fits.
        """
        getrlimit, setrlimit, setCalls = self.limits(100, 200)
        budget = budgetSessions(20000, getrlimit, setrlimit)
        self.assertEqual(setCalls, [(200, 200)])
        self.assertEqual(
            budget, SessionBudget(20000, (200 - MARGIN) // 2, 200, 200, 100)
        )
        self.assertTrue(budget.lowered)
        self.assertLessEqual(descriptorsNeeded(budget.sessions), 200)
        self.assertGreater(descriptorsNeeded(budget.sessions + 1), 200)

    def test_setFails(self) -> None:
        """
        If the system refuses the new soft limit, the old one decides.
        """
        getrlimit, setrlimit, setCalls = self.limits(164, 100000, refuse=True)
        budget = budgetSessions(1024, getrlimit, setrlimit)
        self.assertEqual(len(setCalls), 1)
        self.assertEqual(budget, SessionBudget(1024, 50, 164, 100000, None))

    def test_nothingFits(self) -> None:
        """
        A limit below the margin leaves no session.
        """
        getrlimit, setrlimit, _ = self.limits(20, 20)
        self.assertEqual(budgetSessions(10, getrlimit, setrlimit).sessions, 0)


class SessionCapTests(SynchronousTestCase):
    """
    L{tap.sessionCap} applies the budget and says what it did.
    """

    def limit(self, soft: int, hard: int) -> list[tuple[int, int]]:
        """
        Give L{tap} a fake C{RLIMIT_NOFILE}.

        @return: The limits it sets.
        """
        current = [(soft, hard)]
        setCalls: list[tuple[int, int]] = []

        def setrlimit(which: int, limits: tuple[int, int]) -> None:
            setCalls.append(limits)
            current[0] = limits

        self.patch(tap, "getrlimit", lambda which: current[0])
        self.patch(tap, "setrlimit", setrlimit)
        return setCalls

    def test_lowered(self) -> None:
        """
        A cut is logged in one line with the sessions asked for, the
        sessions allowed, and the limit.
        """
        self.limit(200, 200)
        with capturedLogs() as events:
            cap = tap.sessionCap(20000)
        self.assertEqual(cap, 68)
        self.assertEqual(
            messages(events),
            [
                "--max-sessions 20000 lowered to 68: the open-file limit "
                "(RLIMIT_NOFILE) is 200, and each session needs 2 descriptors "
                "plus 64 for the server"
            ],
        )

    def test_raised(self) -> None:
        """
        A raised soft limit is logged too.
        """
        setCalls = self.limit(1024, 4096)
        with capturedLogs() as events:
            self.assertEqual(tap.sessionCap(1024), 1024)
        self.assertEqual(setCalls, [(2112, 4096)])
        self.assertEqual(
            messages(events),
            [
                "raised the open-file limit (RLIMIT_NOFILE) from 1024 to 2112 "
                "for --max-sessions 1024"
            ],
        )

    def test_enough(self) -> None:
        """
        Nothing is logged when the limit is enough as it is.
        """
        self.limit(4096, 4096)
        with capturedLogs() as events:
            self.assertEqual(tap.sessionCap(1024), 1024)
        self.assertEqual(list(events), [])

    def test_noRoom(self) -> None:
        """
        A limit with room for no session stops the start.
        """
        self.limit(60, 60)
        error = self.assertRaises(StartupError, tap.sessionCap, 10)
        self.assertEqual(
            str(error),
            "--max-sessions 10: the open-file limit (RLIMIT_NOFILE) is 60, too "
            "low for even one session (2 descriptors each, plus 64 for the "
            "server)",
        )


class StartupErrorTests(SynchronousTestCase):
    """
    L{StartupError} ends twistd with its message and status 1, and is still
    an L{Exception} for twistd's clean-up.
    """

    def test_exit(self) -> None:
        """
        Its exit code is its message: Python prints it, without traceback,
        and exits with status 1.
        """
        error = StartupError("--port x: broken")
        self.assertIsInstance(error, SystemExit)
        self.assertIsInstance(error, Exception)
        self.assertEqual(error.code, "--port x: broken")
        self.assertEqual(str(error), "--port x: broken")


class ListenFailureMessageTests(SynchronousTestCase):
    """
    L{listenFailureMessage} says in one line why a port could not listen.
    """

    def test_inUse(self) -> None:
        """
        An address in use is named, IPv6 in brackets, the wildcard as
        0.0.0.0.
        """
        inUse = OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
        for interface, where in [
            ("127.0.0.1", "127.0.0.1:1080"),
            ("::1", "[::1]:1080"),
            ("", "0.0.0.0:1080"),
        ]:
            self.assertEqual(
                listenFailureMessage(
                    "tcp:1080", CannotListenError(interface, 1080, inUse)
                ),
                f"--port tcp:1080: address {where} is already in use",
            )

    def test_otherErrors(self) -> None:
        """
        Other failures name the address and the system's reason, or just
        the reason.
        """
        denied = OSError(errno.EACCES, os.strerror(errno.EACCES))
        self.assertEqual(
            listenFailureMessage("tcp:80", CannotListenError("", 80, denied)),
            "--port tcp:80: cannot listen on 0.0.0.0:80: Permission denied",
        )
        self.assertEqual(
            listenFailureMessage(
                "unix:/run/s", CannotListenError(None, b"/run/s", "Cannot acquire lock")
            ),
            "--port unix:/run/s: cannot listen on /run/s: Cannot acquire lock",
        )
        self.assertEqual(
            listenFailureMessage("tcp:80", denied),
            "--port tcp:80: cannot listen: Permission denied",
        )
        self.assertEqual(
            listenFailureMessage("x:1", RuntimeError("odd")),
            "--port x:1: cannot listen: odd",
        )


@implementer(IStreamServerEndpoint)
class FakeEndpoint:
    """
    An endpoint whose outcome the test chooses.

    @ivar results: What each call of C{listen} returns, in order.
    @ivar factories: The factories it was asked to listen with.
    """

    def __init__(self, *results: Deferred[IListeningPort]) -> None:
        self.results = list(results)
        self.factories: list[IProtocolFactory] = []

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        self.factories.append(protocolFactory)
        return self.results.pop(0)


@implementer(IListeningPort)
class FakePort:
    """
    A listening port that records being stopped.
    """

    stopped = False

    def startListening(self) -> None:
        pass

    def stopListening(self) -> None:
        self.stopped = True

    def getHost(self) -> IAddress:
        raise NotImplementedError()


class ListeningServiceTests(TestCase):
    """
    L{ListeningService} listens on one C{--port}, and turns a failure at
    start into L{StartupError}.
    """

    def service(
        self, endpoint: IStreamServerEndpoint, description: str = "tcp:0"
    ) -> tuple[ListeningService, list[IListeningPort]]:
        """
        @return: A service on C{endpoint}, and the ports it announces.
        """
        announced: list[IListeningPort] = []
        return (
            ListeningService(description, endpoint, Factory(), announced.append),
            announced,
        )

    def test_listensOnce(self) -> None:
        """
        The port listens in C{privilegedStartService}, is announced, is not
        opened again by C{startService}, and closes on C{stopService}.
        """
        port = FakePort()
        endpoint = FakeEndpoint(succeed(port))
        service, announced = self.service(endpoint)
        service.privilegedStartService()
        service.startService()
        self.assertEqual(announced, [port])
        self.assertEqual(len(endpoint.factories), 1)
        service.stopService()
        self.assertTrue(port.stopped)

    def test_startServiceAlone(self) -> None:
        """
        Started without C{privilegedStartService}, it listens in
        C{startService}; stopped before listening, it does nothing.
        """
        port = FakePort()
        service, announced = self.service(FakeEndpoint(succeed(port)))
        service.startService()
        self.assertEqual(announced, [port])
        idle, _ = self.service(FakeEndpoint())
        self.assertIsNone(idle.stopService())

    def test_inUse(self) -> None:
        """
        A port in use raises L{StartupError} naming it, from the real
        endpoint.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        number = taken.getsockname()[1]
        description = f"tcp:{number}:interface=127.0.0.1"
        made = listenerFor(IReactorSocket(_globalReactor), description, 50, NO_SOCKETS)
        service, announced = self.service(made.endpoint, description)
        error = self.assertRaises(StartupError, service.privilegedStartService)
        self.assertEqual(
            str(error),
            f"--port {description}: address 127.0.0.1:{number} is already in use",
        )
        self.assertEqual(announced, [])

    def test_lateFailureLogged(self) -> None:
        """
        An endpoint that fails after start can only be logged, in one line.
        """
        later: Deferred[IListeningPort] = Deferred()
        service, _ = self.service(FakeEndpoint(later), "slow:1")
        service.startService()
        with capturedLogs() as events:
            later.errback(RuntimeError("gave up"))
        self.assertEqual(messages(events), ["--port slow:1: cannot listen: gave up"])
        self.assertIsNone(service.stopService())

    def test_stoppedWhileListening(self) -> None:
        """
        Stopping before a slow endpoint listens cancels it, quietly.
        """
        cancelled: list[Deferred[IListeningPort]] = []
        later: Deferred[IListeningPort] = Deferred(cancelled.append)
        service, announced = self.service(FakeEndpoint(later))
        service.startService()
        with capturedLogs() as events:
            self.assertIsNone(service.stopService())
        self.assertEqual(cancelled, [later])
        self.assertEqual(list(events), [])
        self.assertEqual(announced, [])

    def test_immediateFailure(self) -> None:
        """
        Any exception from an endpoint that fails at once is reported the
        same way.
        """
        service, _ = self.service(FakeEndpoint(fail(RuntimeError("no"))), "odd:")
        error = self.assertRaises(StartupError, service.startService)
        self.assertEqual(str(error), "--port odd:: cannot listen: no")


class SIGHUPServiceTests(SynchronousTestCase):
    """
    L{SIGHUPService} catches C{SIGHUP} while running, and logs it from
    the reactor.
    """

    def setUp(self) -> None:
        self.original = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, self.original)
        self.scheduled: list[Callable[[], object]] = []

    def callFromThread(self, f: Callable[..., object], *args: object) -> None:
        """
        Record what the handler asks the reactor to run.
        """
        self.scheduled.append(lambda: f(*args))

    def test_handledAndRestored(self) -> None:
        """
        Running, it handles C{SIGHUP} by logging one line from the reactor;
        stopped, the previous handler is back.
        """
        previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.assertIs(previous, self.original)
        service = SIGHUPService(self)  # type: ignore[arg-type]
        service.startService()
        handler = signal.getsignal(signal.SIGHUP)
        self.assertTrue(callable(handler))
        assert callable(handler)
        handler(signal.SIGHUP, None)
        self.assertEqual(len(self.scheduled), 1)
        with capturedLogs() as events:
            self.scheduled[0]()
        self.assertEqual(messages(events), [IGNORED_MESSAGE])
        self.assertEqual(
            IGNORED_MESSAGE, "SIGHUP received: ignored (nothing to reload)"
        )
        service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), signal.SIG_IGN)
        self.assertFalse(service.running)
        service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), signal.SIG_IGN)

    def test_handlerFromC(self) -> None:
        """
        A previous handler that Python cannot name (installed from C) is
        replaced by the default one on stop.
        """
        service = SIGHUPService(self)  # type: ignore[arg-type]
        service._previous = None
        service.startService()
        service._previous = None
        service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), signal.SIG_DFL)


class RecordingFactory(SOCKSServerFactory):
    """
    A server factory that records the addresses it is told it listens on.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.told: list[IAddress] = []

    def addListeningAddress(self, address: IAddress) -> None:
        self.told.append(address)
        super().addListeningAddress(address)


class MakeServiceTests(TestCase):
    """
    L{tap.makeService} builds the services the options describe.
    """

    def setUp(self) -> None:
        self.patch(tap, "getrlimit", lambda which: (200, 200))
        self.patch(tap, "setrlimit", lambda which, limits: None)
        self.patch(tap, "SOCKSServerFactory", RecordingFactory)

    def options(self, *argv: str) -> tap.Options:
        """
        @return: Options parsed for the global reactor.
        """
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    async def test_services(self) -> None:
        """
        One service ignores C{SIGHUP}; one listens per C{--port}, and tells
        the factory, capped by the open-file limit, each address it listens
        on.
        """
        service = tap.makeService(
            self.options(
                "--port",
                "tcp:0:interface=127.0.0.1",
                "--port",
                "tcp:0:interface=127.0.0.1",
                "--max-sessions",
                "20000",
            )
        )
        services = children(service)
        self.assertIsInstance(services[0], SIGHUPService)
        listening = services[1:]
        self.assertEqual(len(listening), 2)
        factories = set()
        for child in listening:
            assert isinstance(child, ListeningService)
            factories.add(child.factory)
        [factory] = factories
        assert isinstance(factory, RecordingFactory)
        self.assertEqual(factory.settings.maxSessions, 68)
        original = signal.getsignal(signal.SIGHUP)
        service.privilegedStartService()
        service.startService()
        try:
            self.assertEqual(len(factory.told), 2)
            for address in factory.told:
                self.assertEqual(address.host, "127.0.0.1")  # type: ignore[attr-defined]
            self.assertNotEqual(
                factory.told[0].port,  # type: ignore[attr-defined]
                factory.told[1].port,  # type: ignore[attr-defined]
            )
            self.assertNotEqual(signal.getsignal(signal.SIGHUP), original)
        finally:
            await service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), original)

    def test_options(self) -> None:
        """
        The factory gets every setting from the options.
        """
        service = tap.makeService(
            self.options(
                "--auth",
                "memory:user:pass",
                "--allow-socks4-with-auth",
                "--handshake-timeout",
                "3",
                "--connect-timeout",
                "4",
                "--idle-timeout",
                "5",
                "--bind-timeout",
                "6",
                "--udp-timeout",
                "7",
                "--external-address",
                "192.0.2.7",
                "--max-sessions",
                "10",
            )
        )
        child = children(service)[1]
        assert isinstance(child, ListeningService)
        factory = child.factory
        assert isinstance(factory, RecordingFactory)
        settings = factory.settings
        self.assertIsNotNone(settings.portal)
        self.assertTrue(settings.allowSOCKS4WithAuth)
        self.assertEqual(
            (
                settings.handshakeTimeout,
                settings.connectTimeout,
                settings.idleTimeout,
                settings.bindTimeout,
                settings.udpTimeout,
                settings.externalAddresses,
                settings.maxSessions,
            ),
            (3.0, 4.0, 5.0, 6.0, 7.0, ("192.0.2.7",), 10),
        )

    def test_noIdleTimeout(self) -> None:
        """
        An idle timeout of 0 means none; without C{--auth} there is no
        portal.
        """
        child = children(tap.makeService(self.options()))[1]
        assert isinstance(child, ListeningService)
        factory = child.factory
        assert isinstance(factory, RecordingFactory)
        self.assertIsNone(factory.settings.idleTimeout)
        self.assertIsNone(factory.settings.portal)
        self.assertTrue(factory.settings.splice)

    def test_torResolve(self) -> None:
        """
        Tor's RESOLVE and RESOLVE_PTR are served by default;
        C{--no-tor-resolve} turns them off.
        """
        for args, expected in [((), True), (("--no-tor-resolve",), False)]:
            child = children(tap.makeService(self.options(*args)))[1]
            assert isinstance(child, ListeningService)
            factory = child.factory
            assert isinstance(factory, RecordingFactory)
            self.assertEqual(factory.settings.torResolve, expected, args)

    def test_relayCopy(self) -> None:
        """
        C{--relay copy} makes the server copy instead of splicing.
        """
        child = children(tap.makeService(self.options("--relay", "copy")))[1]
        assert isinstance(child, ListeningService)
        factory = child.factory
        assert isinstance(factory, RecordingFactory)
        self.assertFalse(factory.settings.splice)

    def test_noRoom(self) -> None:
        """
        A limit with room for no session stops makeService.
        """
        self.patch(tap, "getrlimit", lambda which: (30, 30))
        self.assertRaises(StartupError, tap.makeService, self.options())
