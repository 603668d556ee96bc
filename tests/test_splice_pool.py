"""
L{PipePool}: the pipes the splicing relay borrows while bytes are in
flight.
"""

from __future__ import annotations

import fcntl
import os

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from socks_twisted import _splice


class PipePoolTests(SynchronousTestCase):
    """
    Pipes are taken, given back, kept up to a bound, and closed.
    """

    def setUp(self) -> None:
        if not _splice.AVAILABLE:
            raise SkipTest("this platform has no splice(2)")

    def test_reuse(self) -> None:
        """
        A pipe given back is taken again; C{inUse} and C{idle} count them.
        """
        pool = _splice.PipePool(keep=2)
        self.addCleanup(pool.clear)
        pipe = pool.take()
        self.assertEqual((pool.inUse, pool.idle), (1, 0))
        pool.give(pipe)
        self.assertEqual((pool.inUse, pool.idle), (0, 1))
        self.assertEqual(pool.take(), pipe)

    def test_keepsABoundedNumber(self) -> None:
        """
        Beyond C{keep} idle pipes, a pipe given back is closed.
        """
        pool = _splice.PipePool(keep=1)
        self.addCleanup(pool.clear)
        first, second = pool.take(), pool.take()
        pool.give(first)
        pool.give(second)
        self.assertEqual(pool.idle, 1)
        self.assertRaises(OSError, os.fstat, second[0])

    def test_discardAndClear(self) -> None:
        """
        A pipe that may hold bytes is closed, not kept; C{clear} closes
        every idle one.
        """
        pool = _splice.PipePool()
        pipe = pool.take()
        pool.discard(pipe)
        self.assertEqual(pool.inUse, 0)
        self.assertRaises(OSError, os.fstat, pipe[1])
        kept = pool.take()
        pool.give(kept)
        pool.clear()
        self.assertEqual(pool.idle, 0)
        self.assertRaises(OSError, os.fstat, kept[0])

    def test_sizeRefused(self) -> None:
        """
        A pipe whose size cannot be raised (the per-user budget spent) is
        used at its default size.
        """

        def refuse(fd: int, command: int, argument: int = 0) -> int:
            if command == fcntl.F_SETPIPE_SZ:
                raise PermissionError("over the budget")
            return 0

        self.patch(fcntl, "fcntl", refuse)
        pool = _splice.PipePool()
        pipe = pool.take()
        self.addCleanup(pool.discard, pipe)
        self.assertEqual(pool.inUse, 1)
