"""
The SOCKS5 UDP request header (RFC 1928 section 7) that prefixes every
datagram relayed through a UDP association.
"""

from dataclasses import dataclass

from ._addresses import decodeSOCKS5Address, encodeSOCKS5Address
from ._errors import ProtocolError


@dataclass(frozen=True, slots=True)
class UDPDatagram:
    """
    One relayed datagram: where it goes to (client to relay) or comes from
    (relay to client), and its payload.

    @ivar fragment: FRAG; 0 for a whole datagram.  Fragmentation is optional
        in RFC 1928 and nobody implements it.
    """

    host: str
    port: int
    data: bytes
    fragment: int = 0

    def toBytes(self) -> bytes:
        """
        Encode header and payload.

        @raise ValueError: The host or port cannot be encoded.
        """
        return (
            bytes([0, 0, self.fragment])
            + encodeSOCKS5Address(self.host, self.port)
            + self.data
        )


def readUDPDatagram(datagram: bytes) -> UDPDatagram:
    """
    Decode a whole datagram.  A datagram is never "incomplete": a short or
    malformed header is a L{ProtocolError} (with no reply: UDP has none).
    """
    if len(datagram) < 4:
        raise ProtocolError(f"UDP datagram of {len(datagram)} bytes has no header")
    if datagram[0] != 0 or datagram[1] != 0:
        raise ProtocolError("UDP header with non-zero RSV")
    address = decodeSOCKS5Address(datagram, 3, None, None)
    if address is None:
        raise ProtocolError("UDP header truncated")
    host, port, end = address
    return UDPDatagram(host, port, datagram[end:], datagram[2])
