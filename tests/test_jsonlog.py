"""
Tests for C{--log-format json}: L{socks_twisted._jsonlog} in-process, and a
real C{twistd -n socks --log-format json} whose every line of output is a
JSON object.

The helpers at the top (a server started with JSON logs, a loopback echo
server, a blocking SOCKS5 client) are shared with L{tests.test_drain}.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import socketserver
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.application.service import Application
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogPublisher,
    capturedLogs,
)
from twisted.python import usage
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile
from twisted.scripts._twistd_unix import ServerOptions
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted import tap
from socks_twisted._jsonlog import (
    LEADING_KEYS,
    eventAsJSONLine,
    installJSONLogging,
    jsonLinesObserver,
    twistdLogFile,
)
from tests.interop._support import recvExactly, spawnLogged, twistdCommand

#: A Twisted port's announcement: C{"<factory> starting on <port>"}.
_STARTING_ON = re.compile(r"^(\S+) starting on (\d+)$")

#: The class name of the SOCKS factory in its port's announcement.
SOCKS_FACTORY = "SOCKSServerFactory"


def parseLines(output: str) -> list[dict[str, Any]]:
    """
    Parse a JSON-lines log.

    @param output: The log; a last line without its newline (still being
        written) is left out.

    @return: One object per complete line.

    @raise AssertionError: If a line is not one JSON object.
    """
    events = []
    for line in output.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        try:
            event = json.loads(line)
        except ValueError as e:
            raise AssertionError(f"not JSON ({e}): {line!r}\n{output}") from None
        if not isinstance(event, dict):
            raise AssertionError(f"not a JSON object: {line!r}")
        events.append(event)
    return events


@dataclass
class JSONServer:
    """
    A C{twistd -n socks --log-format json} child process.

    @ivar process: The process.
    @ivar logPath: Its standard output and error.
    @ivar port: The port of its (one) SOCKS listener.
    @ivar metricsPort: The port of its metrics endpoint, if it has one.
    """

    process: subprocess.Popen[bytes]
    logPath: str
    port: int
    metricsPort: int | None = None
    signalledAt: list[float] = field(default_factory=list)

    def output(self) -> str:
        """
        @return: What it has written so far.
        """
        with open(self.logPath, "rb") as logFile:
            return logFile.read().decode("utf-8", "replace")

    def events(self) -> list[dict[str, Any]]:
        """
        @return: Every event it has logged so far.
        """
        return parseLines(self.output())

    def signal(self, signum: int) -> None:
        """
        Send it C{signum}, noting when.
        """
        self.signalledAt.append(time.monotonic())
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """
        Wait for it to exit; kill it if it has not after C{timeout} seconds.

        @return: Its exit status.

        @raise AssertionError: If it had to be killed.
        """
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(
                f"still running after {timeout} seconds:\n{self.output()}"
            ) from None

    def _cleanUp(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def startJSONServer(
    testCase: SynchronousTestCase, *args: str, startTimeout: float = 20.0
) -> JSONServer:
    """
    Start C{twistd -n --pidfile= socks --log-format json} listening on an
    ephemeral loopback port, and wait until it listens (every port: the
    SOCKS one, and the metrics one when C{args} asks for it).  The process
    is killed, if still running, when the test ends.

    @param args: More options of C{socks}.

    @return: The running server.
    """
    argv = twistdCommand(
        "-n",
        "--pidfile=",
        "socks",
        "--log-format",
        "json",
        "--port",
        "tcp:0:interface=127.0.0.1",
        *args,
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process, logPath = spawnLogged(testCase, argv, env)
    server = JSONServer(process, logPath, 0)
    testCase.addCleanup(server._cleanUp)
    wantMetrics = "--metrics" in args
    deadline = time.monotonic() + startTimeout
    while True:
        socksPort = metricsPort = None
        for event in server.events():
            match = _STARTING_ON.match(str(event.get("log_text", "")))
            if match is None:
                continue
            if match.group(1) == SOCKS_FACTORY:
                socksPort = int(match.group(2))
            else:
                metricsPort = int(match.group(2))
        if socksPort is not None and (metricsPort is not None or not wantMetrics):
            server.port = socksPort
            server.metricsPort = metricsPort
            return server
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(
                f"{' '.join(argv)} did not listen (status {process.poll()}):\n"
                + server.output()
            )
        time.sleep(0.05)


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        connection = cast(socket.socket, self.request)
        connection.settimeout(30)
        try:
            while data := connection.recv(65536):
                connection.sendall(data)
        except OSError:
            pass


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def startEchoServer(testCase: SynchronousTestCase) -> int:
    """
    Echo every connection's bytes back, on 127.0.0.1, in threads, until the
    test ends.

    @return: Its port.
    """
    server = _EchoServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,))
    thread.daemon = True
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(10)

    testCase.addCleanup(stop)
    return int(server.server_address[1])


def socks5Connect(port: int, targetPort: int, timeout: float = 10.0) -> socket.socket:
    """
    Open a SOCKS5 session (no authentication) to C{127.0.0.1:targetPort}
    through the server on C{127.0.0.1:port}.

    @return: The connected socket, relaying.
    """
    client = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        client.sendall(b"\x05\x01\x00")
        if recvExactly(client, 2) != b"\x05\x00":
            raise AssertionError("no-authentication refused")
        client.sendall(
            b"\x05\x01\x00\x01"
            + socket.inet_aton("127.0.0.1")
            + struct.pack("!H", targetPort)
        )
        reply = recvExactly(client, 10)
        if reply[1] != 0:
            raise AssertionError(f"CONNECT failed: {reply!r}")
    except BaseException:
        client.close()
        raise
    return client


def echoes(client: socket.socket, payload: bytes) -> bool:
    """
    @return: Whether C{payload} sent on C{client} came back.
    """
    client.sendall(payload)
    return recvExactly(client, len(payload)) == payload


def eventsWith(events: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """
    @return: The events whose formatted text starts with C{prefix}.
    """
    return [e for e in events if str(e.get("log_text", "")).startswith(prefix)]


def sessionSummaries(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    @return: The events that sum up a session as it ends.
    """
    return [e for e in events if "bytesFromClient" in e and "duration" in e]


