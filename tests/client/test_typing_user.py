# twisted.trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"
"""
A user's program that uses the client API type-checks with C{mypy --strict}
(and the mypy-zope plugin, which Twisted's interfaces need).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SkipTest, SynchronousTestCase

#: The user's program: L{SOCKSProxy}, the endpoints, the agent, BIND and
#: UDP, with the reactor C{task.react} gives and with the global one.
PROGRAM = """\
from __future__ import annotations

from typing import cast

from twisted.internet import reactor as globalReactor
from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.web.client import readBody

from socks_twisted.client import (
    AuthMethod,
    ISOCKSReactor,
    PendingBind,
    SOCKS4BindClient,
    SOCKS4ClientEndpoint,
    SOCKS5BindClient,
    SOCKS5ClientEndpoint,
    SOCKS5UDPAssociation,
    SOCKS5UDPClient,
    SOCKSProxy,
    socksAgent,
)


class Answers(DatagramProtocol):
    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        print(addr, datagram)


async def main(reactor: ISOCKSReactor) -> None:
    proxy = SOCKSProxy.fromURL(reactor, "socks5h://alice:s3cret@127.0.0.1:1080")
    endpoint = proxy.endpoint("example.com", 443)
    protocol = await endpoint.connect(Factory.forProtocol(Protocol))
    assert protocol is not None
    agent = proxy.agent()
    response = await agent.request(b"GET", b"http://example.com/")
    body: bytes = await readBody(response)
    factory = Factory.forProtocol(Protocol)
    pending: PendingBind = await proxy.bind(factory, "0.0.0.0", 0)
    print(pending.address, body)
    await pending.accepted()
    association: SOCKS5UDPAssociation = await proxy.udp(Answers())
    association.write(b"query", ("dns.example", 53))
    await association.stopListening()
    if proxy.bypasses("intranet.example", 443):
        print("direct")
    environ = {"ALL_PROXY": "socks4a://h"}
    fromEnv: SOCKSProxy | None = SOCKSProxy.fromEnvironment(reactor, environ)
    print(fromEnv)

    tcp = TCP4ClientEndpoint(reactor, "127.0.0.1", 1080)
    five = SOCKS5ClientEndpoint(
        "example.com", 80, tcp, methods=[AuthMethod.NO_AUTHENTICATION], reactor=reactor
    )
    txs = SOCKS5ClientEndpoint("example.com", 80, tcp, methods={"login": ("a", "b")})
    four = SOCKS4ClientEndpoint("example.com", 80, tcp, userID="bob", reactor=reactor)
    print(five, txs, four)
    bindClient = SOCKS5BindClient("0.0.0.0", 0, tcp, reactor=reactor)
    bound: Deferred[PendingBind] = bindClient.bind(Factory.forProtocol(Protocol))
    SOCKS4BindClient("0.0.0.0", 0, tcp, reactor=reactor)
    print(bound)
    udp = SOCKS5UDPClient(tcp, credentials=("a", "b"), reactor=reactor)
    await udp.associate(Answers())
    socksAgent(reactor, tcp, version=4, userID="bob")
    # The global reactor, as Twisted declares it.
    SOCKSProxy.fromURL(globalReactor, "socks5://h")
    SOCKSProxy.fromEnvironment(cast(ISOCKSReactor, globalReactor))
    SOCKS5ClientEndpoint("example.com", 80, tcp, reactor=globalReactor)
    SOCKS5UDPClient(tcp, reactor=globalReactor)
    socksAgent(globalReactor, tcp)


if __name__ == "__main__":
    task.react(lambda reactor: ensureDeferred(main(reactor)))
"""


class UserProgramTests(SynchronousTestCase):
    """
    Run C{mypy --strict} on L{PROGRAM} in a subprocess.
    """

    def test_strict(self) -> None:
        """
        No errors.
        """
        for module in ("mypy", "mypy_zope"):
            if importlib.util.find_spec(module) is None:
                message = f"{module} is not installed (pip install '.[test]')"
                if os.environ.get("CI") == "true":
                    self.fail(message)  # CI installs it: missing is a failure
                raise SkipTest(message)
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "user.py"), "w") as f:
                f.write(PROGRAM)
            config = os.path.join(directory, "mypy.ini")
            with open(config, "w") as f:
                f.write("[mypy]\nstrict = True\nplugins = mypy_zope:plugin\n")
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mypy",
                    "--config-file",
                    config,
                    "--cache-dir",
                    os.path.join(directory, "cache"),
                    "--no-error-summary",
                    "user.py",
                ],
                cwd=directory,
                capture_output=True,
                text=True,
                timeout=600,
            )
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "", ""))
