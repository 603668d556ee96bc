"""
Make the project's C{twisted/plugins} directory part of the plugin scan, as
an installed package would be.
"""

from __future__ import annotations

import os

import twisted.plugins
from twisted.trial.unittest import SynchronousTestCase

#: The project's root directory (the one holding C{socks_twisted}).
PROJECT_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)

#: Where the dropin lives.
PLUGIN_DIRECTORY = os.path.join(PROJECT_ROOT, "twisted", "plugins")


def ensureProjectPlugins(testCase: SynchronousTestCase) -> None:
    """
    If the plugin path does not already include the project's dropin
    directory (the package is not installed, or installed in a way that
    leaves the dropin out), add it for the duration of the test.  The scan
    itself is Twisted's own, unchanged.
    """
    paths = [os.path.abspath(p) for p in twisted.plugins.__path__]
    if PLUGIN_DIRECTORY not in paths:
        testCase.patch(
            twisted.plugins, "__path__", [*twisted.plugins.__path__, PLUGIN_DIRECTORY]
        )
