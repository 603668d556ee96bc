"""
Hypothesis strategies for byte streams a SOCKS peer might send: pure noise,
and streams shaped like real handshakes (right versions, lengths that mostly
agree with their fields) with mutations, truncations and junk after them, so
that the fuzzing reaches every reader and not just the first byte.

The shapes are built here field by field, not with the encoders under test.
"""

from __future__ import annotations

from hypothesis import strategies as st

_byte = st.integers(0, 0xFF)


@st.composite
def _usually(draw: st.DrawFn, *values: int) -> int:
    """
    One of C{values} seven times in eight, else any byte.
    """
    if draw(st.integers(0, 7)):
        return draw(st.sampled_from(values))
    return draw(_byte)


def _fixed(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


#: Field sizes, biased toward the limits where parsers go wrong.
_sizes = st.one_of(st.sampled_from([0, 1, 254, 255, 256, 300]), st.integers(0, 300))


@st.composite
def _names(draw: st.DrawFn) -> bytes:
    """
    A host name, user ID or password: DNS characters, or any bytes.
    """
    size = draw(_sizes)
    if draw(st.booleans()):
        return draw(st.binary(min_size=size, max_size=size))
    alphabet = st.sampled_from(b"abcdefghijklmnopqrstuvwxyz0123456789-.")
    return bytes(draw(st.lists(alphabet, min_size=size, max_size=size)))


@st.composite
def _lengthPrefixed(draw: st.DrawFn, body: st.SearchStrategy[bytes]) -> bytes:
    """
    A length byte and a body; the length is mostly the body's own.
    """
    data = draw(body)
    if len(data) <= 0xFF and draw(st.integers(0, 7)):
        length = len(data)
    else:
        length = draw(_byte)
    return bytes([length]) + data


@st.composite
def _nulTerminated(draw: st.DrawFn) -> bytes:
    """
    A SOCKS4 field: up to 300 bytes without NUL, mostly NUL-terminated.
    """
    body = draw(_names()).replace(b"\x00", b"x")
    return body + (b"\x00" if draw(st.integers(0, 7)) else b"")


@st.composite
def socks5Addresses(draw: st.DrawFn) -> bytes:
    """
    ATYP, an address and a port, as in requests and replies.
    """
    atyp = draw(_usually(0x01, 0x03, 0x04))
    if atyp == 0x01:
        address = draw(_fixed(4))
    elif atyp == 0x04:
        address = draw(_fixed(16))
    elif atyp == 0x03:
        address = draw(_lengthPrefixed(_names()))
    else:
        address = draw(st.binary(max_size=20))
    return bytes([atyp]) + address + draw(_fixed(2))


@st.composite
def socks4Requests(draw: st.DrawFn) -> bytes:
    """
    A SOCKS4 or SOCKS4a request.
    """
    header = bytes([0x04, draw(_usually(0x01, 0x02))]) + draw(_fixed(2))
    address = draw(st.one_of(_fixed(4), _byte.map(lambda last: bytes([0, 0, 0, last]))))
    data = header + address + draw(_nulTerminated())
    if address[:3] == b"\x00\x00\x00" or draw(st.booleans()):
        data += draw(_nulTerminated())
    return data


@st.composite
def socks5ClientStreams(draw: st.DrawFn) -> bytes:
    """
    A SOCKS5 greeting, maybe an RFC 1929 request, and a request.
    """
    methods = draw(st.lists(_usually(0x00, 0x02, 0xFF), max_size=300))
    greeting = bytes([draw(_usually(0x05))]) + draw(
        _lengthPrefixed(st.just(bytes(methods)))
    )
    authentication = b""
    if draw(st.booleans()):
        authentication = (
            bytes([draw(_usually(0x01))])
            + draw(_lengthPrefixed(_names()))
            + draw(_lengthPrefixed(_names()))
        )
    request = bytes(
        [draw(_usually(0x05)), draw(_usually(0x01, 0x02, 0x03)), draw(_usually(0x00))]
    ) + draw(socks5Addresses())
    return greeting + authentication + request


@st.composite
def socks5ServerStreams(draw: st.DrawFn) -> bytes:
    """
    A method selection, maybe an RFC 1929 status, and one or two replies.
    """
    data = bytes([draw(_usually(0x05)), draw(_usually(0x00, 0x02, 0xFF))])
    if draw(st.booleans()):
        data += bytes([draw(_usually(0x01)), draw(_usually(0x00, 0x01))])
    for _ in range(draw(st.integers(1, 2))):
        data += bytes(
            [draw(_usually(0x05)), draw(_usually(0x00, 0x01)), draw(_usually(0x00))]
        ) + draw(socks5Addresses())
    return data


@st.composite
def socks4ServerStreams(draw: st.DrawFn) -> bytes:
    """
    One or two SOCKS4 replies.
    """
    data = b""
    for _ in range(draw(st.integers(1, 2))):
        data += bytes([draw(_usually(0x00, 0x04)), draw(_usually(90, 91))]) + draw(
            _fixed(6)
        )
    return data


@st.composite
def _mutated(draw: st.DrawFn, shapes: st.SearchStrategy[bytes]) -> bytes:
    """
    A stream from C{shapes}, maybe with one byte changed, maybe truncated,
    and maybe followed by junk (pipelined application bytes, or garbage).
    """
    data = bytearray(draw(shapes))
    if data and not draw(st.integers(0, 3)):
        data[draw(st.integers(0, len(data) - 1))] = draw(_byte)
    if data and not draw(st.integers(0, 3)):
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data) + draw(st.binary(max_size=40))


#: What a client might send to a server.
serverInputs = st.one_of(
    st.binary(max_size=700),
    _mutated(socks4Requests()),
    _mutated(socks5ClientStreams()),
)

#: What a SOCKS5 server might send to a client.
socks5ClientInputs = st.one_of(st.binary(max_size=700), _mutated(socks5ServerStreams()))

#: What a SOCKS4 server might send to a client.
socks4ClientInputs = st.one_of(st.binary(max_size=100), _mutated(socks4ServerStreams()))

#: Offsets at which to cut a stream.
cuts = st.lists(st.integers(0, 1500), max_size=12)
