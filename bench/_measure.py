"""
What the benchmarks measure the same way: a process tree's CPU time, resident
memory and open file descriptors, read from C{/proc} (Linux only).

A proxy's figures are summed over its whole process tree, since Dante does
its work in forked children.  The benchmarks are run as scripts, with this
directory on C{sys.path}, so they import this module as C{_measure}.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CPUTimes:
    """
    User and system CPU seconds.
    """

    user: float
    system: float

    @property
    def total(self) -> float:
        """
        User plus system seconds.
        """
        return self.user + self.system

    def __sub__(self, other: CPUTimes) -> CPUTimes:
        return CPUTimes(self.user - other.user, self.system - other.system)


def _readStat(pid: int) -> tuple[int, int, int, int, int] | None:
    """
    C{(ppid, utime, stime, cutime, cstime)} of C{pid}, in clock ticks, or
    C{None} if it is gone.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; every
    # field after its closing parenthesis is a number or a state letter.
    fields = data[data.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state), so field N is fields[N - 3].
    return (
        int(fields[1]),
        int(fields[11]),
        int(fields[12]),
        int(fields[13]),
        int(fields[14]),
    )


def processTree(root: int) -> list[int]:
    """
    C{root} and all its living descendants.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _readStat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def treeCPU(root: int) -> CPUTimes:
    """
    The CPU time of C{root}'s process tree: every living process's own
    time, plus the root's reaped children.
    """
    user = system = 0
    for pid in processTree(root):
        stat = _readStat(pid)
        if stat is None:
            continue
        user += stat[1]
        system += stat[2]
        if pid == root:
            user += stat[3]
            system += stat[4]
    return CPUTimes(user / CLOCK_TICKS, system / CLOCK_TICKS)


@dataclass(frozen=True)
class Footprint:
    """
    The resident memory and open file descriptors of a process tree.

    @ivar rssKiB: The sum of the processes' C{VmRSS}, in KiB (pages shared
        between processes, as between Dante's forked children, count once
        per process).
    @ivar fds: The sum of the processes' open file descriptors.
    @ivar processes: How many processes the tree had.
    """

    rssKiB: int
    fds: int
    processes: int


def _vmRSS(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return 0  # a zombie has no VmRSS line


def _fdCount(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def treeFootprint(root: int) -> Footprint:
    """
    The memory and descriptors of C{root}'s process tree, from
    C{/proc/PID/status} (C{VmRSS}) and C{/proc/PID/fd}.
    """
    rss = fds = processes = 0
    for pid in processTree(root):
        resident, count = _vmRSS(pid), _fdCount(pid)
        if resident is None or count is None:
            continue  # gone meanwhile
        rss += resident
        fds += count
        processes += 1
    return Footprint(rss, fds, processes)
