"""
Log messages formatted as Twisted formats them, faster: a C{log_format} is
parsed once, and its fields are filled in with C{format} directly instead of
through C{string.Formatter.vformat} in pure Python.

Anything this does not cover exactly (a field with attributes, indices or
calls, a nested format spec, a missing field, a flattened event, a format
that is not text) is formatted by Twisted itself, so the text is the same,
character for character.
"""

from __future__ import annotations

from collections.abc import Callable
from string import Formatter

from twisted.logger import LogEvent, formatEvent

__all__ = ["formatMessage"]

#: A parsed format: its literal text and fields, or C{None} when some field
#: needs Twisted's own formatting.
_Parsed = tuple[tuple[str, str | None, str, str | None], ...] | None

#: How many distinct formats are kept parsed; formats are constants in the
#: code, so this is only a bound against a program that makes them up.
_MAX_FORMATS = 1024

_parsedFormats: dict[str, _Parsed] = {}

_CONVERSIONS: dict[str | None, Callable[[object], object] | None] = {
    None: None,
    "s": str,
    "r": repr,
    "a": ascii,
}


def _parse(logFormat: str) -> _Parsed:
    """
    Parse C{logFormat}, or say that the fast path cannot format it.
    """
    parts = []
    try:
        for literal, name, spec, conversion in Formatter().parse(logFormat):
            if name is not None and (
                not name.isidentifier()
                or "{" in (spec or "")
                or conversion not in _CONVERSIONS
            ):
                return None
            parts.append((literal, name, spec or "", conversion))
    except ValueError:  # unbalanced braces: Twisted says so in its own words
        return None
    return tuple(parts)


def _parsed(logFormat: str) -> _Parsed:
    try:
        return _parsedFormats[logFormat]
    except KeyError:
        pass
    if len(_parsedFormats) >= _MAX_FORMATS:
        _parsedFormats.clear()
    parsed = _parsedFormats[logFormat] = _parse(logFormat)
    return parsed


def formatMessage(event: LogEvent) -> str:
    """
    The message of C{event}, as L{twisted.logger.formatEvent} writes it.
    """
    logFormat = event.get("log_format")
    if not isinstance(logFormat, str) or "log_flattened" in event:
        return formatEvent(event)
    parsed = _parsed(logFormat)
    if parsed is None:
        return formatEvent(event)
    pieces: list[str] = []
    unformattable = False
    try:
        for literal, name, spec, conversion in parsed:
            pieces.append(literal)
            if name is not None:
                value = event[name]
                convert = _CONVERSIONS[conversion]
                if convert is not None:
                    value = convert(value)
                pieces.append(format(value, spec))
    except Exception:
        # A missing field, a value that cannot be shown: Twisted's text for
        # an unformattable event, not ours; asked outside this handler, so
        # that the traceback it quotes is not chained to this one.
        unformattable = True
    if unformattable:
        return formatEvent(event)
    return "".join(pieces)