class EventAsJSONLineTests(SynchronousTestCase):
    """
    L{eventAsJSONLine} writes one JSON object a line, its fields typed.
    """

    def line(self, **event: Any) -> dict[str, Any]:
        """
        Encode an event, and check it is one line.

        @return: The line, parsed.
        """
        text = eventAsJSONLine(event)
        self.assertTrue(text.endswith("\n"))
        self.assertNotIn("\n", text[:-1])
        self.assertNotIn("\x1e", text)
        parsed = json.loads(text)
        self.assertIsInstance(parsed, dict)
        return cast(dict[str, Any], parsed)

    def test_typedFields(self) -> None:
        """
        The level is its name, the message is formatted, and the fields keep
        their JSON types.
        """
        parsed = self.line(
            log_time=1700000000.25,
            log_level=LogLevel.info,
            log_namespace="socks",
            log_format="{count} sessions, {ratio} {name} {flag} {none} {items}",
            count=3,
            ratio=0.5,
            name="x",
            flag=True,
            none=None,
            items=[1, "two"],
        )
        self.assertEqual(list(parsed)[: len(LEADING_KEYS)], list(LEADING_KEYS))
        self.assertEqual(parsed["log_level"], "info")
        self.assertEqual(parsed["log_time"], 1700000000.25)
        self.assertEqual(parsed["log_text"], "3 sessions, 0.5 x True None [1, 'two']")
        self.assertEqual(
            (
                parsed["count"],
                parsed["ratio"],
                parsed["name"],
                parsed["flag"],
                parsed["none"],
                parsed["items"],
            ),
            (3, 0.5, "x", True, None, [1, "two"]),
        )

    def test_oddValues(self) -> None:
        """
        Newlines stay escaped inside strings; bytes become text; infinities
        and NaN (not JSON) and objects become their text; the logger and
        source objects are left out; non-string keys too.
        """

        class Thing:
            def __str__(self) -> str:
                return "a thing"

        event: dict[Any, Any] = {
            "log_format": "{text}",
            "log_level": LogLevel.warn,
            "text": "two\nlines\x1b[31m",
            "raw": b"\xff\x00ok",
            "infinite": float("inf"),
            "nan": float("nan"),
            "thing": Thing(),
            "log_logger": Logger(),
            "log_source": Thing(),
            7: "seven",
        }
        parsed = self.line(**{str(k): v for k, v in event.items() if k != 7})
        self.assertEqual(json.loads(eventAsJSONLine(event))["text"], parsed["text"])
        self.assertEqual(parsed["text"], "two\nlines\x1b[31m")
        self.assertEqual(parsed["raw"], "\\xff\x00ok")
        self.assertEqual((parsed["infinite"], parsed["nan"]), ("inf", "nan"))
        self.assertEqual(parsed["thing"], "a thing")
        self.assertNotIn("log_logger", parsed)
        self.assertNotIn("log_source", parsed)
        self.assertNotIn("7", json.loads(eventAsJSONLine(event)))

    def test_failure(self) -> None:
        """
        A failure is its type and message, and its traceback.
        """
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            failure = Failure()
        parsed = self.line(
            log_format="oops", log_level=LogLevel.critical, log_failure=failure
        )
        self.assertEqual(parsed["log_failure"], "ZeroDivisionError: division by zero")
        self.assertIn("ZeroDivisionError", parsed["log_traceback"])

    def test_legacy(self) -> None:
        """
        An event from C{twisted.python.log} keeps its text, without the
        legacy keys that repeat it.
        """
        parsed = self.line(
            log_namespace="log_legacy",
            log_format="{log_text}",
            log_text="Factory starting on 1080",
            message=("Factory starting on 1080",),
            time=1.0,
            system="-",
            isError=0,
            log_system="-",
        )
        self.assertEqual(parsed["log_text"], "Factory starting on 1080")
        for key in ("message", "time", "system", "isError"):
            self.assertNotIn(key, parsed)

    def test_unencodable(self) -> None:
        """
        An event that cannot be encoded at all still gives a line.
        """

        class Broken:
            def __str__(self) -> str:
                raise RuntimeError("no")

        parsed = self.line(log_format="{b}", b=Broken(), log_level=LogLevel.info)
        self.assertEqual(parsed["log_level"], "info")


