"""
What the benchmarks share: running servers as child processes on loopback
(this repository's server as an operator runs it, with twistd from the
repository root), waiting until they listen, stopping them, and a line that
describes the machine.

The benchmarks are run as scripts (C{python bench/relay_throughput.py}), with
this directory on C{sys.path}, so they import this module as C{_servers}.
"""

from __future__ import annotations

import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"

#: The log line Twisted's TCP port writes once it listens.
STARTING_ON = re.compile(r" starting on (\d+)\b")

#: Program text that runs twistd with this interpreter.
TWISTD_MAIN = "from twisted.scripts.twistd import run; run()"


def ourServerCommand() -> tuple[list[str], dict[str, str]]:
    """
    The command line and environment that run our server with twistd on a
    free loopback port.  Run it from L{REPOSITORY}, so that this checkout's
    plugin (in twisted/plugins/) is the "socks" that twistd runs; its port
    is then in its log (see L{startedPort}).
    """
    argv = [sys.executable, "-c", TWISTD_MAIN, "-n", "--pidfile="]
    argv += ["socks", "--port", f"tcp:0:interface={LOOPBACK}"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY), *filter(None, [env.get("PYTHONPATH")])]
    )
    return argv, env


def startedPort(logPath: Path) -> int | None:
    """
    The port a Twisted server's log at C{logPath} says it listens on, if it
    says so yet.
    """
    found = STARTING_ON.search(logPath.read_text(errors="replace"))
    return int(found.group(1)) if found else None


def stopProcess(process: subprocess.Popen[bytes]) -> None:
    """
    End a child we started: SIGTERM, a bounded wait, then SIGKILL.
    """
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serving(
    argv: list[str],
    logPath: Path,
    ready: Callable[[], int | None],
    what: str,
    error: type[Exception] = RuntimeError,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: int | None = None,
    timeout: float = 20.0,
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """
    Run C{argv}, its output going to C{logPath}, until C{ready} gives the
    port it listens on; yield the process and that port, and stop the
    process afterwards.

    @param what: Names the server in the error.
    @raise error: The process exited, or C{timeout} seconds passed, before it
        was ready; the message ends with the end of its log.
    """
    with open(logPath, "wb") as log:
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=stdin, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + timeout
        while (port := ready()) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = logPath.read_text(errors="replace")[-2000:]
                raise error(
                    f"{what} did not start (exit status {process.poll()}):\n{tail}"
                )
            time.sleep(0.05)
        yield process, port
    finally:
        stopProcess(process)


def versions() -> str:
    """
    The versions of Python, Twisted and the system, and the number of CPUs.
    """
    try:
        import twisted

        twistedVersion = twisted.__version__
    except ImportError:
        twistedVersion = "not importable"
    return (
        f"Python {platform.python_version()}, Twisted {twistedVersion}, "
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs"
    )
