"""
C{--log-format json}: every log event, Twisted's own included, as one JSON
object a line, written where twistd would have written its text.

Twisted's L{twisted.logger.jsonFileLogObserver} starts each record with an
ASCII record separator (C{\\x1e}, RFC 7464), which line-oriented tools (and
C{json.loads} on a line) do not accept, and writes the level as an object;
this module writes plain JSON lines instead, with the level's name, the
formatted message, and every field of the event that JSON can hold as it is
(numbers stay numbers).

twistd uses a L{twisted.logger.ILogObserver} component set on its
application instead of the observer it would make; L{installJSONLogging}
sets one that writes to twistd's own destination: standard output under
C{twistd -n} without C{--logfile}, else the C{--logfile} (C{twistd.log} by
default) with twistd's L{LogFile} rotation and its C{SIGUSR1} handler.
"""

from __future__ import annotations

import json
import math
import signal
import sys
from collections.abc import Mapping
from types import FrameType
from typing import IO, Any, cast

from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
)
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile

from ._logformat import formatMessage

_log = Logger()

#: The keys written first, in this order, when the event has them.
LEADING_KEYS = ("log_time", "log_level", "log_namespace", "log_text", "log_format")

#: Keys of an event that are not written: the objects behind the logger,
#: and Twisted's bookkeeping.
DROPPED_KEYS = frozenset(
    {"log_logger", "log_source", "log_flattened", "log_trace", "log_observer"}
)

#: Keys of an event from C{twisted.python.log} (C{log_namespace}
#: C{"log_legacy"}) that repeat what the C{log_} keys say.
LEGACY_KEYS = frozenset({"message", "format", "time", "system", "isError", "failure"})


def _plain(value: object) -> Any:
    """
    What C{json} writes for a value it cannot encode itself.

    @param value: The value.

    @return: A log level's name; bytes as text (undecodable bytes escaped);
        anything else as C{str()} shows it.
    """
    if isinstance(value, type(LogLevel.info)):
        return value.name
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, set | frozenset):
        return list(value)
    try:
        return str(value)
    except Exception:
        return object.__repr__(value)


def _finite(value: object) -> Any:
    """
    Replace, all the way down, the floats that JSON cannot hold (infinities,
    NaN) with their text.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _dumps(record: Mapping[str, Any]) -> str:
    """
    @return: C{record} as one line of JSON (no newline inside: strings are
        escaped, and nothing is indented).
    """
    return json.dumps(
        record,
        default=_plain,
        skipkeys=True,
        allow_nan=False,
        separators=(", ", ": "),
    )


def eventAsJSONLine(event: LogEvent) -> str:
    """
    Encode a log event as one line of JSON.

    The object holds C{log_time} (seconds since the epoch), C{log_level}
    (C{"debug"} ... C{"critical"}, or C{null}), C{log_namespace},
    C{log_text} (the message, formatted as the text log shows it) and
    C{log_format}, then every other field of the event: numbers, strings,
    booleans, C{null}, lists and objects as they are; anything else as its
    text.  A failure is written as C{log_failure} (its type and message) and
    C{log_traceback}.

    @param event: The event.

    @return: The JSON text, ending with a newline.
    """
    try:
        record: dict[str, Any] = {}
        for key in LEADING_KEYS:
            if key == "log_text":
                record[key] = formatMessage(event)
            elif key in event:
                record[key] = event[key]
        legacy = event.get("log_namespace") == "log_legacy"
        for key, value in event.items():
            if key in record or key in DROPPED_KEYS or not isinstance(key, str):
                continue
            if legacy and key in LEGACY_KEYS:
                continue
            if key == "log_failure" and isinstance(value, Failure):
                kind = value.type.__name__ if value.type is not None else "Failure"
                record[key] = f"{kind}: {value.getErrorMessage()}"
                record["log_traceback"] = value.getTraceback()
                continue
            record[key] = value
        try:
            line = _dumps(record)
        except ValueError:  # an infinity or a NaN somewhere
            line = _dumps(_finite(record))
    except Exception as e:
        # Never lose the event entirely, nor break the other observers.
        line = json.dumps(
            {
                "log_time": event.get("log_time"),
                "log_level": _plain(event.get("log_level")),
                "log_namespace": str(event.get("log_namespace")),
                "log_text": f"unencodable log event: {e!r}",
            },
            default=_plain,
        )
    return line + "\n"


def jsonLinesObserver(outFile: IO[Any]) -> FileLogObserver:
    """
    An observer that writes each event as one line of JSON to C{outFile},
    flushing after each.

    @param outFile: A text or binary file (binary gets UTF-8).

    @return: The observer.
    """
    return FileLogObserver(outFile, eventAsJSONLine)


def twistdLogFile(twistdOptions: Mapping[str, Any]) -> IO[Any] | None:
    """
    Where twistd would write its text log, as C{UnixAppLogger} decides.

    @param twistdOptions: twistd's own (parsed) options.

    @return: Standard output under C{-n} without C{--logfile} (or with
        C{--logfile -}); else the C{--logfile}, C{twistd.log} by default,
        opened as twistd opens it.  C{None} where twistd does not write to a
        file: C{--syslog}, C{--logger}, or C{--logfile -} for a daemon
        (which twistd refuses).
    """
    if twistdOptions.get("logger") or twistdOptions.get("syslog"):
        return None
    filename = twistdOptions.get("logfile") or ""
    nodaemon = bool(twistdOptions.get("nodaemon"))
    if filename == "-":
        return sys.stdout if nodaemon else None
    if nodaemon and not filename:
        return sys.stdout
    logFile: LogFile = LogFile.fromFullPath(filename or "twistd.log")
    # As twistd does: SIGUSR1 rotates the file, unless it is handled already.
    if not signal.getsignal(signal.SIGUSR1):

        def rotateLog(signum: int, frame: FrameType | None) -> None:
            from twisted.internet import reactor

            IReactorFromThreads(reactor).callFromThread(logFile.rotate)

        signal.signal(signal.SIGUSR1, rotateLog)
    # LogFile writes and flushes like a file, though it is no IO subclass.
    return cast(IO[Any], logFile)


def installJSONLogging(
    application: object, twistdOptions: Mapping[str, Any] | None
) -> ILogObserver | None:
    """
    Make twistd log JSON lines: set, on its application, the
    L{ILogObserver} component it will use instead of its text observer.

    twistd reads the component after C{makeService}'s service joins the
    application and before it starts logging: call this then (from the
    service's C{setServiceParent}).

    @param application: What the service joins; only a twistd
        application (a L{Componentized}) is changed.
    @param twistdOptions: twistd's options (the plugin options' C{parent}),
        or C{None} outside twistd.

    @return: The observer set, or C{None} if none was: outside twistd, or
        where twistd does not log to a file (which is then logged).
    """
    if twistdOptions is None or not isinstance(application, Componentized):
        return None
    outFile = twistdLogFile(twistdOptions)
    if outFile is None:
        if twistdOptions.get("logger") or twistdOptions.get("syslog"):
            _log.warn(
                "--log-format json ignored: twistd logs through {where}, not to a file",
                where="--logger" if twistdOptions.get("logger") else "--syslog",
            )
        return None
    observer = jsonLinesObserver(outFile)
    application.setComponent(ILogObserver, observer)
    return observer