class ObserverTests(SynchronousTestCase):
    """
    L{jsonLinesObserver} writes one line per event, to text or binary files.
    """

    def test_lines(self) -> None:
        """
        Every event is one line that parses.
        """
        for outFile in (io.StringIO(), io.BytesIO()):
            publisher = LogPublisher(jsonLinesObserver(cast(Any, outFile)))
            log = Logger(namespace="test", observer=publisher)
            log.info("first {n}", n=1)
            log.warn("second\nline {s}", s="x")
            log.error("third")
            value = outFile.getvalue()
            text = value.decode("utf-8") if isinstance(value, bytes) else value
            events = parseLines(text)
            self.assertEqual(len(text.splitlines()), 3)
            self.assertEqual(
                [(e["log_level"], e["log_text"]) for e in events],
                [("info", "first 1"), ("warn", "second\nline x"), ("error", "third")],
            )
            self.assertEqual(events[0]["n"], 1)


class TwistdLogFileTests(SynchronousTestCase):
    """
    L{twistdLogFile} picks the destination twistd would.
    """

    def setUp(self) -> None:
        previous = signal.getsignal(signal.SIGUSR1)
        self.addCleanup(signal.signal, signal.SIGUSR1, previous)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)

    def test_stdout(self) -> None:
        """
        Under C{-n}, without C{--logfile} or with C{--logfile -}: stdout.
        """
        import sys

        self.assertIs(twistdLogFile({"nodaemon": True, "logfile": None}), sys.stdout)
        self.assertIs(twistdLogFile({"nodaemon": True, "logfile": "-"}), sys.stdout)

    def test_none(self) -> None:
        """
        No file for syslog, a custom logger, or a daemon told to use stdout.
        """
        self.assertIsNone(twistdLogFile({"syslog": True}))
        self.assertIsNone(twistdLogFile({"logger": "x.y"}))
        self.assertIsNone(twistdLogFile({"nodaemon": False, "logfile": "-"}))

    def test_logFile(self) -> None:
        """
        C{--logfile} (C{twistd.log} by default for a daemon) is a rotating
        L{LogFile}, and C{SIGUSR1} rotates it.
        """
        path = os.path.abspath(self.mktemp())
        logFile = twistdLogFile({"nodaemon": True, "logfile": path})
        assert isinstance(logFile, LogFile)
        self.addCleanup(logFile.close)
        self.assertEqual(logFile.path, path)
        self.assertNotEqual(signal.getsignal(signal.SIGUSR1), signal.SIG_DFL)
        cwd = os.getcwd()
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        os.chdir(directory)
        self.addCleanup(os.chdir, cwd)
        default = twistdLogFile({"nodaemon": False, "logfile": None})
        assert isinstance(default, LogFile)
        self.addCleanup(default.close)
        self.assertEqual(default.path, os.path.join(directory, "twistd.log"))


