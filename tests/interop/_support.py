"""
Support for the tests that exercise the server against real third-party peers.

Three kinds of helpers live here:

  - L{requirePeer} finds an external program (curl, danted, ...) or skips the
    test (on a developer machine) or fails it (under CI, where C{.ci/run}
    installs every peer).
  - L{startSOCKSServer} and L{runTwistd} run C{twistd socks} as a real
    subprocess of the interpreter running the tests, exactly as an operator
    would run it.
  - L{startHTTPServer} serves a file of random bytes on loopback inside the
    test's own reactor, and L{runProcess} runs a client program (curl) without
    blocking that reactor.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn, cast

from twisted.internet import reactor as _globalReactor  # noqa: N812
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError, ProcessTerminated
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorProcess,
    IReactorTCP,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import ProcessProtocol, ServerFactory, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.http import HTTPChannel
from twisted.web.server import Site
from twisted.web.static import File

#: Where daemons live on Debian; often not on a non-root user's C{PATH}.
_SBIN_DIRECTORIES = ("/usr/local/sbin", "/usr/sbin", "/sbin")

#: The line Twisted's C{tcp.Port} logs once it listens: C{"<prefix> starting
#: on 12345"}.
_STARTING_ON = re.compile(rb" starting on (\d+)\b")

#: The program text that runs twistd with the current interpreter.
_TWISTD_MAIN = "from twisted.scripts.twistd import run; run()"

#: The exit statuses of a twistd that stopped cleanly on C{SIGTERM}: twistd
#: shuts down, then ends itself with the signal that stopped it (C{-15} as
#: L{subprocess.Popen.returncode}); 0 is accepted too.
CLEAN_EXIT_STATUSES = (0, -signal.SIGTERM)

#: The last line twistd logs when it has shut down.
SHUT_DOWN_LINE = "Server Shut Down."

#: The listening port description used unless a test asks for another.
LOOPBACK_LISTEN = "tcp:0:interface=127.0.0.1"


def peerMissing(message: str) -> NoReturn:
    """
    A peer the test needs is missing: fail under C{CI=true} (CI installs or
    builds every peer, so a missing one is a broken CI setup), else skip.

    @raise AssertionError: Under CI.
    @raise SkipTest: Otherwise.
    """
    if os.environ.get("CI") == "true":
        raise AssertionError(message)
    raise SkipTest(message)


def requirePeer(executable: str, package: str) -> str:
    """
    Find an external program that a test needs, on C{PATH} or in the
    C{sbin} directories.

    @param executable: The program's file name, such as C{"curl"}.
    @param package: The Debian package that provides it, named in the
        message when it is missing.

    @return: The absolute path of the program.

    @raise AssertionError: If it is missing under CI (L{peerMissing}).
    @raise SkipTest: If it is missing otherwise.
    """
    searchPath = os.pathsep.join(
        [os.environ.get("PATH", os.defpath), *_SBIN_DIRECTORIES]
    )
    found = shutil.which(executable, path=searchPath)
    if found is not None:
        return os.path.abspath(found)
    peerMissing(f"{executable} is missing; apt-get install {package}")


def requireBuilt(path: str, what: str, script: str) -> str:
    """
    Find a peer that a script of C{.ci} builds (Debian's lacks what the
    test needs).

    @param path: Where the script installs it.
    @param what: Why Debian's will not do, for the message.
    @param script: The script, such as C{".ci/build-dante-gssapi"}.

    @return: C{path}.

    @raise AssertionError: If it is missing under CI (L{peerMissing}).
    @raise SkipTest: If it is missing otherwise.
    """
    if os.path.isfile(path):
        return path
    peerMissing(f"{path} missing ({what}); build it, as root: {script}")


def testDirectory(testCase: SynchronousTestCase) -> str:
    """
    Make a new directory for one test's files, under the working directory
    (which trial sets to C{_trial_temp}), named after the test.

    @param testCase: The test.

    @return: The directory's absolute path.
    """
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", testCase.id().split(".")[-1])[:60]
    return os.path.abspath(tempfile.mkdtemp(prefix=f"{name}-", dir=os.getcwd()))


def twistdCommand(*args: str, python: str | None = None) -> list[str]:
    """
    Build the command line that runs twistd with a given interpreter.

    The twistd script on C{PATH} may belong to another Python installation,
    so the command runs C{twisted.scripts.twistd} through the interpreter
    itself.

    @param args: Arguments for twistd, such as C{("-n", "socks", "--help")}.
    @param python: The interpreter; the one running the tests by default.

    @return: The argument vector.
    """
    return [python or sys.executable, "-c", _TWISTD_MAIN, *args]


def _childEnvironment(python: str | None) -> dict[str, str]:
    """
    Build the environment of a Python child process: ours, unbuffered, and
    without C{PYTHONPATH} when the child is another interpreter (another
    virtualenv must see only its own packages).

    @param python: The child's interpreter, or L{None} for ours.

    @return: A new environment mapping.
    """
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if python is not None and python != sys.executable:
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
    return env


def _countPortOptions(args: Sequence[str]) -> int:
    """
    Count the C{--port} options in a twistd socks command line.

    @param args: The arguments after C{socks}.

    @return: How many listening ports the server will open.
    """
    return sum(1 for arg in args if arg == "--port" or arg.startswith("--port="))


class SOCKSServerProcess:
    """
    A C{twistd -n socks} server running as a child process.

    @ivar process: The child process.
    @ivar ports: The TCP port numbers it listens on, in the order it logged
        them.
    @ivar port: The first of L{ports}.
    @ivar logPath: The file that receives the child's stdout and stderr.
    @ivar killed: Whether L{stop} had to kill it with C{SIGKILL}.
    """

    def __init__(
        self, process: subprocess.Popen[bytes], logPath: str, ports: list[int]
    ) -> None:
        self.process = process
        self.logPath = logPath
        self.ports = ports
        self.port = ports[0]
        self.killed = False
        self._stopped = False

    def output(self) -> str:
        """
        Read what the server has written to stdout and stderr so far.

        @return: The log, decoded as UTF-8 with replacement characters.
        """
        with open(self.logPath, "rb") as logFile:
            return logFile.read().decode("utf-8", "replace")

    def stop(self, timeout: float = 20.0) -> int:
        """
        Stop the server: C{SIGTERM}, then wait; C{SIGKILL} only if it is
        still running after C{timeout} seconds.  Calling it again does nothing
        but return the exit status.  The cleanup that L{startSOCKSServer}
        registers calls it, and fails the test if the server had already
        exited on its own or had to be killed.

        @param timeout: How long to wait for a clean exit.

        @return: The exit status (negative for a signal, as in
            L{subprocess.Popen.returncode}).
        """
        self._stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.process.kill()
                self.process.wait(timeout)
        return cast(int, self.process.returncode)

    def _cleanUp(self) -> None:
        """
        Stop the server at the end of a test, and fail the test if the server
        had died on its own before that.
        """
        diedEarly = not self._stopped and self.process.poll() is not None
        status = self.stop()
        if diedEarly:
            raise AssertionError(
                f"the SOCKS server exited on its own with status {status}:\n"
                + self.output()
            )
        if self.killed:
            raise AssertionError(
                "the SOCKS server did not exit on SIGTERM and was killed:\n"
                + self.output()
            )


def spawnLogged(
    testCase: SynchronousTestCase,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """
    Start a child process in a new temporary directory, its standard output
    and error going to a file there.

    @param testCase: The test that owns it (for the directory).
    @param argv: The command line.
    @param env: Its environment; ours by default.

    @return: The process and the path of its output file.
    """
    directory = testDirectory(testCase)
    logPath = os.path.join(directory, "twistd.out")
    with open(logPath, "wb") as logFile:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=logFile,
            stderr=subprocess.STDOUT,
            cwd=directory,
            env=dict(env) if env is not None else None,
        )
    return process, logPath


def startSOCKSServer(
    testCase: SynchronousTestCase,
    *args: str,
    listen: str | None = LOOPBACK_LISTEN,
    python: str | None = None,
    startTimeout: float = 20.0,
) -> SOCKSServerProcess:
    """
    Start C{twistd -n socks} in a child process and wait until it listens.

    The child runs in a new temporary directory (so it leaves no log or pid
    file in the working tree), logs to a file there, and is stopped by a
    cleanup registered on C{testCase}.  This blocks the calling thread until
    the server listens, for at most C{startTimeout} seconds.

    @param testCase: The test that owns the server.
    @param args: More options for the C{socks} subcommand, such as
        C{("--auth", "memory:user:pass")}.
    @param listen: The first C{--port} description, or L{None} to pass no
        C{--port} option of our own.
    @param python: The interpreter that runs twistd; the current one by
        default.
    @param startTimeout: How long to wait for the server to listen.

    @return: The running server.

    @raise AssertionError: If the server exits or does not listen in time;
        the message holds its output.
    """
    socksArgs = [*(["--port", listen] if listen is not None else []), *args]
    expectedPorts = _countPortOptions(socksArgs) or 1
    argv = twistdCommand("-n", "--pidfile=", "socks", *socksArgs, python=python)
    process, logPath = spawnLogged(testCase, argv, _childEnvironment(python))
    deadline = time.monotonic() + startTimeout
    while True:
        with open(logPath, "rb") as logFile:
            log = logFile.read()
        ports = [int(match) for match in _STARTING_ON.findall(log)]
        if len(ports) >= expectedPorts:
            server = SOCKSServerProcess(process, logPath, ports[:expectedPorts])
            testCase.addCleanup(server._cleanUp)
            return server
        status = process.poll()
        if status is not None or time.monotonic() > deadline:
            if status is None:
                process.kill()
                status = process.wait()
                reason = f"did not listen within {startTimeout} seconds"
            else:
                reason = f"exited with status {status} before listening"
            with open(logPath, "rb") as logFile:
                log = logFile.read()
            raise AssertionError(
                f"{' '.join(argv)} {reason}:\n{log.decode('utf-8', 'replace')}"
            )
        time.sleep(0.05)


@dataclass(frozen=True)
class CompletedTwistd:
    """
    The outcome of a twistd run that ended on its own.

    @ivar status: The exit status.
    @ivar output: Its stdout and stderr, interleaved.
    """

    status: int
    output: str


def runTwistd(
    *args: str,
    python: str | None = None,
    cwd: str | None = None,
    timeout: float = 60.0,
) -> CompletedTwistd:
    """
    Run twistd to completion, as for C{twistd socks --help} or a command
    line that must be refused.

    @param args: The arguments for twistd.
    @param python: The interpreter; the current one by default.
    @param cwd: The working directory.
    @param timeout: How long it may run; then it is killed.

    @return: Its exit status and output.

    @raise AssertionError: If it is still running after C{timeout} seconds.
    """
    argv = twistdCommand(*args, python=python)
    try:
        completed = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=_childEnvironment(python),
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        partial = e.output.decode("utf-8", "replace") if e.output else ""
        raise AssertionError(
            f"{' '.join(argv)} was still running after {timeout} seconds:\n" + partial
        ) from None
    return CompletedTwistd(
        completed.returncode, completed.stdout.decode("utf-8", "replace")
    )


class _TrackedChannel(HTTPChannel):
    """
    An HTTP channel that tells its L{HTTPFileServer} when it closes.
    """

    fileServer: HTTPFileServer

    def connectionMade(self) -> None:
        """
        Record the new connection.
        """
        self.fileServer._openChannels.add(self)
        self.fileServer.connectionCount += 1
        super().connectionMade()  # type: ignore[no-untyped-call, unused-ignore]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Forget the connection.

        @param reason: Why it closed.
        """
        self.fileServer._openChannels.discard(self)
        super().connectionLost(reason)  # type: ignore[no-untyped-call, unused-ignore]


