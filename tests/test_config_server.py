"""
End-to-end tests of C{twistd socks --config FILE}: a real C{twistd -n socks}
subprocess reads a TOML configuration file, and real peers (curl,
python-socks, PySocks, raw sockets) use it on loopback.

Each test asserts behaviour, never speed: the time bounds are generous upper
limits on waits (so that no test hangs) or, for bandwidth, a loose lower
bound.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import cast

import socks  # PySocks
from python_socks import ProxyError
from python_socks.sync import Proxy
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IListeningPort, IReactorTime, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from socks_twisted.passwd import hashPassword

from .interop._support import (
    LOOPBACK_LISTEN,
    ProcessResult,
    SOCKSServerProcess,
    requirePeer,
    runProcess,
    startHTTPServer,
    startSOCKSServer,
    testDirectory,
    twistdCommand,
)
from .test_startup import echoes, readExactly, startEchoServer, waitForLog

#: curl's exit code for a SOCKS proxy that refused the request (CURLE_PROXY,
#: curl 7.73 and later).
CURLE_PROXY = 97

#: SOCKS5 reply code 2: connection not allowed by ruleset.
NOT_ALLOWED = 2


def writeFile(directory: str, name: str, text: str) -> str:
    """
    Write a text file.

    @param directory: Where.
    @param name: Its name.
    @param text: Its content.

    @return: Its absolute path.
    """
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def startConfigured(
    testCase: SynchronousTestCase,
    configText: str,
    *args: str,
    listen: str | None = LOOPBACK_LISTEN,
    files: dict[str, str] | None = None,
) -> tuple[SOCKSServerProcess, str]:
    """
    Write a configuration file (and other files beside it) and start
    C{twistd -n --pidfile= socks --config FILE} on it.

    @param testCase: The test that owns the server.
    @param configText: The TOML.
    @param args: More command-line options for C{socks}.
    @param listen: The C{--port} given on the command line, or L{None} to
        let the file's C{[server]} table give it.
    @param files: More files to write beside the configuration file.

    @return: The server and the configuration file's path.
    """
    directory = testDirectory(testCase)
    for name, text in (files or {}).items():
        writeFile(directory, name, text)
    path = writeFile(directory, "socks.toml", configText)
    server = startSOCKSServer(testCase, "--config", path, *args, listen=listen)
    return server, path


def socks5Request(
    proxyPort: int,
    targetPort: int,
    host: str = "127.0.0.1",
    timeout: float = 10.0,
) -> tuple[int, socket.socket | None]:
    """
    Ask for a SOCKS5 CONNECT, without authentication.

    @return: The reply code (-1 if the server closed the connection without
        a reply), and the connected socket when the code is 0 (else closed).
    """
    sock = socket.create_connection(("127.0.0.1", proxyPort), timeout=timeout)
    try:
        sock.sendall(b"\x05\x01\x00")
        if readExactly(sock, 2) != b"\x05\x00":
            sock.close()
            return -1, None
        sock.sendall(
            b"\x05\x01\x00\x01" + socket.inet_aton(host) + targetPort.to_bytes(2, "big")
        )
        reply = readExactly(sock, 10)
    except ConnectionError:
        sock.close()
        return -1, None
    if len(reply) < 2:
        sock.close()
        return -1, None
    if reply[1] != 0:
        sock.close()
        return reply[1], None
    return 0, sock


def socks5Login(proxyPort: int, user: bytes, password: bytes) -> bytes:
    """
    Greet offering only username/password and log in.

    @return: The server's answer to the login (C{b""} if it closed the
        connection instead), the connection being closed on return.
    """
    sock = socket.create_connection(("127.0.0.1", proxyPort), timeout=10)
    try:
        sock.sendall(b"\x05\x01\x02")
        if readExactly(sock, 2) != b"\x05\x02":
            return b""
        sock.sendall(
            b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password
        )
        return readExactly(sock, 2)
    except ConnectionError:
        return b""
    finally:
        sock.close()


def closedWithoutReply(proxyPort: int, timeout: float = 5.0) -> bool:
    """
    Connect, greet, and tell whether the server closes the connection without
    answering (within C{timeout} seconds).
    """
    sock = socket.create_connection(("127.0.0.1", proxyPort), timeout=timeout)
    try:
        try:
            sock.sendall(b"\x05\x01\x00")
            return sock.recv(16) == b""
        except ConnectionError:
            return True
        except TimeoutError:
            return False
    finally:
        sock.close()


async def waitForLogAsync(
    server: SOCKSServerProcess, text: str, timeout: float = 10.0
) -> str:
    """
    L{waitForLog} without blocking the reactor.
    """
    clock = cast(IReactorTime, _reactor)
    deadline = time.monotonic() + timeout
    while True:
        output = server.output()
        if text in output:
            return output
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} was not logged:\n{output}")
        await deferLater(clock, 0.05)


async def curlFetch(
    testCase: TestCase, curl: str, proxy: str, url: str
) -> tuple[ProcessResult, bytes | None]:
    """
    Fetch a URL with curl through a proxy, saving the body to a new file.

    @return: How curl ended, and the body (L{None} if it saved none).
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
            "30",
            "--proxy",
            proxy,
            "--output",
            output,
            url,
        ]
    )
    body = None
    if os.path.exists(output):
        with open(output, "rb") as f:
            body = f.read()
    return result, body


