"""
A real third-party UDP client, PySocks, through our server's UDP ASSOCIATE
to a UDP echo server, all on loopback.
"""

import socket
from typing import cast

import socks  # PySocks
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IReactorTCP, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.threads import deferToThread
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from socks_twisted.server import SOCKSServerFactory

reactor: IReactorTCP = _reactor


class UDPEcho(DatagramProtocol):
    """
    Echoes every datagram in upper case, so an answer cannot be mistaken for
    the request looped back.
    """

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.transport.write(datagram.upper(), addr)  # type: ignore[union-attr]


def exchange(
    proxyPort: int, target: tuple[str, int], payloads: list[bytes], rdns: bool
) -> list[tuple[bytes, tuple[str, int]]]:
    """
    Send each payload through the proxy with PySocks and collect the answers
    (blocking; run in a thread).
    """
    client = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    client.set_proxy(socks.SOCKS5, "127.0.0.1", proxyPort, rdns=rdns)
    client.settimeout(10)
    try:
        answers = []
        for payload in payloads:
            client.sendto(payload, target)
            data, source = client.recvfrom(65535)
            answers.append((data, source))
        return answers
    finally:
        client.close()


class PySocksUDPTests(TestCase):
    """
    PySocks' SOCK_DGRAM socksocket against our UDP ASSOCIATE.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        udpReactor: IReactorUDP = _reactor  # type: ignore[assignment]
        self.echo = udpReactor.listenUDP(0, UDPEcho(), "127.0.0.1", 65535)
        self.addCleanup(self.echo.stopListening)
        factory = SOCKSServerFactory(_reactor)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            factory
        )
        self.addCleanup(port.stopListening)
        self.proxyPort = port.getHost().port
        self.factory = factory
        self.associationEnded: Deferred[LogEvent] = Deferred()

        def observe(event: LogEvent) -> None:
            if "UDP association" in event.get("log_format", ""):
                if not self.associationEnded.called:
                    self.associationEnded.callback(event)

        observer = cast(ILogObserver, observe)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def tearDown(self) -> None:
        for session in list(self.factory.sessions):
            if session.transport is not None:
                session.transport.abortConnection()  # type: ignore[attr-defined]

    async def test_roundTripsByIP(self) -> None:
        """
        Three datagrams to the echo server by IP come back transformed, with
        the echo server named as their source.
        """
        echoPort = self.echo.getHost().port  # type: ignore[attr-defined]
        payloads = [b"first", b"second datagram", b"x" * 1200]
        answers = await deferToThread(
            exchange, self.proxyPort, ("127.0.0.1", echoPort), payloads, False
        )
        self.assertEqual([data for data, _ in answers], [p.upper() for p in payloads])
        self.assertEqual({source for _, source in answers}, {("127.0.0.1", echoPort)})
        # The answers really went through an association of ours.
        event = await self.associationEnded
        self.assertEqual(
            (event["datagramsFromClient"], event["datagramsToClient"]), (3, 3)
        )

    async def test_roundTripByName(self) -> None:
        """
        A datagram addressed to "localhost", resolved by the server, comes
        back from the echo server.
        """
        echoPort = self.echo.getHost().port  # type: ignore[attr-defined]
        answers = await deferToThread(
            exchange, self.proxyPort, ("localhost", echoPort), [b"named"], True
        )
        self.assertEqual([data for data, _ in answers], [b"NAMED"])
        event = await self.associationEnded
        self.assertEqual(event["datagramsFromClient"], 1)
