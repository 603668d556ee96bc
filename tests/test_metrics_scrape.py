"""
End-to-end tests of the C{--metrics} endpoint: a real C{twistd -n socks}
subprocess with C{--metrics tcp:0:interface=127.0.0.1}, real SOCKS clients
(raw sockets for TCP, PySocks for UDP) and real loopback echo servers, and
the endpoint scraped over HTTP with C{urllib.request} and parsed with
C{prometheus_client}'s own parser.

What the server counts, as these tests pin it down:

  - C{socks_policy_denials_total} counts every request I{and} every UDP
    datagram the rules deny (a denied datagram is checked again, and
    counted again, each time one is sent to that destination), under the
    deciding rule's description (C{rule 1 ("blocked")}).
  - C{socks_bytes_total} counts the bytes relayed by TCP sessions only: the
    payloads of UDP datagrams are not in it (only their number is, in
    C{socks_udp_datagrams_total}).
  - C{socks_udp_datagrams_total} and C{socks_udp_dropped_total} are counted
    when an association ends (its control connection closes), not as the
    datagrams pass.
  - C{socks_handshake_seconds} observes every session whose request was
    read (not one that failed authentication); C{socks_connect_seconds}
    only the sessions whose target was connected.
  - A session that failed authentication is counted with the version of its
    greeting and the command C{"-"}.

The tests are synchronous: the server is another process, so the scrapes
and the clients block the test's thread only, with bounded timeouts.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass

import socks  # PySocks
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from .interop._support import SOCKSServerProcess, startSOCKSServer, testDirectory
from .test_config_server import socks5Login, writeFile
from .test_startup import echoes, readExactly, socks5Connect, startEchoServer

#: A Twisted port's announcement in the text log: C{"<factory> starting on
#: <port>"}.  The SOCKS port's factory is C{SOCKSServerFactory}; the metrics
#: port's is the metrics site.
_STARTING_ON = re.compile(r"\[-\] (\S+) starting on (\d+)$", re.MULTILINE)

#: The line that sums up a session as it ends, in the text log.
_SESSION_END = re.compile(
    r"SOCKS session (\S+) \S+ user=\S+ version=(\S+) command=(\S+) "
    r"target=\S+ reply=\S+(?: bound=\S+)? outcome=(\S+) bytes_up=(\d+) "
    r"bytes_down=(\d+)"
)

#: The line that sums up a UDP association as it ends.
_ASSOCIATION_END = re.compile(r"UDP association \S+ \(session \S+\) ended \(")

#: SOCKS5 reply codes.
SUCCEEDED = 0
NOT_ALLOWED = 2
CONNECTION_REFUSED = 5

#: The user and password of the users file.
USER = b"alice"
PASSWORD = b"correct horse"

#: The name of the rule that denies a port, and how the metrics name it.
RULE_NAME = "blocked"
RULE_LABEL = f'rule 1 ("{RULE_NAME}")'

#: Labels of a sample, as a sorted tuple of name and value pairs.
Labels = tuple[tuple[str, str], ...]

#: A scrape: for each sample name, the value of each of its label sets.
Scrape = dict[str, dict[Labels, float]]


def labels(**values: str) -> Labels:
    """
    @return: The label set C{values}, in the form L{Scrape} keys it.
    """
    return tuple(sorted(values.items()))


@dataclass
class MetricsServer:
    """
    A C{twistd -n socks --metrics ...} child process.

    @ivar process: The process, stopped when the test ends.
    @ivar port: Its SOCKS port.
    @ivar metricsPort: Its metrics port.
    """

    process: SOCKSServerProcess
    port: int
    metricsPort: int

    def output(self) -> str:
        """
        @return: What it has logged so far.
        """
        return self.process.output()

    def scrape(self) -> Scrape:
        """
        C{GET /metrics} with a real HTTP client and parse the answer with
        C{prometheus_client}'s parser.

        @return: Every sample, by name and labels.
        """
        url = f"http://127.0.0.1:{self.metricsPort}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            if response.status != 200:
                raise AssertionError(f"GET {url}: status {response.status}")
            text = response.read().decode("utf-8")
        samples: Scrape = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, {})[
                    tuple(sorted(sample.labels.items()))
                ] = sample.value
        return samples

    def sessionEnds(self) -> list[tuple[str, str, str, int, int]]:
        """
        @return: For every session that has ended, as its log line says:
            its version, command, outcome, and bytes up and down.
        """
        return [
            (version, command, outcome, int(up), int(down))
            for _, version, command, outcome, up, down in _SESSION_END.findall(
                self.output()
            )
        ]

    def waitForEnds(
        self, expected: Counter[str], associations: int = 0, timeout: float = 10.0
    ) -> list[tuple[str, str, str, int, int]]:
        """
        Wait until the sessions that have ended have exactly the C{expected}
        outcomes (and C{associations} UDP associations have ended): the
        metrics of a session are counted before its end is logged.

        @return: The ended sessions, as L{sessionEnds} gives them.

        @raise AssertionError: If they have not within C{timeout} seconds,
            or more have ended.
        """
        deadline = time.monotonic() + timeout
        while True:
            ends = self.sessionEnds()
            outcomes = Counter(outcome for _, _, outcome, _, _ in ends)
            ended = len(_ASSOCIATION_END.findall(self.output()))
            if outcomes == expected and ended == associations:
                return ends
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"ended sessions {dict(outcomes)} and {ended} UDP "
                    f"association(s), not {dict(expected)} and "
                    f"{associations}, after {timeout} s:\n{self.output()}"
                )
            time.sleep(0.05)


def startMetricsServer(
    testCase: SynchronousTestCase,
    configText: str | None = None,
    files: dict[str, str] | None = None,
) -> MetricsServer:
    """
    Start C{twistd -n --pidfile= socks --port tcp:0:interface=127.0.0.1
    --metrics tcp:0:interface=127.0.0.1} (with C{--config FILE} when
    C{configText} is given), and find both its ports in its log.

    @param configText: The TOML of a configuration file, if any.
    @param files: More files to write beside the configuration file.
    """
    args = ["--metrics", "tcp:0:interface=127.0.0.1"]
    if configText is not None:
        directory = testDirectory(testCase)
        for name, text in (files or {}).items():
            writeFile(directory, name, text)
        args += ["--config", writeFile(directory, "socks.toml", configText)]
    process = startSOCKSServer(testCase, *args)
    deadline = time.monotonic() + 20
    while True:
        ports = dict(_STARTING_ON.findall(process.output()))
        socksPort = ports.pop("SOCKSServerFactory", None)
        if socksPort is not None and ports:
            [metricsPort] = ports.values()
            return MetricsServer(process, int(socksPort), int(metricsPort))
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the metrics port was not logged:\n{process.output()}"
            )
        time.sleep(0.05)


def makeUsersFile(directory: str) -> str:
    """
    Write a users file with C{python -m socks_twisted.passwd --stdin}.

    @return: Its text.
    """
    path = os.path.join(directory, "users")
    completed = subprocess.run(
        [sys.executable, "-m", "socks_twisted.passwd", "--stdin", path, "alice"],
        input=PASSWORD + b"\n",
        capture_output=True,
        timeout=60,
    )
    if completed.returncode != 0:
        raise AssertionError(f"passwd failed: {completed.stderr!r}")
    with open(path, encoding="ascii") as f:
        return f.read()


def authenticatedConnect(
    proxyPort: int, targetPort: int
) -> tuple[int, socket.socket | None]:
    """
    Log in as L{USER} with username/password and ask for a SOCKS5 CONNECT
    to C{127.0.0.1:targetPort}.

    @return: The reply code, and the relaying socket when it is 0 (else the
        socket is closed).
    """
    sock = socket.create_connection(("127.0.0.1", proxyPort), timeout=10)
    try:
        sock.sendall(b"\x05\x01\x02")
        if readExactly(sock, 2) != b"\x05\x02":
            raise AssertionError("username/password not chosen")
        sock.sendall(
            b"\x01" + bytes([len(USER)]) + USER + bytes([len(PASSWORD)]) + PASSWORD
        )
        if readExactly(sock, 2) != b"\x01\x00":
            raise AssertionError("login refused")
        sock.sendall(
            b"\x05\x01\x00\x01"
            + socket.inet_aton("127.0.0.1")
            + targetPort.to_bytes(2, "big")
        )
        reply = readExactly(sock, 10)
        if len(reply) != 10 or reply[0] != 5:
            raise AssertionError(f"bad reply {reply!r}")
    except BaseException:
        sock.close()
        raise
    if reply[1] != SUCCEEDED:
        sock.close()
        return reply[1], None
    return SUCCEEDED, sock


def closedPort() -> int:
    """
    @return: A loopback TCP port nothing listens on (one just released).
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class UDPEchoServer:
    """
    A UDP echo server on 127.0.0.1, in a thread: answers every datagram
    with it in upper case.

    @ivar port: Its port.
    @ivar received: How many datagrams it has received.
    """

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.05)
        self.port: int = self._socket.getsockname()[1]
        self.received = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                data, address = self._socket.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received += 1
            self._socket.sendto(data.upper(), address)

    def stop(self) -> None:
        """
        Stop serving, and close the socket.
        """
        self._stopping.set()
        self._thread.join(10)
        self._socket.close()


