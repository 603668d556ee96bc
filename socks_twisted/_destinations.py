"""
Destinations as access rules name them: CIDRs, names, domain suffixes and
the named sets (C{loopback}, C{private}, ...), and how an address or a name
is matched against them.  No Twisted here either.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _networks(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


#: The named destination sets, but C{self}, which is the server's own
#: addresses and known only at run time.
NAMED_SETS: Mapping[str, tuple[IPNetwork, ...]] = {
    "loopback": _networks("127.0.0.0/8", "::1/128"),
    # RFC 1918, the shared address space of carrier-grade NAT (RFC 6598),
    # unique local IPv6 (RFC 4193) and the deprecated IPv6 site-local
    # addresses (RFC 3879), which some networks still route internally.
    "private": _networks(
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
        "fec0::/10",
    ),
    "link-local": _networks("169.254.0.0/16", "fe80::/10"),
    "multicast": _networks("224.0.0.0/4", "ff00::/8"),
    # The whole of 0.0.0.0/8, "this network" (RFC 1122 3.2.1.3): no address
    # in it is a valid destination, and Linux sends a connection to
    # 0.0.0.0, or to 0.x.y.z on some versions, to the local host.
    "unspecified": _networks("0.0.0.0/8", "::/128"),
}

SELF = "self"
ALL_SETS = frozenset(NAMED_SETS) | {SELF}
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def unmappedAddress(address: IPAddress) -> IPAddress:
    # An IPv4-mapped IPv6 address is the IPv4 address: the same destination
    # must not escape a rule by being spelled the other way.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


# Cached: the rules are asked about the client and the target of every
# request, and again at every connection about the client, always a few
# strings; a bounded cache keeps a flood of names from growing it.
@lru_cache(maxsize=4096)
def parseAddress(text: str) -> IPAddress | None:
    """
    The address an IP literal names (a scope and an IPv4 mapping removed), or
    C{None} when C{text} is not an IP literal.
    """
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    return unmappedAddress(address)


def unmappedNetwork(network: IPNetwork) -> IPNetwork:
    if (
        isinstance(network, ipaddress.IPv6Network)
        and network.prefixlen >= 96
        and network.subnet_of(_MAPPED)
    ):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def normalizeName(name: str) -> str:
    return name.rstrip(".").lower()


class NetworkSet:
    """
    Networks of both families, matched with integer masks.
    """

    __slots__ = ("_v4", "_v6")

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self._v4: list[tuple[int, int]] = []
        self._v6: list[tuple[int, int]] = []
        for network in networks:
            target = self._v4 if network.version == 4 else self._v6
            entry = (int(network.netmask), int(network.network_address))
            if entry not in target:
                target.append(entry)

    def __bool__(self) -> bool:
        return bool(self._v4 or self._v6)

    def matches(self, address: IPAddress) -> bool:
        value = int(address)
        entries = self._v4 if address.version == 4 else self._v6
        return any(value & mask == network for mask, network in entries)


@dataclass(frozen=True)
class Destinations:
    """
    The C{to} of a rule.

    @ivar networks: CIDRs and bare IPs (as one-address networks), IPv4-mapped
        ones as IPv4.
    @ivar names: Exact names, lower case, without a trailing dot.
    @ivar suffixes: Domain suffixes, lower case, without the leading and
        trailing dots: C{example.com} for C{.example.com}.
    @ivar sets: Named sets (see L{NAMED_SETS}), C{self} included.
    """

    networks: tuple[IPNetwork, ...] = ()
    names: frozenset[str] = frozenset()
    suffixes: frozenset[str] = frozenset()
    sets: frozenset[str] = frozenset()
    _addresses: NetworkSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        networks = list(self.networks)
        for name in sorted(self.sets - {SELF}):
            networks.extend(NAMED_SETS[name])
        object.__setattr__(self, "_addresses", NetworkSet(networks))

    @property
    def needsAddress(self) -> bool:
        """
        Whether an address could match: whether, for a name, these
        destinations can be decided only once it is resolved.
        """
        return bool(self._addresses) or SELF in self.sets

    def matchesName(self, name: str) -> bool:
        """
        Whether C{name} (normalized: lower case, no trailing dot) is one of
        the names, or is, or is below, one of the suffixes.
        """
        if name in self.names:
            return True
        if not self.suffixes:
            return False
        # One set lookup per label: cheaper than one endswith per suffix.
        while True:
            if name in self.suffixes:
                return True
            dot = name.find(".")
            if dot < 0:
                return False
            name = name[dot + 1 :]

    def matchesAddress(
        self, address: IPAddress, port: int, own: Container[tuple[str, int]]
    ) -> bool:
        """
        Whether C{address} (unmapped) is in one of the networks or named
        sets, or C{(address, port)} is one of the server's own.
        """
        if self._addresses.matches(address):
            return True
        return SELF in self.sets and (str(address), port) in own
