"""
Tests that L{socks_twisted._wire} stays sans-I/O: it never imports Twisted.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import socks_twisted._wire

_WIRE = Path(socks_twisted._wire.__file__).parent
_ROOT = _WIRE.parent.parent

_CHECK = """
import sys
import socks_twisted._wire
loaded = sorted(name for name in sys.modules if name.startswith("twisted"))
assert not loaded, loaded
print("ok")
"""


class NoTwistedTests(SynchronousTestCase):
    """
    The wire layer knows bytes, not Twisted.
    """

    def test_importLoadsNoTwisted(self) -> None:
        """
        Importing C{socks_twisted._wire} in a fresh interpreter loads no
        module whose name starts with C{twisted}.
        """
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        result = subprocess.run(
            [sys.executable, "-c", _CHECK],
            cwd=str(_ROOT),
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        self.assertEqual(
            (result.returncode, result.stdout.strip()),
            (0, "ok"),
            result.stderr,
        )

    def test_noTwistedImportStatement(self) -> None:
        """
        No module of the package has an C{import twisted...} or C{from
        twisted... import} statement, at any level (not even under
        C{TYPE_CHECKING} or inside a function).
        """
        sources = sorted(_WIRE.glob("**/*.py"))
        self.assertIn(_WIRE / "__init__.py", sources)
        offending = []
        for source in sources:
            tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                else:
                    continue
                for name in names:
                    if name == "twisted" or name.startswith("twisted."):
                        offending.append(f"{source.name}:{node.lineno}: {name}")
        self.assertEqual(offending, [])
