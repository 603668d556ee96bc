"""
C{twistd socks} as an operator runs it, in a child process on loopback: how
deep its accept queue is, C{SIGHUP}, a low open-file limit, the errors that
stop it before it serves, and socket activation by C{systemd-socket-activate}.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from twisted.internet import reactor as _globalReactor  # noqa: N812
from twisted.internet.interfaces import IReactorSocket
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from socks_twisted._descriptors import descriptorsNeeded
from socks_twisted._listen import InheritedSockets, listenBacklog, listenerFor
from socks_twisted._sighup import IGNORED_MESSAGE

from .interop._support import (
    LOOPBACK_LISTEN,
    SOCKSServerProcess,
    requirePeer,
    spawnLogged,
    startSOCKSServer,
    testDirectory,
    twistdCommand,
)

#: How many clients arrive at once in the accept-queue tests.
BURST = 500

#: The line Twisted's port logs once it listens.
_STARTING_ON = re.compile(r" starting on (\d+)\b")

#: A program that lowers its open-file limit, then runs the rest of its
#: command line: C{python -c LIMITED N program args...}.
_LIMITED = (
    "import os, resource, sys; "
    "n = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)

#: A SOCKS5 greeting offering "no authentication", and the answer to it.
GREETING = b"\x05\x01\x00"
NO_AUTHENTICATION = b"\x05\x00"


def childEnvironment(**extra: str) -> dict[str, str]:
    """
    @param extra: Variables to add or replace.

    @return: The environment of a twistd child: ours, unbuffered.
    """
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def startTwistd(
    testCase: SynchronousTestCase,
    argv: list[str],
    env: Mapping[str, str] | None = None,
    startTimeout: float = 20.0,
) -> SOCKSServerProcess:
    """
    Start a twistd server from a full command line (which may run it
    through a wrapper) and wait until it listens.

    @param testCase: The test that owns it; it is stopped when the test
        ends.
    @param argv: The command line.
    @param env: Its environment; L{childEnvironment} by default.
    @param startTimeout: How long it may take to listen.

    @return: The running server.
    """
    process, logPath = spawnLogged(
        testCase, argv, env if env is not None else childEnvironment()
    )
    deadline = time.monotonic() + startTimeout
    while True:
        with open(logPath, "rb") as logFile:
            log = logFile.read().decode("utf-8", "replace")
        found = _STARTING_ON.search(log)
        if found is not None:
            server = SOCKSServerProcess(process, logPath, [int(found.group(1))])
            testCase.addCleanup(server._cleanUp)
            return server
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            process.wait()
            raise AssertionError(f"{' '.join(argv)} did not listen:\n{log}")
        time.sleep(0.05)


@contextmanager
def stopped(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """
    Freeze a child process (C{SIGSTOP}) for a while: it accepts nothing, so
    only the kernel's accept queue takes connections.

    @param process: The child.
    """
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


def runTwistdWith(
    testCase: SynchronousTestCase,
    *args: str,
    env: Mapping[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    timeout: float = 60.0,
) -> tuple[int, str]:
    """
    Run twistd to its end.

    @param testCase: The test; the child runs in a new directory of its own.
    @param args: The arguments for twistd.
    @param env: Its environment; L{childEnvironment} by default.
    @param prefix: A wrapper command that runs it.
    @param timeout: How long it may run.

    @return: Its exit status and its output (stdout and stderr).
    """
    completed = subprocess.run(
        [*prefix, *twistdCommand(*args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=testDirectory(testCase),
        env=dict(env) if env is not None else childEnvironment(),
        timeout=timeout,
    )
    return completed.returncode, completed.stdout.decode("utf-8", "replace")


def lastLine(output: str) -> str:
    """
    @param output: A program's output.

    @return: Its last line that is not blank.
    """
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def openBurst(port: int, count: int) -> list[socket.socket]:
    """
    Start C{count} connections to a loopback port at once, without waiting
    for any.

    @return: The non-blocking client sockets.
    """
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        result = sock.connect_ex(("127.0.0.1", port))
        if result not in (0, errno.EINPROGRESS):
            sock.close()
            raise AssertionError(f"connect failed: {os.strerror(result)}")
        sockets.append(sock)
    return sockets


def countEstablished(sockets: list[socket.socket], timeout: float) -> int:
    """
    Count the connections whose handshake completed, waiting until all have
    or C{timeout} seconds have passed.

    @param sockets: Non-blocking sockets, connecting.
    @param timeout: The longest wait.

    @return: How many are connected.
    """
    selector = selectors.DefaultSelector()
    with selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_WRITE)
        established = 0
        deadline = time.monotonic() + timeout
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(0.1):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                selector.unregister(ready)
                if ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    established += 1
        return established


def countAnswers(
    sockets: list[socket.socket], request: bytes, answer: bytes, timeout: float
) -> int:
    """
    Send a request on every connection once it is up, and count the
    connections that get the expected answer.

    @param sockets: Non-blocking sockets, connected or connecting.
    @param request: What to send on each.
    @param answer: What each should receive.
    @param timeout: The longest wait for all of them.

    @return: How many received exactly C{answer}.
    """
    received = {sock: b"" for sock in sockets}
    answered = 0
    selector = selectors.DefaultSelector()
    with selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_WRITE)
        deadline = time.monotonic() + timeout
        while selector.get_map() and time.monotonic() < deadline:
            for key, events in selector.select(0.1):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                if events & selectors.EVENT_WRITE:
                    if ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        selector.unregister(ready)
                        continue
                    ready.sendall(request)
                    selector.modify(ready, selectors.EVENT_READ)
                    continue
                try:
                    chunk = ready.recv(len(answer) - len(received[ready]))
                except OSError:
                    chunk = b""
                received[ready] += chunk
                if not chunk or len(received[ready]) == len(answer):
                    selector.unregister(ready)
                    answered += received[ready] == answer
    return answered


def closeAll(sockets: list[socket.socket]) -> None:
    """
    Close every socket of a list.
    """
    for sock in sockets:
        sock.close()


def requireDescriptors(sessions: int) -> None:
    """
    Skip a test whose server needs room for C{sessions} sessions on a system
    whose hard open-file limit, which the server inherits, allows fewer.
    """
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    needed = descriptorsNeeded(sessions)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SkipTest(f"the hard open-file limit is {hard}, below {needed}")


def requireSomaxconn(count: int) -> None:
    """
    Skip a test that needs an accept queue of C{count} on a system that
    allows less.
    """
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            somaxconn = int(f.read())
    except (OSError, ValueError):
        raise SkipTest("no /proc/sys/net/core/somaxconn on this system") from None
    if somaxconn < count:
        raise SkipTest(f"net.core.somaxconn is {somaxconn}, below {count}")


class EchoServer:
    """
    A TCP echo server on 127.0.0.1, in a thread of its own, for sessions to
    reach through the SOCKS server.

    @ivar port: Its port.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        """
        Accept, and send back what each connection sends, until stopped.
        """
        while not self._stopping.is_set():
            for key, _ in self._selector.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    try:
                        connection, _ = sock.accept()
                    except BlockingIOError:
                        continue
                    connection.setblocking(True)
                    connection.settimeout(5)
                    self._selector.register(connection, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                    if data:
                        sock.sendall(data)
                        continue
                except OSError:
                    pass
                self._selector.unregister(sock)
                sock.close()

    def stop(self) -> None:
        """
        Stop serving and close every socket.
        """
        self._stopping.set()
        self._thread.join(10)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()


def startEchoServer(testCase: SynchronousTestCase) -> EchoServer:
    """
    @return: An echo server that stops when the test ends.
    """
    server = EchoServer()
    testCase.addCleanup(server.stop)
    return server


def socks5Connect(
    proxyPort: int, targetPort: int, timeout: float = 10.0
) -> socket.socket | None:
    """
    Open a SOCKS5 session to 127.0.0.1:C{targetPort}.

    @return: The connected socket, or L{None} if the server closed the
        connection instead of answering.

    @raise AssertionError: If the server answered with a refusal.
    """
    sock = socket.create_connection(("127.0.0.1", proxyPort), timeout=timeout)
    try:
        sock.sendall(GREETING)
        if readExactly(sock, 2) != NO_AUTHENTICATION:
            sock.close()
            return None
        sock.sendall(
            b"\x05\x01\x00\x01"
            + socket.inet_aton("127.0.0.1")
            + targetPort.to_bytes(2, "big")
        )
        reply = readExactly(sock, 10)
    except ConnectionError:
        sock.close()
        return None
    if not reply:
        sock.close()
        return None
    if reply[:2] != b"\x05\x00":
        sock.close()
        raise AssertionError(f"CONNECT refused: {reply!r}")
    return sock


def readExactly(sock: socket.socket, count: int) -> bytes:
    """
    @return: C{count} bytes, or fewer if the peer closed first.
    """
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def echoes(sock: socket.socket, payload: bytes) -> bool:
    """
    @return: Whether what is sent on a session comes back.
    """
    sock.sendall(payload)
    return readExactly(sock, len(payload)) == payload


def waitForLog(server: SOCKSServerProcess, text: str, timeout: float = 10.0) -> str:
    """
    Wait until the server's log holds C{text}.

    @return: The log.

    @raise AssertionError: If it does not within C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        output = server.output()
        if text in output:
            return output
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} was not logged:\n{output}")
        time.sleep(0.05)


class AcceptQueueTests(TestCase):
    """
    A burst of clients is queued by the kernel while the server is busy:
    each C{--port} gets an accept queue of 1024 (Twisted's own is 50).
    """

    async def test_listenerQueue(self) -> None:
        """
        The endpoint made for a C{tcp:} description that names no backlog
        queues C{BURST} connections that nobody accepts yet.
        """
        requireSomaxconn(BURST)
        made = listenerFor(
            IReactorSocket(_globalReactor),
            LOOPBACK_LISTEN,
            listenBacklog(),
            InheritedSockets((), ()),
        )
        # Every connection is closed as soon as it is accepted.
        refuse = Factory.forProtocol(Protocol)
        refuse.buildProtocol = lambda addr: None  # type: ignore[method-assign]
        port = await made.endpoint.listen(refuse)
        self.addCleanup(port.stopListening)
        # The reactor does not run until this test yields: nothing accepts.
        sockets = openBurst(port.getHost().port, BURST)  # type: ignore[attr-defined]
        try:
            self.assertEqual(countEstablished(sockets, timeout=10), BURST)
        finally:
            closeAll(sockets)


class ServerAcceptQueueTests(SynchronousTestCase):
    """
    C{twistd socks} takes a burst of clients while it cannot accept, and
    serves them all.
    """

    def test_burst(self) -> None:
        """
        C{BURST} clients connect at once while the server is frozen: the
        kernel completes every handshake, and once the server runs again
        every client gets its SOCKS5 answer.
        """
        requireSomaxconn(BURST)
        requireDescriptors(BURST)
        server = startSOCKSServer(self)
        sockets: list[socket.socket] = []
        self.addCleanup(closeAll, sockets)
        with stopped(server.process):
            sockets.extend(openBurst(server.port, BURST))
            queued = countEstablished(sockets, timeout=10)
        self.assertEqual(queued, BURST, server.output())
        answered = countAnswers(sockets, GREETING, NO_AUTHENTICATION, timeout=20)
        self.assertEqual(answered, BURST, server.output())


class SIGHUPTests(SynchronousTestCase):
    """
    C{SIGHUP} is logged and otherwise ignored.
    """

    def test_sessionsSurvive(self) -> None:
        """
        A session open when C{SIGHUP} arrives still relays, the server logs
        one line for it, and new sessions are served.
        """
        echo = startEchoServer(self)
        server = startSOCKSServer(self)
        before = socks5Connect(server.port, echo.port)
        assert before is not None
        self.addCleanup(before.close)
        self.assertTrue(echoes(before, b"before SIGHUP"))
        server.process.send_signal(signal.SIGHUP)
        output = waitForLog(server, IGNORED_MESSAGE)
        self.assertIsNone(server.process.poll(), output)
        self.assertTrue(echoes(before, b"after SIGHUP"), server.output())
        after = socks5Connect(server.port, echo.port)
        assert after is not None
        self.addCleanup(after.close)
        self.assertTrue(echoes(after, b"a new session"), server.output())
        self.assertEqual(server.output().count(IGNORED_MESSAGE), 1)


class DescriptorLimitTests(SynchronousTestCase):
    """
    With an open-file limit too low for C{--max-sessions}, the server lowers
    its cap, says so, and keeps serving.
    """

    def test_capLowered(self) -> None:
        """
        Under a limit of 200 descriptors, C{--max-sessions 20000} is cut to
        what fits; sessions beyond the cut are refused, the server stays up,
        and serves a new client once the others are gone.
        """
        echo = startEchoServer(self)
        command = twistdCommand(
            "-n",
            "--pidfile=",
            "socks",
            "--port",
            LOOPBACK_LISTEN,
            "--max-sessions",
            "20000",
        )
        server = startTwistd(self, [sys.executable, "-c", _LIMITED, "200", *command])
        found = re.search(
            r"--max-sessions 20000 lowered to (\d+): the open-file limit "
            r"\(RLIMIT_NOFILE\) is 200,",
            server.output(),
        )
        self.assertIsNotNone(found, server.output())
        assert found is not None
        cap = int(found.group(1))
        self.assertGreater(cap, 0)
        # Two descriptors per session must fit in the limit.
        self.assertLessEqual(2 * cap, 200)

        sessions: list[socket.socket] = []
        self.addCleanup(closeAll, sessions)
        refused = 0
        for _ in range(cap + 20):
            session = socks5Connect(server.port, echo.port)
            if session is None:
                refused += 1
            else:
                sessions.append(session)
        self.assertEqual((len(sessions), refused), (cap, 20), server.output())
        for session in sessions:
            self.assertTrue(echoes(session, b"x"))
        self.assertIsNone(server.process.poll(), server.output())

        closeAll(sessions)
        deadline = time.monotonic() + 20
        fresh = None
        while fresh is None and time.monotonic() < deadline:
            fresh = socks5Connect(server.port, echo.port)
            if fresh is None:
                time.sleep(0.1)
        self.assertIsNotNone(fresh, server.output())
        assert fresh is not None
        self.addCleanup(fresh.close)
        self.assertTrue(echoes(fresh, b"served again"))


class StartupErrorTests(SynchronousTestCase):
    """
    Each start-up error ends twistd before it serves, with a non-zero
    status, no traceback, and a last line naming the option and the
    problem.
    """

    def assertRefused(self, status: int, output: str, message: str) -> None:
        """
        Assert that twistd ended on C{message}.

        @param status: Its exit status.
        @param output: Its output.
        @param message: What its last line must end with.
        """
        self.assertNotEqual(status, 0, output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn(" starting on ", output)
        self.assertTrue(lastLine(output).endswith(message), output)

    def test_unknownEndpointType(self) -> None:
        """
        An unknown endpoint type is named, not blamed on a missing
        C{--auth}.
        """
        status, output = runTwistdWith(
            self, "-n", "--pidfile=", "socks", "--port", "bogus:1080"
        )
        self.assertRefused(
            status, output, "--port 'bogus:1080': unknown endpoint type 'bogus'"
        )

    def occupiedPort(self) -> int:
        """
        @return: A loopback port that something else listens on until the
            test ends.
        """
        taken = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(taken.close)
        port: int = taken.getsockname()[1]
        return port

    def test_portInUse(self) -> None:
        """
        A port in use ends the foreground server with one line.
        """
        port = self.occupiedPort()
        description = f"tcp:{port}:interface=127.0.0.1"
        status, output = runTwistdWith(
            self, "-n", "--pidfile=", "socks", "--port", description
        )
        self.assertRefused(
            status,
            output,
            f"--port {description}: address 127.0.0.1:{port} is already in use",
        )

    def test_portInUseDaemon(self) -> None:
        """
        A daemon that cannot listen makes its parent exit with status 1
        and the start of the message; the log ends with all of it, and the
        PID file is gone.
        """
        port = self.occupiedPort()
        description = f"tcp:{port}:interface=127.0.0.1"
        directory = testDirectory(self)
        logPath = os.path.join(directory, "twistd.log")
        pidPath = os.path.join(directory, "twistd.pid")
        status, output = runTwistdWith(
            self,
            f"--logfile={logPath}",
            f"--pidfile={pidPath}",
            "socks",
            "--port",
            description,
        )
        self.assertEqual(status, 1, output)
        self.assertNotIn("Traceback", output)
        self.assertIn(f"--port {description}: address", output)
        message = f"--port {description}: address 127.0.0.1:{port} is already in use"
        deadline = time.monotonic() + 10
        log = ""
        while not lastLine(log).endswith(message) and time.monotonic() < deadline:
            time.sleep(0.05)
            with open(logPath, encoding="utf-8", errors="replace") as logFile:
                log = logFile.read()
        self.assertTrue(lastLine(log).endswith(message), log)
        self.assertNotIn("Traceback", log)
        self.assertFalse(os.path.exists(pidPath))

    def test_authFileMissing(self) -> None:
        """
        C{--auth file:} naming no file is refused at once.
        """
        missing = os.path.join(testDirectory(self), "nonexistent")
        status, output = runTwistdWith(
            self, "-n", "--pidfile=", "socks", "--auth", f"file:{missing}"
        )
        self.assertRefused(status, output, f"--auth file:{missing}: no such file")

    def test_authUnixUnavailable(self) -> None:
        """
        C{--auth unix} is refused by a Python without C{crypt} (made so
        here by a module that shadows it).
        """
        shadow = testDirectory(self)
        with open(os.path.join(shadow, "crypt.py"), "w") as module:
            module.write("raise ImportError('crypt was removed in Python 3.13')\n")
        path = os.pathsep.join(filter(None, [shadow, os.environ.get("PYTHONPATH")]))
        status, output = runTwistdWith(
            self,
            "-n",
            "--pidfile=",
            "socks",
            "--auth",
            "unix",
            env=childEnvironment(PYTHONPATH=path),
        )
        self.assertRefused(
            status,
            output,
            "--auth unix: this Python cannot check system passwords "
            "(crypt and spwd were removed in 3.13)",
        )

    def test_noRoomForOneSession(self) -> None:
        """
        An open-file limit below what even one session needs stops the
        start.
        """
        status, output = runTwistdWith(
            self,
            "-n",
            "--pidfile=",
            "socks",
            prefix=(sys.executable, "-c", _LIMITED, "60"),
        )
        self.assertRefused(
            status,
            output,
            "--max-sessions 1024: the open-file limit (RLIMIT_NOFILE) is 60, too "
            "low for even one session (2 descriptors each, plus 64 for the "
            "server)",
        )


class SocketActivationTests(SynchronousTestCase):
    """
    C{systemd:domain=INET:index=0}, as the README shows it, serves on the
    socket C{systemd-socket-activate} passes.
    """

    def test_loopbackSocket(self) -> None:
        """
        Given a socket on 127.0.0.1 and no name for it, without C{--auth}
        or C{--allow-public-unauthenticated}, the server serves a SOCKS5
        CONNECT on it.
        """
        self._serveActivated()

    def test_workersShareIt(self) -> None:
        """
        With C{--workers 2}, the supervisor adopts the socket systemd passed
        and its workers serve it.
        """
        server = self._serveActivated("--workers", "2")
        self.assertRegex(server.output(), r"\[worker \d\] SOCKS session")

    def _serveActivated(self, *options: str) -> SOCKSServerProcess:
        """
        Start the server through systemd-socket-activate with C{options},
        and serve one SOCKS5 CONNECT to an echo server through it.
        """
        activate = requirePeer("systemd-socket-activate", "systemd")
        echo = startEchoServer(self)
        with socket.create_server(("127.0.0.1", 0)) as probe:
            port = probe.getsockname()[1]
        passed = [
            f"{name}={value}"
            for name, value in childEnvironment().items()
            if name.startswith(("PYTHON", "COVERAGE"))
        ]
        argv = [
            activate,
            "--listen",
            f"127.0.0.1:{port}",
            *[f"--setenv={variable}" for variable in passed],
            *twistdCommand(
                "-n",
                "--pidfile=",
                "socks",
                "--port",
                "systemd:domain=INET:index=0",
                *options,
            ),
        ]
        process, logPath = spawnLogged(self, argv)
        # systemd-socket-activate starts twistd in its own place (same
        # process) once the first client connects.
        server = SOCKSServerProcess(process, logPath, [port])
        self.addCleanup(server._cleanUp)
        session = None
        deadline = time.monotonic() + 30
        while session is None and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                session = socks5Connect(port, echo.port, timeout=30)
            except ConnectionRefusedError:
                time.sleep(0.05)
        self.assertIsNotNone(session, server.output())
        assert session is not None
        self.addCleanup(session.close)
        self.assertTrue(echoes(session, b"activated"), server.output())
        self.assertNotIn("refusing", server.output())
        session.close()
        deadline = time.monotonic() + 10
        while "SOCKS session" not in server.output():
            if time.monotonic() > deadline:
                self.fail(f"the session was not logged:\n{server.output()}")
            time.sleep(0.05)
        return server
