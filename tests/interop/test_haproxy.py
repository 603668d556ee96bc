"""
A fleet of our servers behind a real HAProxy that speaks the PROXY protocol
(version 2) to them.

Two C{twistd socks} nodes listen on 127.0.0.2 and 127.0.0.3 with
C{haproxy:} descriptions; HAProxy listens on 127.0.0.1 and connects to them
round-robin from 127.0.0.4, so that a node mistaking HAProxy for the client
(or HAProxy's frontend for itself) shows it.  The client is on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from twisted.trial.unittest import TestCase

from ._support import (
    SOCKSServerProcess,
    recvExactly,
    socks5Reply,
    socks5Request,
    startSOCKSServer,
)
from ._thirdparty import startHAProxy

NODES = ("127.0.0.2", "127.0.0.3")
HAPROXY_SOURCE = "127.0.0.4"
CLIENT = "127.0.0.1"

#: How long one step may take.
STEP = 10.0


def _connected(port: int, source: str = CLIENT) -> socket.socket:
    return socket.create_connection(
        (CLIENT, port), timeout=STEP, source_address=(source, 0)
    )


def _closedWithoutReply(sock: socket.socket) -> bool:
    """
    Whether the server closes C{sock} after the greeting without answering.
    """
    sock.sendall(b"\x05\x01\x00")
    try:
        return sock.recv(2) == b""
    except ConnectionResetError:
        return True


class FleetTests(TestCase):
    """
    Two nodes behind HAProxy: each serves CONNECT, UDP ASSOCIATE and BIND on
    its own address, and knows the real client.
    """

    def setUp(self) -> None:
        self.nodes: list[SOCKSServerProcess] = [
            startSOCKSServer(self, listen=f"haproxy:tcp:0:interface={node}")
            for node in NODES
        ]
        self.haproxy = startHAProxy(
            self,
            [
                (node, server.port)
                for node, server in zip(NODES, self.nodes, strict=True)
            ],
            source=HAPROXY_SOURCE,
        )

    def _nodeFor(self, address: str) -> SOCKSServerProcess:
        self.assertIn(address, NODES)
        return self.nodes[NODES.index(address)]

    def _sessionLines(self, node: SOCKSServerProcess, command: str) -> list[str]:
        return [
            line
            for line in node.output().splitlines()
            if "SOCKS session" in line and f"command={command}" in line
        ]

    def _assertLogged(
        self,
        control: socket.socket,
        command: str,
        host: str,
        port: int,
        *others: socket.socket,
    ) -> None:
        """
        Close C{control} (and C{others}, the session's other end); its
        node's log then says the session of the real client (the control
        connection's own address) ended, naming the node's own address its
        reply gave.
        """
        client = "{}:{}".format(*control.getsockname())
        for sock in (control, *others):
            sock.close()
        node = self._nodeFor(host)
        deadline = time.monotonic() + STEP
        while time.monotonic() < deadline:
            for line in self._sessionLines(node, command):
                if f" {client} " in line:
                    self.assertIn(f" bound={host}:{port} ", line)
                    return
            time.sleep(0.05)
        self.fail(f"no {command} session of {client} logged:\n{node.output()}")

    def test_connectReachesBothNodes(self) -> None:
        """
        Two CONNECTs in a row (round-robin) reach both nodes, each relays
        to the target (by splicing: the PROXY header is read before the
        request, so the relay runs on the TCP connection under it), and
        each node logs the real client (the client's own address and port),
        never HAProxy's.
        """
        target = socket.socket()
        target.bind((CLIENT, 0))
        target.listen(4)
        target.settimeout(STEP)
        self.addCleanup(target.close)
        clients = []
        for _ in NODES:
            sock = _connected(self.haproxy.port)
            self.addCleanup(sock.close)
            socks5Request(sock, 1, CLIENT, target.getsockname()[1])
            accepted, _ = target.accept()
            self.addCleanup(accepted.close)
            sock.sendall(b"ping")
            self.assertEqual(recvExactly(accepted, 4), b"ping")
            accepted.sendall(b"pong")
            self.assertEqual(recvExactly(sock, 4), b"pong")
            clients.append(sock.getsockname())
            accepted.close()
            sock.close()
        names = {f"{host}:{port}" for host, port in clients}
        for node in self.nodes:
            deadline = time.monotonic() + STEP
            while not (lines := self._sessionLines(node, "CONNECT")):
                if time.monotonic() > deadline:
                    self.fail(f"no CONNECT session logged:\n{node.output()}")
                time.sleep(0.05)
            self.assertIn(" relay=splice ", lines[0])
            self.assertIn(" bytes_up=4 bytes_down=4 ", lines[0])
        for node in self.nodes:
            [line] = [
                line
                for line in node.output().splitlines()
                if "SOCKS request" in line and "command=CONNECT" in line
            ]
            self.assertNotIn(HAPROXY_SOURCE, line)
            self.assertTrue(any(name in line for name in names), line)

    def test_udpOnEachNode(self) -> None:
        """
        A UDP ASSOCIATE through each node is answered with that node's own
        address (not HAProxy's 127.0.0.1), relays a datagram to an echo
        target and back, and ignores a datagram from an address other than
        the real client's.
        """
        echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        echo.bind((CLIENT, 0))
        echo.settimeout(STEP)
        self.addCleanup(echo.close)
        echoPort = echo.getsockname()[1]
        seen = set()
        for _ in NODES:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((CLIENT, 0))
            udp.settimeout(STEP)
            self.addCleanup(udp.close)
            control = _connected(self.haproxy.port)
            self.addCleanup(control.close)
            relayHost, relayPort = socks5Request(control, 3, *udp.getsockname())
            self._nodeFor(relayHost)
            seen.add(relayHost)
            header = b"\x00\x00\x00\x01" + socket.inet_aton(CLIENT)
            header += struct.pack("!H", echoPort)
            # From a stranger's address first: the node must drop it.
            stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            stranger.bind(("127.0.0.5", 0))
            self.addCleanup(stranger.close)
            stranger.sendto(header + b"stranger", (relayHost, relayPort))
            udp.sendto(header + b"hello " + relayHost.encode(), (relayHost, relayPort))
            data, source = echo.recvfrom(2048)
            self.assertEqual(data, b"hello " + relayHost.encode())
            self.assertEqual(source[0], relayHost)
            echo.sendto(b"back", source)
            reply, via = udp.recvfrom(2048)
            self.assertEqual(via, (relayHost, relayPort))
            self.assertEqual(reply, header + b"back")
            self._assertLogged(control, "UDP_ASSOCIATE", relayHost, relayPort)
        self.assertEqual(seen, set(NODES))
        echo.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            echo.recvfrom(2048)

    def test_bindOnEachNode(self) -> None:
        """
        A BIND through each node listens on that node's own address, names
        it in the first reply, and relays once the peer (the client's own
        host, as the request said) connects.
        """
        seen = set()
        for _ in NODES:
            control = _connected(self.haproxy.port)
            self.addCleanup(control.close)
            host, port = socks5Request(control, 2, CLIENT, 0)
            self._nodeFor(host)
            seen.add(host)
            peer = socket.create_connection((host, port), timeout=STEP)
            self.addCleanup(peer.close)
            peerHost, peerPort = socks5Reply(control)
            self.assertEqual((peerHost, peerPort), peer.getsockname())
            peer.sendall(b"from the peer")
            self.assertEqual(recvExactly(control, 13), b"from the peer")
            control.sendall(b"to the peer")
            self.assertEqual(recvExactly(peer, 11), b"to the peer")
            self._assertLogged(control, "BIND", host, port, peer)
        self.assertEqual(seen, set(NODES))


class FleetAdmissionTests(TestCase):
    """
    Behind HAProxy, a node's client rules and per-client limits apply to
    the real client named in the PROXY header, not to HAProxy.
    """

    def setUp(self) -> None:
        config = self.mktemp()
        with open(config, "w") as f:
            f.write(
                "[limits]\n"
                "sessions-per-client = 1\n"
                "[[rules]]\n"
                'action = "allow"\n'
                'from = ["127.0.0.1/32", "127.0.0.6/32"]\n'
                "[[rules]]\n"
                'action = "deny"\n'
            )
        self.node = startSOCKSServer(
            self,
            "--config",
            os.path.abspath(config),
            listen=f"haproxy:tcp:0:interface={NODES[0]}",
        )
        self.haproxy = startHAProxy(
            self, [(NODES[0], self.node.port)], source=HAPROXY_SOURCE
        )

    def test_realClientCounted(self) -> None:
        """
        With one session allowed per client, two real clients each hold
        one; a second from the same client is closed unanswered, and so is
        a client no rule allows.  The refusals name the real clients.
        """
        target = socket.socket()
        target.bind((CLIENT, 0))
        target.listen(4)
        self.addCleanup(target.close)
        for source in (CLIENT, "127.0.0.6"):
            sock = _connected(self.haproxy.port, source)
            self.addCleanup(sock.close)
            socks5Request(sock, 1, CLIENT, target.getsockname()[1])
        again = _connected(self.haproxy.port, CLIENT)
        self.addCleanup(again.close)
        self.assertTrue(_closedWithoutReply(again))
        stranger = _connected(self.haproxy.port, "127.0.0.7")
        self.addCleanup(stranger.close)
        self.assertTrue(_closedWithoutReply(stranger))
        output = self.node.output()
        self.assertRegex(output, r"refusing connection from 127\.0\.0\.1:\d+: ")
        self.assertRegex(
            output,
            r"refusing connection from 127\.0\.0\.7:\d+: no rule allows this client",
        )
        # HAProxy's own health checks come from it; no request or refusal
        # may name it.
        for line in output.splitlines():
            if "SOCKS request" in line or "refusing" in line:
                self.assertNotIn(HAPROXY_SOURCE, line)