class HTTPFileServer:
    """
    An HTTP server on loopback, in the test's reactor, serving one file of
    random bytes.

    @ivar port: The TCP port on 127.0.0.1.
    @ivar port6: The TCP port on ::1, or L{None} if this host has no IPv6
        loopback.
    @ivar path: The URL path of the file, such as C{"/payload.bin"}.
    @ivar body: The file's content.
    @ivar connectionCount: How many connections it has accepted.
    """

    path = "/payload.bin"

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.port = 0
        self.port6: int | None = None
        self.connectionCount = 0
        self._openChannels: set[HTTPChannel] = set()
        self._listeners: list[IListeningPort] = []

    @property
    def sha256(self) -> str:
        """
        The SHA-256 of L{body}, in hex.
        """
        return hashlib.sha256(self.body).hexdigest()

    def url(self, host: str = "127.0.0.1") -> str:
        """
        Build the URL of the file.

        @param host: C{"127.0.0.1"}, C{"localhost"} or C{"::1"}; the port is
            the one listening on that address family.

        @return: An C{http://} URL.
        """
        if ":" in host:
            if self.port6 is None:
                raise SkipTest("no IPv6 loopback on this host")
            return f"http://[{host}]:{self.port6}{self.path}"
        return f"http://{host}:{self.port}{self.path}"

    def openConnections(self) -> int:
        """
        Count the HTTP connections that are still open.

        @return: The number of open connections.
        """
        return len(self._openChannels)

    async def _cleanUp(self, graceSeconds: float = 10.0) -> None:
        """
        Stop listening, wait for the connections to close, and fail if a
        connection outlives its client by more than C{graceSeconds}: a proxy
        must close its upstream connection once its client is gone.

        @param graceSeconds: How long connections may stay open.
        """
        for listener in self._listeners:
            await maybeDeferred(listener.stopListening)
        clock = cast(IReactorTime, _globalReactor)
        deadline = clock.seconds() + graceSeconds
        while self._openChannels and clock.seconds() < deadline:
            await deferLater(clock, 0.05)
        leftover = list(self._openChannels)
        for channel in leftover:
            transport = cast(ITCPTransport | None, channel.transport)
            if transport is not None:
                transport.abortConnection()
        while self._openChannels and clock.seconds() < deadline + 5:
            await deferLater(clock, 0.05)
        if leftover:
            raise AssertionError(
                f"{len(leftover)} connection(s) to the HTTP server were still "
                f"open {graceSeconds} seconds after the test: the proxy did not "
                "close its upstream connection when its client went away"
            )