class UsersFileTests(TestCase):
    """
    A C{[users]} file written by the real tools authenticates real clients.
    """

    async def test_htpasswdBcryptWithCurl(self) -> None:
        """
        A users file written by Apache's C{htpasswd -B} (bcrypt C{$2y$})
        lets curl log in as C{alice} and fetch a file intact; a wrong
        password is refused and never reaches the target.
        """
        htpasswd = requirePeer("htpasswd", "apache2-utils")
        curl = requirePeer("curl", "curl")
        directory = testDirectory(self)
        usersPath = os.path.join(directory, "users")
        subprocess.run(
            [htpasswd, "-c", "-B", "-b", "-C", "4", usersPath, "alice", "pw"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        with open(usersPath, "rb") as f:
            self.assertTrue(f.read().startswith(b"alice:$2y$04$"))
        configPath = writeFile(directory, "socks.toml", '[users]\nfile = "users"\n')
        server = startSOCKSServer(self, "--config", configPath)
        http = startHTTPServer(self, size=64 * 1024)
        result, body = await curlFetch(
            self, curl, f"socks5h://alice:pw@127.0.0.1:{server.port}", http.url()
        )
        self.assertEqual(result.exitCode, 0, result.describe())
        assert body is not None
        self.assertEqual(hashlib.sha256(body).hexdigest(), http.sha256)
        self.assertEqual(http.connectionCount, 1)

        result, body = await curlFetch(
            self, curl, f"socks5h://alice:wrong@127.0.0.1:{server.port}", http.url()
        )
        self.assertEqual(result.exitCode, CURLE_PROXY, result.describe())
        self.assertFalse(body)
        self.assertEqual(http.connectionCount, 1)

    def test_passwdToolWithPythonSocks(self) -> None:
        """
        A users file written by C{python -m socks_twisted.passwd --stdin}
        (argon2id, the password on standard input) lets python-socks log in
        as C{bob} and CONNECT to an echo server; a wrong password raises
        L{ProxyError}.
        """
        directory = testDirectory(self)
        usersPath = os.path.join(directory, "users")
        completed = subprocess.run(
            [sys.executable, "-m", "socks_twisted.passwd", "--stdin", usersPath, "bob"],
            input=b"b0b-secret\n",
            capture_output=True,
            timeout=60,
        )
        self.assertEqual(completed.returncode, 0, completed.stderr)
        with open(usersPath, "rb") as f:
            self.assertTrue(f.read().startswith(b"bob:$argon2id$"))
        configPath = writeFile(directory, "socks.toml", '[users]\nfile = "users"\n')
        server = startSOCKSServer(self, "--config", configPath)
        echo = startEchoServer(self)

        proxy = Proxy.from_url(f"socks5://bob:b0b-secret@127.0.0.1:{server.port}")
        sock = proxy.connect(dest_host="127.0.0.1", dest_port=echo.port, timeout=20)
        try:
            sock.settimeout(10)
            self.assertTrue(echoes(sock, b"hello through argon2id"))
        finally:
            sock.close()

        wrong = Proxy.from_url(f"socks5://bob:not-it@127.0.0.1:{server.port}")
        with self.assertRaises(ProxyError):
            wrong.connect(dest_host="127.0.0.1", dest_port=echo.port, timeout=20)


class RuleTests(TestCase):
    """
    C{[[rules]]} deny what they name, and the log names the rule.
    """

    async def test_denyByPortAndCIDR(self) -> None:
        """
        A rule denying one HTTP server's port and a rule denying a CIDR make
        curl fail with SOCKS5 reply 2, without the target being reached,
        while another HTTP server is fetched intact; each refusal's log line
        names its rule by number and name.
        """
        curl = requirePeer("curl", "curl")
        allowed = startHTTPServer(self, size=32 * 1024)
        denied = startHTTPServer(self, size=32 * 1024)
        server, _ = startConfigured(
            self,
            f"""
[[rules]]
name = "no second server"
action = "deny"
ports = [{denied.port}]

[[rules]]
name = "no 127.0.0.3"
action = "deny"
to = ["127.0.0.3/32"]
""",
        )
        proxy = f"socks5h://127.0.0.1:{server.port}"

        result, body = await curlFetch(self, curl, proxy, allowed.url())
        self.assertEqual(result.exitCode, 0, result.describe())
        assert body is not None
        self.assertEqual(hashlib.sha256(body).hexdigest(), allowed.sha256)

        result, body = await curlFetch(self, curl, proxy, denied.url())
        self.assertEqual(result.exitCode, CURLE_PROXY, result.describe())
        self.assertIn(b"(2)", result.stderr)
        self.assertEqual(denied.connectionCount, 0)
        await waitForLogAsync(server, 'denied by rule 1 ("no second server")')

        result, body = await curlFetch(
            self, curl, proxy, f"http://127.0.0.3:{allowed.port}/"
        )
        self.assertEqual(result.exitCode, CURLE_PROXY, result.describe())
        self.assertIn(b"(2)", result.stderr)
        output = await waitForLogAsync(server, 'denied by rule 2 ("no 127.0.0.3")')
        self.assertIn(f"target=127.0.0.3:{allowed.port} reply=2", output)
        self.assertEqual(allowed.connectionCount, 1)


class ServerOptionTests(SynchronousTestCase):
    """
    The C{[server]} table sets options of C{twistd socks}; the command line
    wins over it.
    """

    config = """
[server]
port = ["tcp:0:interface=127.0.0.1"]
handshake-timeout = 1
"""

    def silentClient(self, server: SOCKSServerProcess) -> float:
        """
        Connect and send nothing.

        @return: How long the server took to close the connection.
        """
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
            try:
                self.assertEqual(sock.recv(16), b"")
            except ConnectionError:
                pass
        return time.monotonic() - started

    def test_fileOptionsApply(self) -> None:
        """
        The file's C{port} and C{handshake-timeout = 1} apply: the server
        listens where the file says, and closes a client that sends nothing
        well within 10 s, saying why in the log.
        """
        server, _ = startConfigured(self, self.config, listen=None)
        self.assertLess(self.silentClient(server), 10)
        waitForLog(server, "reason=handshake not finished within 1 s")

    def test_commandLineWins(self) -> None:
        """
        C{--handshake-timeout 3} on the command line wins over the file's
        C{handshake-timeout = 1}.
        """
        server, _ = startConfigured(
            self, self.config, "--handshake-timeout", "3", listen=None
        )
        self.silentClient(server)
        output = waitForLog(server, "reason=handshake not finished within 3 s")
        self.assertNotIn("within 1 s", output)


class ReloadTests(SynchronousTestCase):
    """
    C{SIGHUP} reloads the file: new sessions follow it, open ones carry on,
    and a broken file changes nothing.
    """

    def test_reloadDuringSession(self) -> None:
        """
        After a reload that denies the echo server's port, the session
        already open to it still echoes while a new one is refused with
        reply 2.  A broken file then fails to reload, the log says so, and
        the running rules stay: the port is still denied and another target
        is still allowed.
        """
        echo = startEchoServer(self)
        other = startEchoServer(self)
        server, path = startConfigured(self, "[limits]\nsessions-per-client = 10\n")

        code, session = socks5Request(server.port, echo.port)
        self.assertEqual(code, 0)
        assert session is not None
        self.addCleanup(session.close)
        self.assertTrue(echoes(session, b"before the reload"))

        writeFile(
            os.path.dirname(path),
            "socks.toml",
            f'[[rules]]\nname = "echo closed"\naction = "deny"\n'
            f"ports = [{echo.port}]\n",
        )
        os.kill(server.process.pid, signal.SIGHUP)
        waitForLog(server, "reloaded")
        self.assertTrue(echoes(session, b"after the reload"))
        code, _ = socks5Request(server.port, echo.port)
        self.assertEqual(code, NOT_ALLOWED)
        waitForLog(server, 'denied by rule 1 ("echo closed")')

        writeFile(os.path.dirname(path), "socks.toml", "[[rules]\naction = 'allow'\n")
        os.kill(server.process.pid, signal.SIGHUP)
        output = waitForLog(server, "failed, the running configuration is kept")
        self.assertIn(f"reload of {path} failed", output)
        self.assertNotIn("Traceback", output)
        self.assertTrue(echoes(session, b"after the failed reload"))
        code, newSession = socks5Request(server.port, other.port)
        self.assertEqual(code, 0)
        assert newSession is not None
        with newSession:
            self.assertTrue(echoes(newSession, b"still allowed"))
        code, _ = socks5Request(server.port, echo.port)
        self.assertEqual(code, NOT_ALLOWED)


class LimitTests(SynchronousTestCase):
    """
    The C{[limits]} table's admission limits.
    """

    def test_sessionsPerClient(self) -> None:
        """
        With C{sessions-per-client = 2}, a third concurrent connection from
        the same address is closed at once, without an answer; once one of
        the two closes, a new connection is served again.
        """
        server, _ = startConfigured(self, "[limits]\nsessions-per-client = 2\n")
        first = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        second = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.addCleanup(first.close)
        self.addCleanup(second.close)
        for sock in (first, second):
            sock.sendall(b"\x05\x01\x00")
            self.assertEqual(readExactly(sock, 2), b"\x05\x00")

        self.assertTrue(closedWithoutReply(server.port))
        waitForLog(server, "sessions-per-client reached")

        first.close()
        deadline = time.monotonic() + 10
        served = False
        while not served and time.monotonic() < deadline:
            served = not closedWithoutReply(server.port)
            if not served:
                time.sleep(0.1)
        self.assertTrue(served, "no new session was served after one closed")

    def test_authFailureBackOff(self) -> None:
        """
        With C{auth-failures-per-minute-per-client = 2}, the third wrong
        password starts a back-off: new connections are closed without a
        reply, and the back-off is logged once however many are refused.
        """
        users = b"carol:" + hashPassword(b"right") + b"\n"
        server, _ = startConfigured(
            self,
            '[users]\nfile = "users"\n'
            "[limits]\nauth-failures-per-minute-per-client = 2\n",
            files={"users": users.decode("ascii")},
        )
        self.assertEqual(socks5Login(server.port, b"carol", b"right"), b"\x01\x00")
        for _ in range(3):
            self.assertEqual(socks5Login(server.port, b"carol", b"wrong"), b"\x01\x01")
        waitForLog(server, "authentication failures within")
        for _ in range(3):
            self.assertTrue(closedWithoutReply(server.port))
        output = server.output()
        self.assertEqual(
            output.count("refusing new connections from 127.0.0.1 for"), 1, output
        )
        self.assertIn("3 authentication failures within 60 s", output)


class BandwidthTests(TestCase):
    """
    C{bandwidth-per-session} caps a session's rate.
    """

    async def test_perSessionCap(self) -> None:
        """
        At C{bandwidth-per-session = "200kB"}, 600 kB take at least about two
        seconds to arrive through curl (asserted loosely: more than 1.5 s),
        and arrive intact.
        """
        curl = requirePeer("curl", "curl")
        server, _ = startConfigured(self, '[limits]\nbandwidth-per-session = "200kB"\n')
        http = startHTTPServer(self, size=600_000)
        started = time.monotonic()
        result, body = await curlFetch(
            self, curl, f"socks5h://127.0.0.1:{server.port}", http.url()
        )
        elapsed = time.monotonic() - started
        self.assertEqual(result.exitCode, 0, result.describe())
        assert body is not None
        self.assertEqual(hashlib.sha256(body).hexdigest(), http.sha256)
        self.assertGreater(elapsed, 1.5)


class OutboundBindTests(SynchronousTestCase):
    """
    A rule's C{bind} sets the source address of the connections it allows.
    """

    def test_bindSourceAddress(self) -> None:
        """
        With C{bind = "127.0.0.2"}, the target sees the proxy's connection
        come from 127.0.0.2.
        """
        target = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(target.close)
        target.settimeout(10)
        targetPort = target.getsockname()[1]
        server, _ = startConfigured(
            self,
            f'[[rules]]\nname = "via .2"\naction = "allow"\nports = [{targetPort}]\n'
            'bind = "127.0.0.2"\n',
        )
        code, session = socks5Request(server.port, targetPort)
        self.assertEqual(code, 0)
        assert session is not None
        with session:
            accepted, peer = target.accept()
            with accepted:
                self.assertEqual(peer[0], "127.0.0.2")
                session.sendall(b"ping")
                accepted.settimeout(10)
                self.assertEqual(readExactly(accepted, 4), b"ping")


class UDPEcho(DatagramProtocol):
    """
    Echoes every datagram in upper case, and counts them.
    """

    received = 0

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        self.transport.write(datagram.upper(), addr)  # type: ignore[union-attr]


def udpExchange(proxyPort: int, sends: list[tuple[int, bytes]]) -> list[bytes | None]:
    """
    Send datagrams to loopback ports through one PySocks UDP association and
    wait for each answer: up to 10 s for one expected, 1 s for the others
    (a payload starting with C{b"denied"}).  This blocks: call it in a thread.

    @return: Each answer, or L{None} where none came.
    """
    client = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    client.set_proxy(socks.SOCKS5, "127.0.0.1", proxyPort)
    try:
        answers: list[bytes | None] = []
        for port, payload in sends:
            client.settimeout(1 if payload.startswith(b"denied") else 10)
            client.sendto(payload, ("127.0.0.1", port))
            try:
                data, _ = client.recvfrom(65535)
            except TimeoutError:
                answers.append(None)
            else:
                answers.append(data)
        return answers
    finally:
        client.close()


class UDPTests(TestCase):
    """
    Rules with C{commands = ["udp"]} filter the datagrams of UDP ASSOCIATE.
    """

    async def test_deniedPortGetsNoAnswer(self) -> None:
        """
        Through PySocks' UDP association, datagrams to an allowed echo server
        come back, datagrams to a port a rule denies get no answer and never
        reach it, and the association's end is logged with the drop counted
        as "denied by policy".
        """
        udp = cast(IReactorUDP, _reactor)
        allowedEcho, deniedEcho = UDPEcho(), UDPEcho()
        ports: list[IListeningPort] = []
        for protocol in (allowedEcho, deniedEcho):
            port = udp.listenUDP(0, protocol, "127.0.0.1", 65535)
            self.addCleanup(port.stopListening)
            ports.append(port)
        allowedPort, deniedPort = (p.getHost().port for p in ports)  # type: ignore[attr-defined]
        server, _ = startConfigured(
            self,
            f'[[rules]]\nname = "no udp there"\naction = "deny"\n'
            f'commands = ["udp"]\nports = [{deniedPort}]\n',
        )
        answers = await deferToThread(
            udpExchange,
            server.port,
            [
                (allowedPort, b"first"),
                (deniedPort, b"denied one"),
                (allowedPort, b"second"),
            ],
        )
        self.assertEqual(answers, [b"FIRST", None, b"SECOND"])
        self.assertEqual((allowedEcho.received, deniedEcho.received), (2, 0))
        output = await waitForLogAsync(server, "dropped denied by policy: 1")
        self.assertIn(
            f'datagrams to 127.0.0.1:{deniedPort} denied by rule 1 ("no udp there")',
            output,
        )


#: Broken configuration files: a name, the file's text, the files beside
#: it, and what the last line of twistd's output must say beyond the path of
#: the file at fault (the users file for the last two, else the
#: configuration file).
MALFORMED = [
    ("unknown table", "[proxy]\nport = 1\n", {}, "[proxy]: unknown table"),
    (
        "unknown limits key",
        "[limits]\nsessions-per-host = 3\n",
        {},
        "[limits] key 'sessions-per-host': unknown key",
    ),
    (
        "wrong type",
        '[limits]\nsessions-per-client = "many"\n',
        {},
        "[limits] key 'sessions-per-client'",
    ),
    (
        "bad CIDR",
        '[[rules]]\naction = "deny"\nto = ["10.0.0.0/33"]\n',
        {},
        "[[rules]] #1 key 'to'",
    ),
    (
        "reversed port range",
        '[[rules]]\naction = "deny"\nports = ["9-1"]\n',
        {},
        "[[rules]] #1 key 'ports'",
    ),
    (
        "bad size",
        '[limits]\nbandwidth-per-session = "10XB"\n',
        {},
        "[limits] key 'bandwidth-per-session'",
    ),
    (
        "missing group",
        '[users]\ngroups = { staff = ["alice"] }\n'
        '[[rules]]\naction = "allow"\nusers = ["group:ghosts"]\n',
        {},
        "ghosts",
    ),
    (
        "not an option",
        '[server]\ncolour = "blue"\n',
        {},
        "[server] key 'colour': not an option",
    ),
    (
        "option of the wrong type",
        '[server]\nhandshake-timeout = "soon"\n',
        {},
        "[server] key 'handshake-timeout'",
    ),
    ("TOML syntax error", "[server\nport = 1\n", {}, "not valid TOML"),
    (
        "clear-text password",
        '[users]\nfile = "users"\n',
        {"users": "alice:secret\n"},
        "line 1: the password of user 'alice' is a clear-text password",
    ),
    (
        "missing users file",
        '[users]\nfile = "no-such-users"\n',
        {},
        "no-such-users: no such file",
    ),
]


class MalformedConfigTests(SynchronousTestCase):
    """
    A configuration file that cannot be used stops twistd before it starts,
    with one line naming the file and the problem, and no traceback.
    """

    def test_malformedFiles(self) -> None:
        """
        For each broken file (all run at once, each bounded to 60 s), twistd
        exits non-zero, prints no traceback, and its last line names the
        file (the configuration file, or for a users-file problem the users
        file) and the table and key at fault.
        """
        runs = []
        for name, text, files, expected in MALFORMED:
            directory = testDirectory(self)
            for fileName, fileText in files.items():
                writeFile(directory, fileName, fileText)
            path = writeFile(directory, "socks.toml", text)
            named = path
            if name == "clear-text password":
                named = os.path.join(directory, "users")
            elif name == "missing users file":
                named = os.path.join(directory, "no-such-users")
            process = subprocess.Popen(
                twistdCommand(
                    "-n",
                    "--pidfile=",
                    "socks",
                    "--port",
                    LOOPBACK_LISTEN,
                    "--config",
                    path,
                ),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=directory,
            )
            runs.append((name, process, named, expected))
        problems = []
        for name, process, named, expected in runs:
            try:
                out, _ = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                out, _ = process.communicate()
                problems.append(f"{name}: still running after 60 s")
                continue
            output = out.decode("utf-8", "replace")
            lines = [line for line in output.splitlines() if line.strip()]
            last = lines[-1] if lines else ""
            if process.returncode == 0:
                problems.append(f"{name}: exit status 0")
            if "Traceback" in output:
                problems.append(f"{name}: a traceback:\n{output}")
            if named not in last or expected not in last:
                problems.append(
                    f"{name}: last line {last!r} does not name {named!r} "
                    f"and {expected!r}"
                )
        self.assertEqual(problems, [], "\n".join(problems))
