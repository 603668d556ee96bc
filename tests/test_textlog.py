"""
Tests for L{socks_twisted._textlog} and L{socks_twisted._logformat}: the
fast text log writes what Twisted's text observer writes, for every kind of
event, and twistd is given it where it would have written text to a file.
"""

from __future__ import annotations

import io
import time
from typing import Any, cast

from twisted.application.service import Application
from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
    textFileLogObserver,
    timeFormatRFC3339,
)
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from socks_twisted._logformat import formatMessage
from socks_twisted._textlog import (
    _SecondCache,
    classicLogLine,
    installTextLogging,
    textObserver,
)
from socks_twisted.server._sessionlog import logSession, logSessionStart


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")

    def __repr__(self) -> str:
        raise RuntimeError("no")


class _Attributes:
    name = "inner"

    def method(self) -> str:
        return "called"


def _failure() -> Failure:
    try:
        raise ValueError("broken")
    except ValueError:
        return Failure()


def _events() -> list[LogEvent]:
    """
    Events of every kind the fast path either handles or hands to Twisted.
    """
    now = time.time()
    base: dict[str, Any] = {
        "log_time": now,
        "log_level": LogLevel.info,
        "log_namespace": "tests",
    }
    formats: list[tuple[str, dict[str, Any]]] = [
        ("plain text", {}),
        ("{a} and {b!r} and {c!s} and {d!a}", dict(a=1, b="x", c=b"y", d="é")),
        ("{duration:.3f}s {n:>5} {n:05d}", dict(duration=0.01234, n=42)),
        ("{{literal}} {a}", dict(a="x")),
        ("line one\nline two {a}", dict(a="x")),
        ("{missing}", {}),
        ("{a.name} {a.method()}", dict(a=_Attributes())),
        ("{a[0]}", dict(a=["first"])),
        ("{a:{width}}", dict(a="x", width=4)),
        ("{0}", {}),
        ("{}", {}),
        ("{a!x}", dict(a=1)),
        ("{bad", {}),
        ("{a}", dict(a=_Unprintable())),
        ("{a!r}", dict(a=_Unprintable())),
        ("{a:d}", dict(a="not a number")),
        ("", {}),
    ]
    events: list[LogEvent] = [
        {**base, "log_format": f, **fields} for f, fields in formats
    ]
    events.append({**base, "log_format": b"bytes {a}", "a": 1})
    events.append({**base, "log_format": None})
    events.append({**base})
    events.append({**base, "log_format": "{a}", "a": 1, "log_system": "sys"})
    events.append({**base, "log_format": "{a}", "a": 1, "log_system": _Unprintable()})
    events.append({"log_format": "no time, level nor namespace"})
    events.append({**base, "log_time": None, "log_format": "no time"})
    events.append({**base, "log_format": "oops {a}", "a": 1, "log_failure": _failure()})
    events.append({**base, "log_time": now - now % 1 + 0.9999996, "log_format": "edge"})
    events.append({**base, "log_time": -1.5, "log_format": "before 1970"})
    return events


def what(event: LogEvent) -> str:
    """
    Which event a failed comparison was about (its values may not print).
    """
    return repr(event.get("log_format"))


def _twisted(event: LogEvent) -> str | None:
    return formatEventAsClassicLogText(
        event, formatTime=lambda when: formatTime(when, timeFormatRFC3339)
    )


class FormatMessageTests(SynchronousTestCase):
    """
    L{formatMessage} writes what L{formatEvent} writes.
    """

    def test_sameAsTwisted(self) -> None:
        """
        For every kind of event, the text is Twisted's, character for
        character, asked once and again (from the parsed formats).
        """
        for event in _events():
            for _ in range(2):
                self.assertEqual(
                    formatMessage(event),
                    formatEvent(event),
                    what(event),
                )

    def test_sessionEvents(self) -> None:
        """
        The server's two lines a session are formatted on the fast path.
        """
        events: list[LogEvent] = []
        log = Logger(observer=cast(ILogObserver, events.append))
        logSessionStart(
            log,
            session="1f",
            client="127.0.0.1:5000",
            user=b"us\\er x",
            version="5",
            command="CONNECT",
            target=("example.com", 443),
        )
        logSession(
            log,
            session="1f",
            client="127.0.0.1:5000",
            user=None,
            version="5",
            command="CONNECT",
            target=("::1", 80),
            dialled="[::1]:80",
            outbound="[::1]:40000",
            reply=0,
            outcome="success",
            rule=None,
            bytesFromClient=3,
            bytesToClient=4,
            duration=0.0123456,
            reason="client closed\x1b[31m",
            relay="splice",
        )
        for event in events:
            self.assertEqual(formatMessage(event), formatEvent(event))
        self.assertEqual(
            formatMessage(events[1]),
            "SOCKS session 1f 127.0.0.1:5000 user=- version=5 command=CONNECT "
            "target=[::1]:80 reply=0 outcome=success bytes_up=3 bytes_down=4 "
            "relay=splice duration=0.012s reason=client closed\\x1b[31m",
        )


class ClassicLogLineTests(SynchronousTestCase):
    """
    L{classicLogLine} and L{textObserver} write what twistd's text observer
    writes.
    """

    def test_sameAsTwisted(self) -> None:
        """
        Every kind of event makes the same line, with the timestamps cached
        or not.
        """
        cache = _SecondCache()
        for event in _events():
            expected = _twisted(event)
            self.assertEqual(classicLogLine(event), expected, what(event))
            for _ in range(2):
                self.assertEqual(
                    classicLogLine(event, cache),
                    expected,
                    what(event),
                )

    def test_secondsCached(self) -> None:
        """
        A timestamp's text is the one of its own second, across seconds.
        """
        cache = _SecondCache()
        start = 1_800_000_000.0
        for step in range(0, 40):
            when = start + step * 0.37
            self.assertEqual(cache(when), formatTime(when, timeFormatRFC3339))

    def test_observerWritesTheSame(self) -> None:
        """
        L{textObserver} writes to its file what L{textFileLogObserver}
        writes.
        """
        ours, theirs = io.StringIO(), io.StringIO()
        observer, twisted = textObserver(ours), textFileLogObserver(theirs)
        for event in _events():
            observer(event)
            twisted(event)
        self.assertEqual(ours.getvalue(), theirs.getvalue())


class InstallTextLoggingTests(SynchronousTestCase):
    """
    L{installTextLogging} gives twistd the fast observer where it would have
    written text to a file, and leaves the rest to twistd.
    """

    def test_installed(self) -> None:
        """
        On a twistd application that logs to standard output, the observer
        becomes its L{ILogObserver}.
        """
        application = Application("socks")
        observer = installTextLogging(application, {"nodaemon": True})
        self.assertIsNotNone(observer)
        self.assertIs(
            cast(Componentized, application).getComponent(ILogObserver), observer
        )

    def test_notInstalled(self) -> None:
        """
        Outside twistd, or where twistd logs to syslog or through its own
        logger, nothing is set.
        """
        self.assertIsNone(installTextLogging(Application("socks"), None))
        self.assertIsNone(installTextLogging(object(), {"nodaemon": True}))
        for options in ({"syslog": True}, {"logger": "some.factory"}):
            application = Application("socks")
            self.assertIsNone(installTextLogging(application, options))
            self.assertIsNone(
                cast(Componentized, application).getComponent(ILogObserver, None)
            )