def startHTTPServer(testCase: TestCase, size: int = 4 * 1024 * 1024) -> HTTPFileServer:
    """
    Serve a new file of C{size} random bytes over HTTP on 127.0.0.1 (and on
    ::1 where possible), on ports the system chooses, until the test ends.

    @param testCase: The test that owns the server.
    @param size: The file's size in bytes.

    @return: The server.
    """
    directory = testDirectory(testCase)
    server = HTTPFileServer(os.urandom(size))
    with open(os.path.join(directory, server.path.lstrip("/")), "wb") as f:
        f.write(server.body)

    class Channel(_TrackedChannel):
        fileServer = server

    site = Site(File(directory), timeout=None)  # type: ignore[no-untyped-call, unused-ignore]
    site.protocol = Channel  # type: ignore[method-assign, assignment]
    factory = cast(ServerFactory, site)
    tcp = cast(IReactorTCP, _globalReactor)
    listener = tcp.listenTCP(0, factory, interface="127.0.0.1")
    server._listeners.append(listener)
    server.port = listener.getHost().port  # type: ignore[attr-defined]
    try:
        listener6 = tcp.listenTCP(0, factory, interface="::1")
    except CannotListenError:
        pass
    else:
        server._listeners.append(listener6)
        server.port6 = listener6.getHost().port  # type: ignore[attr-defined]
    testCase.addCleanup(server._cleanUp)
    return server


