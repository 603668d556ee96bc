"""
The supervisor's end of a worker (L{WorkerProtocol}): what the worker
writes becomes the supervisor's log.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    eventAsJSON,
    globalLogPublisher,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted._textlog import PREFORMATTED
from socks_twisted._workers import WorkerProtocol, _NoConnections


class WorkerProtocolTests(SynchronousTestCase):
    """
    Lines from a worker's standard output and error reach the log, tagged
    with the worker's number, whatever pieces the pipe delivers them in.
    """

    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.ended: list[tuple[WorkerProtocol, Failure]] = []

    def worker(self, textLog: bool) -> WorkerProtocol:
        return WorkerProtocol(
            3, lambda protocol, reason: self.ended.append((protocol, reason)), textLog
        )

    def fromWorker(self) -> list[LogEvent]:
        return [event for event in self.events if event.get("worker") == 3]

    def test_textLines(self) -> None:
        """
        Finished text lines, split anywhere by the pipe, are logged as they
        are; blank lines are not.
        """
        worker = self.worker(textLog=True)
        worker.outReceived(b"2026-01-01T00:00:00+0000 [worker 3] one\n\n2026-01-")
        worker.outReceived(b"01T00:00:01+0000 [worker 3] two\n")
        lines = [event[PREFORMATTED] for event in self.fromWorker()]
        self.assertEqual(
            lines,
            [
                "2026-01-01T00:00:00+0000 [worker 3] one\n",
                "2026-01-01T00:00:01+0000 [worker 3] two\n",
            ],
        )

    def test_jsonEvents(self) -> None:
        """
        JSON events are logged as events of their own, with the worker's
        number and system; a line that is not JSON is logged as text.
        """
        worker = self.worker(textLog=False)
        event: dict[str, Any] = {
            "log_format": "hello {who}",
            "who": "world",
            "log_time": 1.0,
            "log_level": LogLevel.info,
            "log_namespace": "socks_twisted.server._session",
        }
        worker.outReceived(eventAsJSON(event).encode() + b"\nnot json\n")
        [relayed, raw] = self.fromWorker()
        self.assertEqual(relayed["who"], "world")
        self.assertEqual(relayed["log_system"], "worker 3")
        self.assertEqual(raw["line"], b"not json")

    def test_standardError(self) -> None:
        """
        What a worker writes to its standard error (a start-up failure) is
        logged as errors, a line each.
        """
        self.worker(textLog=True).errReceived(b"--port x: bad\n\nsecond\n")
        self.assertEqual(
            [event["line"] for event in self.fromWorker()], ["--port x: bad", "second"]
        )

    def test_ended(self) -> None:
        """
        The worker's end is reported with the protocol and the reason.
        """
        worker = self.worker(textLog=True)
        reason = Failure(Exception("gone"))
        worker.processEnded(reason)
        self.assertEqual(self.ended, [(worker, reason)])

    def test_supervisorNeverAccepts(self) -> None:
        """
        The factory the supervisor listens with builds nothing.
        """
        self.assertIsNone(_NoConnections().buildProtocol(None))