def udpExchange(
    proxyPort: int, deniedPort: int, echoPort: int, payloads: list[bytes]
) -> list[bytes]:
    """
    Through one PySocks UDP association (logged in as L{USER}): send one
    datagram to C{deniedPort}, then each payload to the echo server,
    waiting for each answer; then close, which ends the association.

    The denied datagram goes first, and nothing waits for an answer to it:
    the server handles one client's datagrams in order, so by the time the
    echo server's answers come back it has been dropped.

    @return: The answers.
    """
    client = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    client.set_proxy(
        socks.SOCKS5,
        "127.0.0.1",
        proxyPort,
        username=USER.decode("ascii"),
        password=PASSWORD.decode("ascii"),
    )
    client.settimeout(10)
    try:
        client.sendto(b"denied datagram", ("127.0.0.1", deniedPort))
        answers = []
        for payload in payloads:
            client.sendto(payload, ("127.0.0.1", echoPort))
            data, _ = client.recvfrom(65535)
            answers.append(data)
        return answers
    finally:
        client.close()


class MetricsScrapeTests(SynchronousTestCase):
    """
    The metrics a real server serves, scraped over HTTP, count exactly what
    its real clients did.
    """

    def test_exactCounts(self) -> None:
        """
        After two successful CONNECTs (each echoing a known number of
        bytes), one CONNECT to a closed port, one wrong password, one
        CONNECT a rule denies, and one UDP association (three datagrams
        echoed, one to the denied port), every counter has exactly the
        expected value once the sessions' ends are logged: the sessions by
        version, command and outcome, the authentication failures, the
        denials (the CONNECT's and the datagram's, under the one rule), the
        UDP datagrams each way and the drop, the TCP bytes each way, and
        the histograms' counts; no session stays active, and no limit
        refused anything.
        """
        tcpEcho = startEchoServer(self)
        udpEcho = UDPEchoServer()
        self.addCleanup(udpEcho.stop)
        # The denied port: a UDP socket, to show nothing reaches it; the
        # same port number is denied for the CONNECT (nothing listens on it
        # over TCP, and nothing is dialled: the rule answers first).
        deniedTarget = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(deniedTarget.close)
        deniedTarget.bind(("127.0.0.1", 0))
        deniedPort = deniedTarget.getsockname()[1]
        server = startMetricsServer(
            self,
            '[users]\nfile = "users"\n\n'
            f'[[rules]]\nname = "{RULE_NAME}"\naction = "deny"\n'
            f"ports = [{deniedPort}]\n",
            files={"users": makeUsersFile(testDirectory(self))},
        )

        before = server.scrape()
        self.assertEqual(before.get("socks_sessions_total", {}), {})

        payloads = [os.urandom(1000), os.urandom(2345)]
        for payload in payloads:
            code, sock = authenticatedConnect(server.port, tcpEcho.port)
            self.assertEqual(code, SUCCEEDED)
            assert sock is not None
            with sock:
                self.assertTrue(echoes(sock, payload))

        code, _ = authenticatedConnect(server.port, closedPort())
        self.assertEqual(code, CONNECTION_REFUSED)
        self.assertEqual(socks5Login(server.port, USER, b"wrong"), b"\x01\x01")
        code, _ = authenticatedConnect(server.port, deniedPort)
        self.assertEqual(code, NOT_ALLOWED)

        udpPayloads = [b"first", b"second datagram", b"x" * 1200]
        answers = udpExchange(server.port, deniedPort, udpEcho.port, udpPayloads)
        self.assertEqual(answers, [p.upper() for p in udpPayloads])
        self.assertEqual(udpEcho.received, 3)
        deniedTarget.setblocking(False)
        self.assertRaises(BlockingIOError, deniedTarget.recv, 65535)

        ends = server.waitForEnds(
            Counter(success=3, refused=1, auth_failed=1, denied=1), associations=1
        )
        tcpBytes = sum(len(p) for p in payloads)
        self.assertEqual(
            sorted((up, down) for _, command, outcome, up, down in ends),
            [(0, 0)] * 4 + [(len(p), len(p)) for p in payloads],
        )
        output = server.output()
        self.assertIn("dropped denied by policy: 1", output)

        m = server.scrape()
        self.assertEqual(
            m["socks_sessions_total"],
            {
                labels(version="5", command="connect", outcome="success"): 2,
                labels(version="5", command="connect", outcome="refused"): 1,
                labels(version="5", command="connect", outcome="denied"): 1,
                labels(version="5", command="-", outcome="auth_failed"): 1,
                labels(version="5", command="udp", outcome="success"): 1,
            },
        )
        self.assertEqual(
            m["socks_auth_failures_total"], {labels(method="username/password"): 1}
        )
        self.assertEqual(m["socks_policy_denials_total"], {labels(rule=RULE_LABEL): 2})
        self.assertEqual(
            m["socks_udp_datagrams_total"],
            {labels(direction="up"): 3, labels(direction="down"): 3},
        )
        self.assertEqual(
            m["socks_udp_dropped_total"], {labels(reason="denied by policy"): 1}
        )
        # TCP bytes only: the UDP payloads are not counted here.
        self.assertEqual(
            m["socks_bytes_total"],
            {labels(direction="up"): tcpBytes, labels(direction="down"): tcpBytes},
        )
        # Every session whose request was read: not the failed login.
        self.assertEqual(m["socks_handshake_seconds_count"], {(): 5})
        # Every session whose target was connected: the two successes.
        self.assertEqual(m["socks_connect_seconds_count"], {(): 2})
        self.assertEqual(
            set(m["socks_sessions_active"].values()), {0.0}, m["socks_sessions_active"]
        )
        self.assertEqual(
            set(m["socks_refused_total"].values()), {0.0}, m["socks_refused_total"]
        )

    def test_activeGauge(self) -> None:
        """
        C{socks_sessions_active{command="connect"}} is 0 before a session,
        1 while one relays, and 0 again once it has ended.
        """
        echo = startEchoServer(self)
        server = startMetricsServer(self)
        active = labels(command="connect")
        self.assertEqual(server.scrape()["socks_sessions_active"][active], 0)

        sock = socks5Connect(server.port, echo.port)
        assert sock is not None
        self.addCleanup(sock.close)
        self.assertTrue(echoes(sock, b"open"))
        during = server.scrape()["socks_sessions_active"]
        self.assertEqual(
            during,
            {
                active: 1,
                labels(command="bind"): 0,
                labels(command="udp"): 0,
                labels(command="resolve"): 0,
                labels(command="resolve_ptr"): 0,
            },
        )

        sock.close()
        server.waitForEnds(Counter(success=1))
        self.assertEqual(server.scrape()["socks_sessions_active"][active], 0)

    def test_bytesCountedWhileOpen(self) -> None:
        """
        During a transfer of 1 MB up (echoed back down) a scrape within 2 s,
        while the session is still open, already counts at least the 1 MB
        each way; once the session ends the counters hold its exact bytes.
        """
        size = 1024 * 1024
        echo = startEchoServer(self)
        server = startMetricsServer(self)
        sock = socks5Connect(server.port, echo.port)
        assert sock is not None
        self.addCleanup(sock.close)

        received: list[bytes] = []

        def read() -> None:
            count = 0
            while count < size:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received.append(chunk)
                count += len(chunk)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        payload = os.urandom(size)
        sock.sendall(payload)
        sent = time.monotonic()
        reader.join(10)
        self.assertEqual(b"".join(received), payload)

        up = labels(direction="up")
        down = labels(direction="down")
        while True:
            counted = server.scrape()["socks_bytes_total"]
            elapsed = time.monotonic() - sent
            if counted[up] >= size and counted[down] >= size:
                break
            if elapsed > 2.5:
                self.fail(f"{counted} after {elapsed:.2f} s")
            time.sleep(0.1)
        self.assertLess(elapsed, 2.5)
        # Still open: nothing has ended, and it still relays.
        self.assertEqual(server.sessionEnds(), [])
        self.assertTrue(echoes(sock, b"still open"))

        sock.close()
        server.waitForEnds(Counter(success=1))
        total = size + len(b"still open")
        self.assertEqual(server.scrape()["socks_bytes_total"], {up: total, down: total})
