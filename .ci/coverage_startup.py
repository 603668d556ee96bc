"""
Measure coverage in every Python process of a CI test run.

.ci/run copies this file into the virtualenv's site-packages as
C{_socks_twisted_coverage.py} and adds a C{.pth} file that imports it, so it
runs when any interpreter of that virtualenv starts: the trial process, the
C{twistd socks} servers the tests start, and their other Python children.  It
does nothing unless C{COVERAGE_PROCESS_START} names a configuration file,
which .ci/run sets for the test command only.

coverage.py saves a process's data at exit, but a twistd stopped by
C{SIGTERM} does not exit: once it has shut down it restores the signal's
default action and sends the signal to itself again
(C{twisted.application.app._exitWithSignal}), so that its parent sees it die
of C{SIGTERM}; no atexit handler runs then.  C{os.kill} is therefore wrapped
to save the data first when a process is about to end itself that way.
"""

import os
import signal


def _start() -> None:
    if not os.environ.get("COVERAGE_PROCESS_START"):
        return
    try:
        import coverage
    except ImportError:
        # An interpreter of another virtualenv that inherited the variable.
        return
    # coverage >= 7.10 has a .pth file of its own that does this too; whichever
    # runs first starts coverage, the other call does nothing.
    coverage.process_startup()
    cov = getattr(coverage.process_startup, "coverage", None)
    if cov is None:
        return

    realKill = os.kill
    fatal = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}

    def kill(pid: int, sig: int) -> None:
        if (
            pid == os.getpid()
            and sig in fatal
            and signal.getsignal(sig) == signal.SIG_DFL
        ):
            try:
                cov.stop()
                cov.save()
            except Exception:
                pass  # the process must still end as asked
        realKill(pid, sig)

    os.kill = kill


_start()