@dataclass(frozen=True)
class ProcessResult:
    """
    The outcome of a child process run by L{runProcess}.

    @ivar exitCode: The exit status, or L{None} if a signal ended it.
    @ivar signal: The signal that ended it, or L{None}.
    @ivar stdout: What it wrote to stdout.
    @ivar stderr: What it wrote to stderr.
    @ivar timedOut: Whether L{runProcess} killed it for running too long.
    """

    exitCode: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    timedOut: bool

    def describe(self) -> str:
        """
        Summarise the result for a failure message.

        @return: The status and both outputs.
        """
        return (
            f"exit code {self.exitCode}, signal {self.signal}, "
            f"timed out: {self.timedOut}\n"
            f"stdout: {self.stdout[:2000]!r}\n"
            f"stderr: {self.stderr.decode('utf-8', 'replace')}"
        )


class _CollectingProtocol(ProcessProtocol):
    """
    Collect a child's output and report its end to a L{Deferred}.
    """

    def __init__(self, done: Deferred[ProcessResult]) -> None:
        self._done = done
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self.timedOut = False

    def outReceived(self, data: bytes) -> None:
        """
        Keep what the child wrote to stdout.

        @param data: The bytes.
        """
        self._out.append(data)

    def errReceived(self, data: bytes) -> None:
        """
        Keep what the child wrote to stderr.

        @param data: The bytes.
        """
        self._err.append(data)

    def processEnded(self, reason: Failure) -> None:
        """
        Report the child's end with everything it wrote.

        @param reason: L{ProcessDone} or L{ProcessTerminated}.
        """
        exitCode: int | None = 0
        signalNumber: int | None = None
        if isinstance(reason.value, ProcessTerminated):
            value = reason.value
            exitCode = value.exitCode
            signalNumber = value.signal
        self._done.callback(
            ProcessResult(
                exitCode,
                signalNumber,
                b"".join(self._out),
                b"".join(self._err),
                self.timedOut,
            )
        )