class InstallTests(SynchronousTestCase):
    """
    L{installJSONLogging} and C{makeService} set the observer twistd uses.
    """

    def test_component(self) -> None:
        """
        On a twistd application, the observer becomes its L{ILogObserver}.
        """
        application = Application("socks")
        observer = installJSONLogging(application, {"nodaemon": True})
        self.assertIsNotNone(observer)
        self.assertIs(
            cast(Componentized, application).getComponent(ILogObserver), observer
        )
        self.assertTrue(ILogObserver.providedBy(observer))

    def test_outsideTwistd(self) -> None:
        """
        Without twistd's options, or a parent that is no application,
        nothing is set.
        """
        self.assertIsNone(installJSONLogging(Application("socks"), None))
        self.assertIsNone(installJSONLogging(object(), {"nodaemon": True}))

    def test_syslog(self) -> None:
        """
        With C{--syslog} the text observer stays, and a warning says so.
        """
        application = Application("socks")
        with capturedLogs() as events:
            self.assertIsNone(installJSONLogging(application, {"syslog": True}))
        self.assertIsNone(
            cast(Componentized, application).getComponent(ILogObserver, None)
        )
        self.assertIn("--log-format json ignored", events[0]["log_format"])

    def test_makeService(self) -> None:
        """
        C{makeService} with C{--log-format json} sets the JSON observer on
        the application its service joins; with text, the fast text one.
        """
        self.patch(tap, "getrlimit", lambda which: (200, 200))
        self.patch(tap, "setrlimit", lambda which, limits: None)
        for logFormat, isJSON in (("json", True), ("text", False)):
            options = tap.Options()
            options.parseOptions(["--log-format", logFormat])
            twistdOptions = ServerOptions()
            twistdOptions["nodaemon"] = True
            options.parent = twistdOptions
            service = tap.makeService(options)
            application = Application("socks")
            service.setServiceParent(application)
            observer = cast(Componentized, application).getComponent(ILogObserver, None)
            assert isinstance(observer, FileLogObserver)
            self.assertEqual(observer.formatEvent is eventAsJSONLine, isJSON)

    def test_badFormat(self) -> None:
        """
        Only text and json are formats, on the command line and in a
        configuration file.
        """
        options = tap.Options()
        self.assertRaises(
            usage.UsageError, options.parseOptions, ["--log-format", "xml"]
        )
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[server]\nlog-format = "xml"\n')
        options = tap.Options()
        error = self.assertRaises(
            usage.UsageError, options.parseOptions, ["--config", path]
        )
        self.assertIn("log-format", str(error))


class TwistdJSONTests(SynchronousTestCase):
    """
    A real C{twistd -n socks --log-format json} writes only JSON lines, its
    session events with typed fields.
    """

    def test_everyLineParses(self) -> None:
        """
        Twisted's own lines and a session's are JSON objects, one a line;
        the session's summary has its numbers as numbers; the shutdown is
        logged too.
        """
        echoPort = startEchoServer(self)
        server = startJSONServer(self)
        client = socks5Connect(server.port, echoPort)
        try:
            self.assertTrue(echoes(client, b"hello"))
        finally:
            client.close()
        deadline = time.monotonic() + 10
        while not sessionSummaries(server.events()) and (time.monotonic() < deadline):
            time.sleep(0.05)
        server.signal(signal.SIGTERM)
        status = server.wait(20)
        output = server.output()
        self.assertEqual(status, 0, output)
        self.assertTrue(output.endswith("\n"), output)
        events = parseLines(output)
        self.assertEqual(len(events), len(output.splitlines()))
        for event in events:
            for key in ("log_time", "log_level", "log_namespace", "log_text"):
                self.assertIn(key, event)
            self.assertIsInstance(event["log_time"], float)
        self.assertIn("twistd", events[0]["log_text"])
        self.assertEqual(events[-1]["log_text"], "Server Shut Down.")
        [summary] = sessionSummaries(events)
        self.assertEqual(summary["log_level"], "info")
        self.assertEqual(summary["bytesFromClient"], 5)
        self.assertEqual(summary["bytesToClient"], 5)
        self.assertIsInstance(summary["duration"], float)
        self.assertEqual(summary["version"], "5")
        self.assertEqual(summary["target"], f"127.0.0.1:{echoPort}")
        self.assertEqual(summary["reply"], 0)

    def test_logFile(self) -> None:
        """
        With C{--logfile}, the JSON lines go to the file, and nothing to
        standard output.
        """
        path = os.path.abspath(self.mktemp())
        argv = twistdCommand(
            "-n",
            "--pidfile=",
            "--logfile",
            path,
            "socks",
            "--log-format",
            "json",
            "--port",
            "tcp:0:interface=127.0.0.1",
        )
        process, outPath = spawnLogged(self, argv, dict(os.environ))
        server = JSONServer(process, path, 0)
        self.addCleanup(server._cleanUp)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            if os.path.exists(path) and "starting on" in server.output():
                break
            time.sleep(0.05)
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait(20), 0, server.output())
        events = parseLines(server.output())
        self.assertTrue(eventsWith(events, SOCKS_FACTORY + " starting on"))
        with open(outPath) as f:
            self.assertEqual(f.read(), "")
