# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
The client example of C{docs/client.rst} (and of C{README.rst}, once it
shows it) runs as written: the code block is executed, and its C{main}
called against a local echo server through our own server.
"""

from __future__ import annotations

import io
import os
import re
import sys
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import SkipTest

from ._loopback import asyncTest, listenEcho, reactor, withTimeout
from ._plugins import PROJECT_ROOT
from .test_ourserver import OurServerTestCase

#: What marks the example in docs/client.rst.
MARKER = ".. README example"


def pythonBlocks(text: str) -> list[str]:
    """
    The code of every C{.. code-block:: python} in reST C{text}, dedented.
    """
    blocks = []
    pattern = re.compile(r"^\.\. code-block:: python\n\n((?:(?:   .*)?\n)+)", re.M)
    for match in pattern.finditer(text):
        lines = match.group(1).splitlines()
        blocks.append("\n".join(line[3:] for line in lines).strip() + "\n")
    return blocks


def docsExample() -> str:
    """
    The first Python block after L{MARKER} in C{docs/client.rst}.
    """
    with open(os.path.join(PROJECT_ROOT, "docs", "client.rst")) as f:
        text = f.read()
    after = text[text.index(MARKER) :]
    return pythonBlocks(after)[0]


class ExampleTests(OurServerTestCase):
    """
    The documented example works.
    """

    async def runExample(self, code: str) -> str:
        """
        Execute C{code} as a module (not as C{__main__}), then await its
        C{main(reactor, host, port, proxyPort)} against an echo server through
        our server; return what it printed.
        """
        _, echoPort = await listenEcho(self)
        port, _ = await self.startServer()
        namespace: dict[str, Any] = {"__name__": "socks_twisted_example"}
        exec(compile(code, "<example>", "exec"), namespace)
        output = io.StringIO()
        self.patch(sys, "stdout", output)
        await withTimeout(
            ensureDeferred(namespace["main"](reactor, "127.0.0.1", echoPort, port)),
            "the example",
        )
        return output.getvalue()

    def test_lines(self) -> None:
        """
        The example is short: at most 15 lines of code.
        """
        lines = [line for line in docsExample().splitlines() if line.strip()]
        self.assertLessEqual(len(lines), 15, lines)

    @asyncTest
    async def test_docs(self) -> None:
        """
        The example in C{docs/client.rst} prints the target's address and the
        first line the target sent back.
        """
        printed = await self.runExample(docsExample())
        self.assertRegex(
            printed,
            r"^IPv4Address\(type='TCP', host='127\.0\.0\.1', port=\d+\) "
            r"b'HEAD / HTTP/1\.0'\n$",
        )

    @asyncTest
    async def test_readme(self) -> None:
        """
        The README's client example, the same code, works too.
        """
        with open(os.path.join(PROJECT_ROOT, "README.rst")) as f:
            readme = f.read()
        blocks = [b for b in pythonBlocks(readme) if "socks_twisted.client" in b]
        if not blocks:
            message = "README.rst does not show the client example yet"
            if os.environ.get("CI") == "true":
                self.fail(message)
            raise SkipTest(message)
        for block in blocks:
            printed = await self.runExample(block)
            self.assertIn("b'HEAD / HTTP/1.0'", printed)
