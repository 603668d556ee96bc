"""
What the benchmarks share: running servers as child processes on loopback
(this repository's server as an operator runs it, with twistd from the
repository root), waiting until they listen, stopping them, and a line that
describes the machine.

It also starts each proxy the benchmarks compare (L{startProxy}): ours
(from this checkout or another one), Dante (C{danted}) and microsocks, all on
127.0.0.1 and, for the third-party servers, configured to reach 127.0.0.0/8
only.

The benchmarks are run as scripts (C{python bench/relay_throughput.py}), with
this directory on C{sys.path}, so they import this module as C{_servers}.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"

#: The log line Twisted's TCP port writes once it listens.
STARTING_ON = re.compile(r" starting on (\d+)\b")

#: Program text that runs twistd with this interpreter.
TWISTD_MAIN = "from twisted.scripts.twistd import run; run()"


def ourServerCommand(
    root: Path = REPOSITORY, extraArguments: Sequence[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """
    The command line and environment that run our server with twistd on a
    free loopback port, as an operator runs it.  Run it from C{root}, a
    checkout (this one by default): its package and its plugin (in
    twisted/plugins/) come first on C{PYTHONPATH}, so that its "socks" is
    the one twistd runs; the port is then in its log (see L{startedPort}).

    @param extraArguments: More options for C{twistd socks}, after the port.
    """
    argv = [sys.executable, "-c", TWISTD_MAIN, "-n", "--pidfile="]
    argv += ["socks", "--port", f"tcp:0:interface={LOOPBACK}", *extraArguments]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]
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


def findProgram(name: str) -> str | None:
    """
    An installed program, looking in the sbin directories too.
    """
    path = os.environ.get("PATH", os.defpath) + ":/usr/local/sbin:/usr/sbin:/sbin"
    return shutil.which(name, path=path)


#: The program each third-party peer needs.
PEER_PROGRAMS = {"microsocks": "microsocks", "dante": "danted"}


def freePort() -> int:
    """
    A loopback port that was free a moment ago.
    """
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> int | None:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return port
    except OSError:
        return None


def danteConfig(port: int, logPath: Path) -> str:
    """
    A C{danted.conf} for Dante on 127.0.0.1:C{port}: no authentication,
    CONNECT and UDP ASSOCIATE from and to 127.0.0.0/8 only.
    """
    users = "user.privileged: root\nuser.unprivileged: nobody\n"
    return f"""\
logoutput: {logPath}
internal: {LOOPBACK} port = {port}
external: {LOOPBACK}
clientmethod: none
socksmethod: none
{users if os.geteuid() == 0 else ""}
client pass {{
    from: 127.0.0.0/8 to: 127.0.0.0/8
    log: error
}}
socks pass {{
    from: 127.0.0.0/8 to: 127.0.0.0/8
    command: connect udpassociate
    log: error
}}
socks pass {{
    from: 127.0.0.0/8 to: 127.0.0.0/8
    command: udpreply
    log: error
}}
"""


@dataclass
class Proxy:
    """
    A running proxy process.
    """

    name: str
    process: subprocess.Popen[bytes]
    port: int
    logPath: Path


#: The names of our server's configurations (this checkout's, another's).
OURS = ("socks-twisted", "socks-twisted-baseline", "socks-twisted (base)")


@contextmanager
def startProxy(
    name: str,
    directory: Path,
    root: Path = REPOSITORY,
    serverArguments: Sequence[str] = (),
) -> Iterator[Proxy]:
    """
    Start the proxy called C{name} on loopback, logging into C{directory},
    and stop it afterwards.

    @param name: C{microsocks}, C{dante}, or one of L{OURS}: our server, run
        from the checkout C{root} with C{serverArguments} added to its
        command line.
    """
    logPath = directory / f"{name.replace(' ', '-')}.log"
    env: dict[str, str] | None = None
    cwd: Path | None = None
    port: int | None = None
    if name in OURS:
        argv, env = ourServerCommand(root, serverArguments)
        cwd = root
    elif name == "microsocks":
        program = findProgram("microsocks")
        assert program is not None
        port = freePort()
        argv = [program, "-i", LOOPBACK, "-p", str(port)]
    elif name == "dante":
        program = findProgram("danted")
        assert program is not None
        port = freePort()
        config = directory / "danted.conf"
        config.write_text(danteConfig(port, directory / "danted.log"))
        argv = [program, "-f", str(config), "-N", "1"]
        argv += ["-p", str(directory / "danted.pid")]
    else:
        raise ValueError(name)

    def ready() -> int | None:
        if port is None:
            return startedPort(logPath)
        return _accepts(port)

    server = serving(
        argv,
        logPath,
        ready,
        name,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    with server as (process, listening):
        yield Proxy(name, process, listening, logPath)


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
