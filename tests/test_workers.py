"""
C{--workers N}: a supervisor and N worker processes serving the same ports,
run as an operator runs them (C{twistd -n socks}), on real loopback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import time
from collections.abc import Callable

from twisted.trial.unittest import TestCase

from socks_twisted._workers import sharable, shareOf, workerCount

from .interop._support import (
    SOCKSServerProcess,
    recvExactly,
    socks5Request,
    startSOCKSServer,
)

LOOPBACK = "127.0.0.1"

#: How long one step may take.
STEP = 15.0

_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


def _request(
    port: int, command: int, host: str, targetPort: int
) -> tuple[socket.socket, tuple[str, int]]:
    """
    A SOCKS5 session without authentication through our server: send
    C{command} and read its (first) success reply; the socket comes back
    open, with the reply's address.
    """
    sock = socket.create_connection((LOOPBACK, port), timeout=STEP)
    try:
        return sock, socks5Request(sock, command, host, targetPort)
    except BaseException:
        sock.close()
        raise


def _cpuTicks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class OptionTests(TestCase):
    """
    The option's values and what can be shared.
    """

    def test_workerCount(self) -> None:
        """
        A positive number, or C{auto} for the usable cores; nothing else.
        """
        self.assertEqual(workerCount("3"), 3)
        self.assertEqual(workerCount("auto"), len(os.sched_getaffinity(0)))
        for bad in ("0", "-1", "two", ""):
            with self.assertRaises(ValueError):
                workerCount(bad)

    def test_share(self) -> None:
        """
        A server-wide cap is shared out rounded up, at least one each.
        """
        self.assertEqual(shareOf(1024, 2), 512)
        self.assertEqual(shareOf(5, 2), 3)
        self.assertEqual(shareOf(1, 4), 1)

    def test_sharable(self) -> None:
        """
        Bare sockets can be shared, also behind C{haproxy:}; TLS cannot.
        """
        self.assertTrue(sharable("tcp:1080"))
        self.assertTrue(sharable("tcp6:1080:interface=\\:\\:1"))
        self.assertTrue(sharable("unix:/run/socks.sock"))
        self.assertTrue(sharable("haproxy:tcp:1080"))
        self.assertFalse(sharable("ssl:1080:privateKey=k.pem"))
        self.assertFalse(sharable("haproxy:ssl:1080"))


class WorkersTests(TestCase):
    """
    Two workers behind one port.
    """

    def start(self, *args: str) -> SOCKSServerProcess:
        server = startSOCKSServer(self, "--workers", "2", *args)
        self.workers = self.waitForWorkers(server, {1, 2})
        return server

    def waitForWorkers(
        self, server: SOCKSServerProcess, indexes: set[int], after: int = 0
    ) -> dict[int, int]:
        """
        The pids of the workers in C{indexes}, from the latest "started"
        lines past C{after} characters of the log, once each is serving.
        """
        deadline = time.monotonic() + STEP
        while time.monotonic() < deadline:
            log = server.output()
            pids = {int(m[1]): int(m[2]) for m in _STARTED.finditer(log, after)}
            serving = {
                index
                for index in indexes
                for line in log[after:].splitlines()
                if "SOCKSServerFactory starting on" in line
                and (f"[worker {index}]" in line or f'"worker": {index}' in line)
            }
            if set(pids) >= indexes and serving >= indexes:
                return {index: pids[index] for index in indexes}
            time.sleep(0.05)
        self.fail(f"workers {indexes} not serving:\n{server.output()}")

    def untilEach(
        self,
        server: SOCKSServerProcess,
        marker: str,
        session: Callable[[], None],
        attempts: int = 200,
    ) -> None:
        """
        Run C{session} until each worker has logged a line with C{marker}
        (the kernel, not us, picks the worker).
        """
        for _ in range(attempts):
            session()
            lines = [line for line in server.output().splitlines() if marker in line]
            if all(
                any(
                    f"[worker {i}]" in line or f'"worker": {i}' in line
                    for line in lines
                )
                for i in (1, 2)
            ):
                return
        self.fail(f"not every worker logged {marker!r}:\n{server.output()}")

    def echoTarget(self) -> tuple[socket.socket, int]:
        listener = socket.socket()
        listener.bind((LOOPBACK, 0))
        listener.listen(64)
        listener.settimeout(STEP)
        self.addCleanup(listener.close)
        return listener, listener.getsockname()[1]

    def connectOnce(self, server: SOCKSServerProcess, target: socket.socket) -> None:
        sock, _ = _request(server.port, 1, LOOPBACK, target.getsockname()[1])
        with sock:
            accepted, _ = target.accept()
            with accepted:
                sock.sendall(b"ping")
                self.assertEqual(recvExactly(accepted, 4), b"ping")

    def test_bothWorkersServe(self) -> None:
        """
        Under a burst of sessions, both workers serve some (each logs
        sessions, with ids of its own) and both gain CPU time; the
        supervisor serves none.
        """
        server = self.start()
        target, _ = self.echoTarget()
        before = {i: _cpuTicks(pid) for i, pid in self.workers.items()}
        supervisorBefore = _cpuTicks(server.process.pid)
        self.untilEach(
            server, "SOCKS session", lambda: self.connectOnce(server, target)
        )
        for _ in range(100):
            self.connectOnce(server, target)
        for index, pid in self.workers.items():
            self.assertGreater(_cpuTicks(pid), before[index], f"worker {index}")
        log = server.output()
        self.assertRegex(log, r"\[worker 1\] SOCKS session 1\.\w+ ")
        self.assertRegex(log, r"\[worker 2\] SOCKS session 2\.\w+ ")
        # The supervisor only relays log lines: far less than the workers.
        self.assertLess(_cpuTicks(server.process.pid) - supervisorBefore, 100)

    def test_killedWorkerReplaced(self) -> None:
        """
        A worker killed with SIGKILL is logged, replaced after a second,
        and service goes on meanwhile and after.
        """
        server = self.start()
        target, _ = self.echoTarget()
        mark = len(server.output())
        os.kill(self.workers[1], signal.SIGKILL)
        self.connectOnce(server, target)  # worker 2 carries on
        replaced = self.waitForWorkers(server, {1}, after=mark)
        self.assertNotEqual(replaced[1], self.workers[1])
        self.assertIn(
            f"worker 1 (pid {self.workers[1]}) died (signal 9); restarting it in 1 s",
            server.output(),
        )
        self.untilEach(
            server, "SOCKS session", lambda: self.connectOnce(server, target)
        )

    def test_sighupReachesEveryWorker(self) -> None:
        """
        SIGHUP to the supervisor makes every worker reload its
        configuration file.
        """
        config = os.path.abspath(self.mktemp())
        with open(config, "w") as f:
            f.write("[limits]\nsessions-per-client = 100\n")
        server = self.start("--config", config)
        os.kill(server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + STEP
        while time.monotonic() < deadline:
            log = server.output()
            if all(f"[worker {i}] reloaded {config}" in log for i in (1, 2)):
                break
            time.sleep(0.05)
        else:
            self.fail(f"not every worker reloaded:\n{server.output()}")
        self.assertIn("SIGHUP received: passed to 2 workers", server.output())

    def test_sigtermDrainsEveryWorker(self) -> None:
        """
        SIGTERM to the supervisor drains every worker: an open session
        still relays during the drain, and ends; then every worker and the
        supervisor exit, with status 0.
        """
        server = self.start("--drain-timeout", "10")
        target, _ = self.echoTarget()
        sock, _ = _request(server.port, 1, LOOPBACK, target.getsockname()[1])
        self.addCleanup(sock.close)
        accepted, _ = target.accept()
        self.addCleanup(accepted.close)
        os.kill(server.process.pid, signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(b"still here")
        self.assertEqual(recvExactly(accepted, 10), b"still here")
        sock.close()
        accepted.close()
        server.process.wait(STEP)
        self.assertEqual(server.stop(), 0)
        self.assertIn("stopping: 2 workers drain", server.output())
        for pid in self.workers.values():
            self.assertFalse(os.path.exists(f"/proc/{pid}"), f"worker {pid} left")

    def test_maxSessionsShared(self) -> None:
        """
        C{--max-sessions} is shared out: with 2 for 2 workers, each worker
        holds at most 1, so never more than 2 sessions are open at once.
        """
        server = self.start("--max-sessions", "2")
        target, _ = self.echoTarget()
        opened = []
        for _ in range(8):
            try:
                sock, _ = _request(server.port, 1, LOOPBACK, target.getsockname()[1])
            except (ConnectionError, OSError, AssertionError):
                continue
            self.addCleanup(sock.close)
            opened.append(sock)
            accepted, _ = target.accept()
            self.addCleanup(accepted.close)
        self.assertGreaterEqual(len(opened), 1)
        self.assertLessEqual(len(opened), 2)
        self.assertIn("sessions open, the limit (--max-sessions)", server.output())

    def test_bindAndUDPThroughEachWorker(self) -> None:
        """
        BIND and UDP ASSOCIATE work whichever worker takes the control
        connection.
        """
        server = self.start()

        def bindOnce() -> None:
            control, (host, port) = _request(server.port, 2, LOOPBACK, 0)
            with control:
                with socket.create_connection((host, port), timeout=STEP) as peer:
                    recvExactly(control, 10)  # the second reply
                    peer.sendall(b"bound")
                    self.assertEqual(recvExactly(control, 5), b"bound")

        def udpOnce() -> None:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as echo,
            ):
                udp.bind((LOOPBACK, 0))
                echo.bind((LOOPBACK, 0))
                udp.settimeout(STEP)
                echo.settimeout(STEP)
                control, relay = _request(server.port, 3, *udp.getsockname())
                with control:
                    header = b"\x00\x00\x00\x01" + socket.inet_aton(LOOPBACK)
                    header += struct.pack("!H", echo.getsockname()[1])
                    udp.sendto(header + b"datagram", relay)
                    data, source = echo.recvfrom(100)
                    self.assertEqual(data, b"datagram")
                    echo.sendto(b"back", source)
                    self.assertEqual(udp.recvfrom(100)[0], header + b"back")

        self.untilEach(server, "command=BIND", bindOnce)
        self.untilEach(server, "command=UDP_ASSOCIATE", udpOnce)

    def test_metricsSummed(self) -> None:
        """
        With C{--metrics}, the supervisor serves one set of numbers for the
        whole server: the sessions both workers served, summed.
        """
        server = self.start("--metrics", f"tcp:0:interface={LOOPBACK}")
        target, _ = self.echoTarget()
        self.untilEach(
            server, "SOCKS session", lambda: self.connectOnce(server, target)
        )
        metricsPort = int(
            re.findall(r"_QuietSite starting on (\d+)", server.output())[0]
        )
        deadline = time.monotonic() + STEP
        while True:
            with socket.create_connection((LOOPBACK, metricsPort), timeout=STEP) as web:
                web.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                page = b""
                while chunk := web.recv(65536):
                    page += chunk
            counts = re.findall(
                rb'socks_sessions_total\{command="connect",outcome="success",'
                rb'version="5"\} ([0-9.]+)',
                page,
            )
            # A worker's log lines reach the supervisor through a pipe: count
            # them again each time.
            served = server.output().count("outcome=success")
            if counts and float(counts[0]) == served:
                return
            if time.monotonic() > deadline:
                self.fail(f"{served} sessions served, metrics say {counts}")
            time.sleep(0.1)

    def test_workersEndWithSupervisor(self) -> None:
        """
        A supervisor killed with SIGKILL takes its workers with it: none
        is left holding the port.
        """
        server = self.start()
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(STEP)
        server.stop()
        deadline = time.monotonic() + STEP
        while any(os.path.exists(f"/proc/{pid}") for pid in self.workers.values()):
            if time.monotonic() > deadline:
                self.fail("a worker outlived its supervisor")
            time.sleep(0.05)

    def test_jsonLog(self) -> None:
        """
        With C{--log-format json}, the workers' events reach the log as JSON
        events of their own, each with the worker's number.
        """
        server = self.start("--log-format", "json")
        target, _ = self.echoTarget()
        self.untilEach(
            server, "SOCKS session", lambda: self.connectOnce(server, target)
        )
        sessions = [
            json.loads(line)
            for line in server.output().splitlines()
            if line.startswith("{") and '"SOCKS session' in line
        ]
        self.assertEqual({event["worker"] for event in sessions}, {1, 2})
        for event in sessions:
            self.assertTrue(event["session"].startswith(f"{event['worker']}."))
            self.assertEqual(event["outcome"], "success")
