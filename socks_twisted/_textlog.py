"""
twistd's text log, written faster: the very lines Twisted's
L{textFileLogObserver<twisted.logger.textFileLogObserver>} writes, to the
same place, at a fraction of the cost.

The server logs two lines a session, and Twisted's text observer was about a
fifth of the server's time per connection: each line's C{log_format} goes
through C{string.Formatter.vformat} in pure Python, and each timestamp
through a time-zone look-up and C{strftime}.  Here the message is written by
L{formatMessage<socks_twisted._logformat.formatMessage>}, and a timestamp's
text is kept for the rest of its second.  An event with a failure is written
by Twisted itself, so every line is the same as before, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)
from twisted.python.components import Componentized

from ._jsonlog import twistdLogFile
from ._logformat import formatMessage

__all__ = ["PREFORMATTED", "classicLogLine", "installTextLogging", "textObserver"]


class _SecondCache:
    """
    The RFC 3339 text of a time, kept for the rest of its second: the text
    names whole seconds only.
    """

    def __init__(self) -> None:
        # One tuple, replaced whole: events can be logged from threads, and
        # a second's text must never be paired with another second.
        self._cached: tuple[int, str] | None = None

    def __call__(self, when: float | None) -> str:
        if when is None:
            return formatTime(when, timeFormatRFC3339)
        second = int(when)
        # Near the next second, or before 1970, rounding to microseconds
        # could tell another second than int(): ask Twisted.
        if when < 0 or when - second >= 0.999999:
            return formatTime(when, timeFormatRFC3339)
        cached = self._cached
        if cached is None or cached[0] != second:
            cached = self._cached = (second, formatTime(second, timeFormatRFC3339))
        return cached[1]


def _system(event: LogEvent) -> str:
    system = event.get("log_system")
    if system is None:
        level = event.get("log_level")
        levelName = "-" if level is None else level.name
        return f"{event.get('log_namespace', '-')}#{levelName}"
    try:
        return str(system)
    except Exception:
        return "UNFORMATTABLE"


#: The key of an event that carries its whole text-log line, already
#: written by a worker process (see L{socks_twisted._workers}): the line is
#: written as it is.
PREFORMATTED = "socks_line"


def classicLogLine(
    event: LogEvent,
    timeText: Callable[[float | None], str] | None = None,
    system: str | None = None,
) -> str | None:
    """
    C{event} as a line of twistd's text log: what
    L{formatEventAsClassicLogText} writes with RFC 3339 timestamps.

    @param timeText: Writes a timestamp (a cache of them, say); Twisted's
        L{formatTime} when C{None}.
    @param system: What the line names in brackets instead of the event's
        own system.
    """
    preformatted = event.get(PREFORMATTED)
    if preformatted is not None:
        return str(preformatted)
    format = timeText or (lambda when: formatTime(when, timeFormatRFC3339))
    if "log_failure" in event:
        if system is not None:
            event = {**event, "log_system": system}
        return formatEventAsClassicLogText(event, formatTime=format)
    message = formatMessage(event)
    if not message:
        return None
    line = f"{format(event.get('log_time'))} [{system or _system(event)}] {message}"
    return line.replace("\n", "\n\t") + "\n"


def textObserver(outFile: IO[Any], system: str | None = None) -> FileLogObserver:
    """
    An observer that writes what twistd's text observer writes to
    C{outFile}, flushing after each line.

    @param system: What every line names in brackets instead of the event's
        own system.
    """
    cache = _SecondCache()
    return FileLogObserver(outFile, lambda event: classicLogLine(event, cache, system))


def installTextLogging(
    application: object, twistdOptions: Any | None
) -> ILogObserver | None:
    """
    Make twistd write its text log through L{textObserver}: set it as the
    application's L{ILogObserver} component, where twistd would have made
    its own text observer on the same file.

    Call it as L{installJSONLogging<socks_twisted._jsonlog.installJSONLogging>}
    is called, before twistd starts logging.

    @return: The observer set, or C{None} where none was: outside twistd,
        or where twistd logs to no file (C{--syslog}, C{--logger}), which
        is left to twistd.
    """
    if twistdOptions is None or not isinstance(application, Componentized):
        return None
    outFile = twistdLogFile(twistdOptions)
    if outFile is None:
        return None
    observer = textObserver(outFile)
    application.setComponent(ILogObserver, observer)
    return observer
