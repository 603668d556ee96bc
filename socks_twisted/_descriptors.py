"""
How many sessions the open-file limit (C{RLIMIT_NOFILE}) allows, raising its
soft value when that is enough.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass

#: Descriptors one session holds: the client's connection, and its target
#: connection, BIND listener or UDP socket.
PER_SESSION = 2

#: Descriptors kept for everything but sessions: listening ports, log files,
#: DNS queries, the reactor's own.
MARGIN = 64

GetRLimit = Callable[[int], tuple[int, int]]
SetRLimit = Callable[[int, tuple[int, int]], None]


@dataclass(frozen=True)
class SessionBudget:
    """
    What the open-file limit allows.

    @ivar requested: The sessions asked for (C{--max-sessions}).
    @ivar sessions: The sessions that fit; at most C{requested}, possibly 0.
    @ivar soft: The soft limit in force afterwards (C{RLIM_INFINITY} for
        none).
    @ivar hard: The hard limit.
    @ivar raisedFrom: The soft limit before it was raised, or C{None} if it
        was left alone.
    """

    requested: int
    sessions: int
    soft: int
    hard: int
    raisedFrom: int | None = None

    @property
    def lowered(self) -> bool:
        """
        Whether fewer sessions fit than were asked for.
        """
        return self.sessions < self.requested


def descriptorsNeeded(sessions: int, margin: int = MARGIN) -> int:
    """
    @param sessions: Sessions open at once.
    @param margin: Descriptors kept for everything else.

    @return: The descriptors they need.
    """
    return sessions * PER_SESSION + margin


def _allows(limit: int, needed: int) -> bool:
    """
    @return: Whether a limit (possibly C{RLIM_INFINITY}) allows C{needed}
        descriptors.
    """
    return limit == resource.RLIM_INFINITY or needed <= limit


def budgetSessions(
    requested: int,
    getrlimit: GetRLimit = resource.getrlimit,
    setrlimit: SetRLimit = resource.setrlimit,
    margin: int = MARGIN,
) -> SessionBudget:
    """
    Fit C{requested} sessions into the open-file limit: raise the soft limit
    as far as they need, up to the hard limit; if even the hard limit is too
    low, raise the soft limit to it and allow only the sessions that fit.

    @param requested: The sessions asked for.
    @param getrlimit: Reads a resource limit (C{resource.getrlimit}).
    @param setrlimit: Sets a resource limit (C{resource.setrlimit}).
    @param margin: Descriptors kept for everything but sessions.

    @return: What the limit allows, once adjusted.
    """
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    needed = descriptorsNeeded(requested, margin)
    if _allows(soft, needed):
        return SessionBudget(requested, requested, soft, hard)
    target = needed if _allows(hard, needed) else hard
    raisedFrom: int | None = soft
    try:
        setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        # Some systems cap a process below its hard limit (macOS:
        # kern.maxfilesperproc); the old soft limit still holds then.
        raisedFrom = None
    else:
        soft = target
    if _allows(soft, needed):
        sessions = requested
    else:
        sessions = max(0, (soft - margin) // PER_SESSION)
    return SessionBudget(requested, sessions, soft, hard, raisedFrom)