async def runProcess(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    path: str | None = None,
    timeout: float = 120.0,
) -> ProcessResult:
    """
    Run a child process in the global reactor, without blocking it, and
    collect its output.

    @param argv: The program (an absolute path) and its arguments.
    @param env: Its environment; an empty one by default, so no proxy or
        locale variable of ours leaks into the peer.
    @param path: Its working directory.
    @param timeout: How long it may run before it is killed with C{SIGKILL};
        the result then says C{timedOut}.

    @return: How it ended and what it wrote.
    """
    done: Deferred[ProcessResult] = Deferred()
    protocol = _CollectingProtocol(done)
    processReactor = cast(IReactorProcess, _globalReactor)
    transport = processReactor.spawnProcess(
        protocol, argv[0], list(argv), env=dict(env or {}), path=path
    )

    def kill() -> None:
        protocol.timedOut = True
        transport.signalProcess("KILL")

    killer = cast(IReactorTime, _globalReactor).callLater(timeout, kill)
    try:
        return await done
    finally:
        if killer.active():
            killer.cancel()


async def fetchWithCurl(
    testCase: SynchronousTestCase,
    curl: str,
    curlArgs: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> tuple[ProcessResult, bytes | None]:
    """
    Run C{curl} with C{curlArgs} (proxy options and the URL) plus options
    that save the body to a new file of the test's, and read that file.

    @param env: curl's environment (see L{runProcess}).
    @return: How curl ended, and the body it saved (L{None} if it saved no
        file).
    """
    output = os.path.join(testDirectory(testCase), "body")
    result = await runProcess(
        [
            curl,
            "-q",
            "--silent",
            "--show-error",
            "--fail",
            "--max-time",
            "60",
            "--output",
            output,
            *curlArgs,
        ],
        env=env,
    )
    body: bytes | None = None
    if os.path.exists(output):
        with open(output, "rb") as f:
            body = f.read()
    return result, body


def fetchOverSocket(sock: socket.socket, host: str, path: str) -> bytes:
    """
    Send an HTTP/1.0 C{GET} over a connected socket, read the response until
    the server closes the connection, and return the body of a C{200}
    response.  This blocks: call it in a thread.

    @param sock: A connected socket (closed on return).
    @param host: The value of the C{Host} header.
    @param path: The URL path.

    @return: The response body.

    @raise AssertionError: If the response is not a complete C{200}.
    """
    chunks = []
    try:
        sock.settimeout(60)
        request = f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n"
        sock.sendall(request.encode("ascii"))
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    finally:
        sock.close()
    response = b"".join(chunks)
    head, separator, body = response.partition(b"\r\n\r\n")
    statusLine = head.split(b"\r\n", 1)[0]
    if not separator or statusLine.split(b" ")[1:2] != [b"200"]:
        raise AssertionError(f"unexpected HTTP response: {response[:500]!r}")
    return body


# Blocking SOCKS5 for tests that drive server processes from plain sockets.


def recvExactly(sock: socket.socket, count: int) -> bytes:
    """
    Read exactly C{count} bytes from the blocking C{sock}.

    @raise AssertionError: If the connection ends first.
    """
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        data += chunk
    return data


def socks5Request(
    sock: socket.socket, command: int, host: str, port: int
) -> tuple[str, int]:
    """
    SOCKS5 without authentication: send C{command} for an IPv4 C{host} and
    C{port}, and return the success reply's BND.ADDR and BND.PORT.
    """
    sock.sendall(b"\x05\x01\x00")
    if recvExactly(sock, 2) != b"\x05\x00":
        raise AssertionError("no-authentication method not chosen")
    sock.sendall(
        bytes([5, command, 0, 1]) + socket.inet_aton(host) + struct.pack("!H", port)
    )
    return socks5Reply(sock)


def socks5Reply(sock: socket.socket) -> tuple[str, int]:
    """
    Read a SOCKS5 success reply with an IPv4 address from the blocking
    C{sock}, and return its BND.ADDR and BND.PORT.

    @raise AssertionError: If it is not one.
    """
    head = recvExactly(sock, 4)
    if head[:2] != b"\x05\x00" or head[3] != 1:
        raise AssertionError(f"not an IPv4 success reply: {head!r}")
    address = recvExactly(sock, 6)
    return socket.inet_ntoa(address[:4]), struct.unpack("!H", address[4:])[0]
