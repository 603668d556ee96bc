"""
Numeric constants of SOCKS4, SOCKS4a, SOCKS5 (RFC 1928) and RFC 1929.
"""

from enum import IntEnum


class Command(IntEnum):
    """
    The command field of a SOCKS4 (CD) or SOCKS5 (CMD) request.
    """

    CONNECT = 0x01
    BIND = 0x02
    UDP_ASSOCIATE = 0x03  # SOCKS5 only
    #: Tor's extension (torspec socks-extensions.txt, section 2): resolve
    #: the target name; the reply's address is the answer.  SOCKS4, SOCKS4a
    #: and SOCKS5.
    RESOLVE = 0xF0
    #: Tor's reverse lookup: the target is an address; the SOCKS5 reply
    #: names the host (ATYP 3).  SOCKS5 only.
    RESOLVE_PTR = 0xF1


#: The commands answered by one reply, after which the connection is over:
#: nothing is relayed.
LOOKUP_COMMANDS = frozenset({Command.RESOLVE, Command.RESOLVE_PTR})

#: The commands a SOCKS4 or SOCKS4a request may carry.
SOCKS4_COMMANDS = frozenset({Command.CONNECT, Command.BIND, Command.RESOLVE})


class AddressType(IntEnum):
    """
    SOCKS5 ATYP: how DST.ADDR / BND.ADDR is encoded.
    """

    IPV4 = 0x01
    DOMAIN = 0x03
    IPV6 = 0x04


class AuthMethod(IntEnum):
    """
    SOCKS5 authentication methods (RFC 1928 section 3).
    """

    NO_AUTHENTICATION = 0x00
    GSSAPI = 0x01
    USERNAME_PASSWORD = 0x02
    NO_ACCEPTABLE_METHODS = 0xFF


class SOCKS5ReplyCode(IntEnum):
    """
    SOCKS5 REP codes (RFC 1928 section 6).
    """

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


class SOCKS4ReplyCode(IntEnum):
    """
    SOCKS4 CD codes of a reply (the SOCKS4 protocol document).
    """

    GRANTED = 90
    REJECTED = 91
    NO_IDENTD = 92
    IDENTD_MISMATCH = 93


SOCKS4_VERSION = 0x04
SOCKS4_REPLY_VERSION = 0x00
SOCKS5_VERSION = 0x05
USERNAME_PASSWORD_VERSION = 0x01
USERNAME_PASSWORD_SUCCESS = 0x00
USERNAME_PASSWORD_FAILURE = 0x01

#: The longest SOCKS4 USERID and SOCKS4a hostname we accept, NUL excluded.
MAX_SOCKS4_FIELD = 255
