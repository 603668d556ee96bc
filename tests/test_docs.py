# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
Every Python code block in C{README.rst} and C{docs/*.rst} either runs, as
written, in a test here, or says in the docs source that it is a fragment.

A block is a C{.. code-block:: python} directive (C{code} and C{sourcecode}
count too).  A fragment carries the option C{:class: fragment}; it must still
compile (top-level C{await} allowed, as in an C{async def}) and its imports
must work.  Every other block must be one of the kinds L{DocsTests} knows how
to run:

  - a client example, defining C{async def main(reactor, host, port,
    proxyPort)}: it is executed in a child Python process, and its C{main}
    awaited against an echo server on loopback through our own server;
  - a server example, building a C{SOCKSServerFactory} and calling
    C{reactor.run()}: the block is run unchanged in a child Python process,
    and a SOCKS5 CONNECT through it must reach an echo server;
  - a programmer's example, defining C{async def main(reactor, proxyURL,
    ...)} (C{docs/programmers.rst}): it is executed in a child Python
    process, and its C{main} awaited with the URL of our own server and, for
    each further parameter it names, the address of a loopback server this
    module starts (L{PROGRAMMER_ARGUMENTS}); what it prints must match what
    that server answers.

A block of any other kind fails L{DocsTests.test_everyBlockIsTested}: mark it
as a fragment or teach this module to run it.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
    wrapServerTLS,
)
from twisted.internet.protocol import Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.names import dns, hosts
from twisted.names.server import DNSServerFactory
from twisted.trial.unittest import SkipTest
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from .client._loopback import (
    LOOPBACK,
    CertificateAuthority,
    asyncTest,
    listen,
    listenEcho,
    reactor,
    waitUntil,
    withTimeout,
)
from .client.test_ourserver import OurServerTestCase

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: How long a child process may take, in seconds.
CHILD_TIMEOUT = 30.0

_DIRECTIVE = re.compile(
    r"^(?P<indent>[ \t]*)\.\. (?:code-block|code|sourcecode)::[ \t]*python3?[ \t]*\n"
)
_OPTION = re.compile(r"^[ \t]+:(?P<name>[\w-]+):[ \t]*(?P<value>.*)$")


@dataclass(frozen=True)
class Block:
    """
    One Python code block of a reST file.

    @ivar path: The file, relative to the project root.
    @ivar line: The line of its directive, from 1.
    @ivar code: Its code, dedented.
    @ivar classes: The values of its C{:class:} option.
    """

    path: str
    line: int
    code: str
    classes: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def fragment(self) -> bool:
        return "fragment" in self.classes

    @property
    def kind(self) -> str | None:
        """
        C{"client"}, C{"server"}, or L{None} for a block no test here runs.
        """
        if re.search(
            r"^async def main\(reactor, host\b.*\bport\b.*\bproxyPort\b",
            self.code,
            re.M,
        ):
            return "client"
        if "SOCKSServerFactory(" in self.code and "reactor.run()" in self.code:
            return "server"
        if re.search(r"^async def main\(reactor, proxyURL\b", self.code, re.M):
            return "programmer"
        return None

    @property
    def parameters(self) -> tuple[str, ...]:
        """
        The names of the parameters of its C{async def main}, if any.
        """
        for node in ast.parse(self.code).body:
            if isinstance(node, ast.AsyncFunctionDef) and node.name == "main":
                return tuple(argument.arg for argument in node.args.args)
        return ()


def blocksOf(path: Path) -> list[Block]:
    """
    The Python code blocks of the reST file at C{path}.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        match = _DIRECTIVE.match(lines[index] + "\n")
        if match is None:
            index += 1
            continue
        start = index
        indent = len(match.group("indent").expandtabs())
        classes: list[str] = []
        index += 1
        while index < len(lines):
            option = _OPTION.match(lines[index])
            if option is None:
                break
            if option.group("name") == "class":
                classes.extend(option.group("value").split())
            index += 1
        body = []
        while index < len(lines):
            line = lines[index]
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                break
            body.append(line)
            index += 1
        code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        blocks.append(
            Block(str(path.relative_to(PROJECT_ROOT)), start + 1, code, tuple(classes))
        )
    return blocks


def documents() -> list[Path]:
    """
    README.rst and every C{.rst} file under C{docs/}.
    """
    docs = sorted((PROJECT_ROOT / "docs").rglob("*.rst"))
    return [PROJECT_ROOT / "README.rst", *docs]


def allBlocks() -> list[Block]:
    return [block for path in documents() for block in blocksOf(path)]


def childEnvironment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


#: Runs a client example in a child: executes the block (not as
#: C{__main__}), then awaits C{main(reactor, host, port, proxyPort)}.
CLIENT_RUNNER = """\
import sys
from twisted.internet import defer, task
code, where, host, port, proxyPort = sys.argv[1:]
namespace = {"__name__": "socks_twisted_docs_example"}
exec(compile(code, where, "exec"), namespace)
task.react(lambda reactor: defer.ensureDeferred(
    namespace["main"](reactor, host, int(port), int(proxyPort))))
"""


#: Runs a programmer's example in a child: executes the block (not as
#: C{__main__}), then awaits C{main(reactor, **arguments)}, the arguments
#: given as a JSON object.
PROGRAMMER_RUNNER = """\
import json, sys
from twisted.internet import defer, task
code, where, arguments = sys.argv[1:]
namespace = {"__name__": "socks_twisted_docs_example"}
exec(compile(code, where, "exec"), namespace)
task.react(lambda reactor: defer.ensureDeferred(
    namespace["main"](reactor, **json.loads(arguments))))
"""

#: The programmers' examples this module knows, by the parameters of their
#: C{main}, and what each must print given L{PROGRAMMER_ARGUMENTS}.
PROGRAMMER_EXAMPLES = {
    ("reactor", "proxyURL", "httpURL"): "200 hello over http\n",
    ("reactor", "proxyURL", "httpsURL", "caFile"): "200 hello over https\n",
    ("reactor", "proxyURL"): "b'ping' b'pong'\n",
    (
        "reactor",
        "proxyURL",
        "dnsServer",
        "dnsPort",
        "name",
    ): "www.example.test 192.0.2.7\n",
}

#: The parameters of those examples, and what the test gives each: the
#: addresses are filled in once the loopback servers listen.
PROGRAMMER_ARGUMENTS = {
    "proxyURL": "socks5h://127.0.0.1:{proxyPort}",
    "httpURL": "http://localhost:{httpPort}/",
    "httpsURL": "https://localhost:{httpsPort}/",
    "caFile": "{caFile}",
    "dnsServer": "localhost",
    "dnsPort": "{dnsPort}",
    "name": "www.example.test",
}


class _Greeting(Resource):
    """
    Answers every C{GET} with one text.
    """

    isLeaf = True

    def __init__(self, text: bytes) -> None:
        super().__init__()
        self._text = text

    def render_GET(self, request: Request) -> bytes:
        """
        The text.
        """
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return self._text


class DocsTests(OurServerTestCase):
    """
    The documentation's Python blocks are all accounted for, and run.
    """

    def test_found(self) -> None:
        """
        The collector finds the blocks: the client example in README.rst and
        in docs/client.rst, the server example in docs/server.rst, and the
        four programmers' examples in docs/programmers.rst.
        """
        blocks = allBlocks()
        kinds = {(block.path, block.kind) for block in blocks}
        self.assertIn(("README.rst", "client"), kinds)
        self.assertIn((os.path.join("docs", "client.rst"), "client"), kinds)
        self.assertIn((os.path.join("docs", "server.rst"), "server"), kinds)
        programmers = os.path.join("docs", "programmers.rst")
        self.assertEqual(
            {
                block.parameters
                for block in blocks
                if block.path == programmers and block.kind == "programmer"
            },
            set(PROGRAMMER_EXAMPLES),
        )

    def test_everyBlockIsTested(self) -> None:
        """
        Every block is a fragment (C{:class: fragment}) or one this module
        runs; a fragment is not also dressed up as a runnable example.
        """
        untested = [
            block.where
            for block in allBlocks()
            if not block.fragment and block.kind is None
        ]
        self.assertEqual(
            untested,
            [],
            "mark these blocks ':class: fragment' or run them in tests/test_docs.py",
        )

    def test_everyBlockCompiles(self) -> None:
        """
        Every block, fragments included, is valid Python (top-level C{await}
        allowed in fragments).
        """
        for block in allBlocks():
            flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if block.fragment else 0
            try:
                compile(block.code, block.where, "exec", flags=flags)
            except SyntaxError as e:
                self.fail(f"{block.where}: {e}")

    @asyncTest
    async def test_fragmentImports(self) -> None:
        """
        The imports of every fragment work, in a child Python process.
        """
        statements = []
        for block in allBlocks():
            if not block.fragment:
                continue
            tree = compile(
                block.code,
                block.where,
                "exec",
                flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            )
            for node in tree.body:
                if isinstance(node, ast.Import | ast.ImportFrom):
                    statements.append(f"{ast.unparse(node)}  # {block.where}")
        self.assertNotEqual(statements, [])
        _, err, status = await self.runChild(["-c", "\n".join(statements)])
        self.assertEqual(status, 0, err.decode("utf-8", "replace"))

    async def runChild(self, arguments: list[str]) -> tuple[bytes, bytes, int]:
        """
        Run Python with C{arguments} in the project root, within
        L{CHILD_TIMEOUT}.
        """
        result: tuple[bytes, bytes, int] = await withTimeout(
            getProcessOutputAndValue(
                sys.executable,
                arguments,
                env=childEnvironment(),
                path=str(PROJECT_ROOT),
                reactor=reactor,
            ),
            " ".join(arguments[:1]) + " in a child process",
            CHILD_TIMEOUT,
        )
        return result

    @asyncTest
    async def test_clientExamples(self) -> None:
        """
        Each client example's C{main}, run in a child process, reaches an
        echo server through our server and prints the target's address and
        the first line it sent back.
        """
        clients = [block for block in allBlocks() if block.kind == "client"]
        self.assertNotEqual(clients, [])
        _, echoPort = await listenEcho(self)
        proxyPort, _ = await self.startServer()
        for block in clients:
            out, err, status = await self.runChild(
                [
                    "-c",
                    CLIENT_RUNNER,
                    block.code,
                    block.where,
                    LOOPBACK,
                    str(echoPort),
                    str(proxyPort),
                ]
            )
            self.assertEqual(status, 0, (block.where, err))
            self.assertRegex(
                out.decode("utf-8"),
                r"^IPv4Address\(type='TCP', host='127\.0\.0\.1', "
                rf"port={echoPort}\) b'HEAD / HTTP/1\.0'\n$",
                block.where,
            )

    @asyncTest
    async def test_programmerExamples(self) -> None:
        """
        Each programmer's example, run in a child process against our server
        and loopback HTTP, HTTPS (a certificate authority made here, a
        certificate for C{localhost}) and DNS servers, prints what those
        servers answer: HTTP through the proxy, HTTPS trusting the
        authority, a BIND exchange and a DNS query over UDP.  Each connects
        to our server.
        """
        examples = [block for block in allBlocks() if block.kind == "programmer"]
        self.assertNotEqual(examples, [])
        proxyPort, factory = await self.startServer()
        proxied: list[object] = []
        buildProtocol = factory.buildProtocol

        def counting(address: object) -> Any:
            proxied.append(address)
            return buildProtocol(address)

        self.patch(factory, "buildProtocol", counting)
        http = await listen(self, Site(_Greeting(b"hello over http")))
        authority = CertificateAuthority(("localhost",))
        tls = ssl.PrivateCertificate.loadPEM(authority.serverPEM).options()
        https = await wrapServerTLS(
            tls, TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK)
        ).listen(Site(_Greeting(b"hello over https")))
        self.addCleanup(https.stopListening)
        caFile = Path(self.mktemp()).resolve()
        caFile.write_bytes(authority.caPEM)
        hostsFile = Path(self.mktemp())
        hostsFile.write_text("192.0.2.7 www.example.test\n")
        zone = DNSServerFactory(authorities=[hosts.Resolver(file=bytes(hostsFile))])
        dnsServer = reactor.listenUDP(
            0, dns.DNSDatagramProtocol(controller=zone), interface=LOOPBACK
        )
        self.addCleanup(dnsServer.stopListening)
        addresses = {
            "proxyPort": proxyPort,
            "httpPort": http.getHost().port,  # type: ignore[attr-defined]
            "httpsPort": https.getHost().port,  # type: ignore[attr-defined]
            "caFile": str(caFile),
            "dnsPort": dnsServer.getHost().port,
        }
        for block in examples:
            expected = PROGRAMMER_EXAMPLES.get(block.parameters)
            self.assertIsNotNone(
                expected,
                f"{block.where}: main{block.parameters} is not in "
                "PROGRAMMER_EXAMPLES of tests/test_docs.py",
            )
            arguments: dict[str, Any] = {}
            for name in block.parameters[1:]:
                value = PROGRAMMER_ARGUMENTS[name].format(**addresses)
                arguments[name] = int(value) if value.isdigit() else value
            del proxied[:]
            out, err, status = await self.runChild(
                [
                    "-c",
                    PROGRAMMER_RUNNER,
                    block.code,
                    block.where,
                    json.dumps(arguments),
                ]
            )
            self.assertEqual(status, 0, (block.where, err.decode("utf-8", "replace")))
            self.assertEqual(out.decode("utf-8"), expected, block.where)
            self.assertNotEqual(proxied, [], f"{block.where} bypassed the proxy")

    @asyncTest
    async def test_serverExamples(self) -> None:
        """
        Each server example, run unchanged in a child process, serves: a
        SOCKS5 CONNECT to the port it names reaches an echo server.
        """
        servers = [block for block in allBlocks() if block.kind == "server"]
        self.assertNotEqual(servers, [])
        _, echoPort = await listenEcho(self)
        for block in servers:
            await self.runServerExample(block, echoPort)

    async def runServerExample(self, block: Block, echoPort: int) -> None:
        match = re.search(
            r'TCP4ServerEndpoint\(reactor, (\d+), interface="([\d.]+)"\)', block.code
        )
        self.assertIsNotNone(match, f"{block.where}: which port does it use?")
        assert match is not None
        port, interface = int(match.group(1)), match.group(2)
        probe = socket.socket()
        # As Twisted's own listening ports do: connections of an earlier run
        # left in TIME_WAIT do not make the port busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((interface, port))
        except OSError as e:
            raise SkipTest(f"{block.where} listens on {interface}:{port}: {e}") from e
        finally:
            probe.close()

        child = subprocess.Popen(
            [sys.executable, "-c", block.code],
            cwd=PROJECT_ROOT,
            env=childEnvironment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

        def stop() -> bytes:
            """
            Stop the child as Control-C would; return what it printed.
            """
            assert child.stdout is not None
            if child.stdout.closed:
                return b""
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
            try:
                output, _ = child.communicate(timeout=CHILD_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                output, _ = child.communicate()
            child.stdout.close()
            return output

        self.addCleanup(stop)

        def listening() -> bool:
            if child.poll() is not None:
                assert child.stdout is not None
                raise AssertionError(
                    f"{block.where} exited with {child.returncode}: "
                    f"{child.stdout.read()!r}"
                )
            with socket.socket() as s:
                return s.connect_ex((interface, port)) == 0

        await waitUntil(listening, f"{block.where} to listen")

        from socks_twisted.client import SOCKS5ClientEndpoint

        target = SOCKS5ClientEndpoint(
            LOOPBACK,
            echoPort,
            TCP4ClientEndpoint(reactor, interface, port),
            reactor=reactor,
        )
        received: Deferred[bytes] = Deferred()

        class Client(Protocol):
            def dataReceived(self, data: bytes) -> None:
                if not received.called:
                    received.callback(data)

        client: Any = await withTimeout(
            connectProtocol(target, Client()), f"a CONNECT through {block.where}"
        )
        client.transport.write(b"ping")
        echoed = await withTimeout(received, f"the echo through {block.where}")
        client.transport.loseConnection()
        self.assertEqual(echoed, b"ping")
        # An error in a callback of the example (reported when the child
        # exits, as an unhandled error in a Deferred) fails it too.
        output = stop()
        self.assertNotIn(b"Traceback", output, output.decode("utf-8", "replace"))
