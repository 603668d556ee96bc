"""
A throwaway Kerberos realm on loopback for the GSSAPI tests, run by k5test.

L{requireKerberosRealm} starts one MIT realm (a C{krb5kdc} listening on
127.0.0.1 only, its database made by C{kdb5_util}, principals added by
C{kadmin.local}) the first time a test of the process asks for it, and
stops it when the process exits.  Trial ignores C{setUpClass}, so "once per
test process" is the granularity: under C{trial -j N} each worker has its
own realm on its own port.

The realm holds:

  - the user principal C{user@KRBTEST.COM}, whose TGT C{kinit} put in the
    realm's credential cache (L{KerberosRealm.ccache});
  - the service principals C{rcmd/localhost} and C{rcmd/127.0.0.1}, both in
    the keytab L{KerberosRealm.keytab} (a SOCKS server's acceptor keytab);
  - C{other/localhost}, a service that exists in the KDC but whose key is in
    no keytab the tests hand to an acceptor.

Host name canonicalisation is off in the realm's C{krb5.conf}
(C{dns_canonicalize_hostname = false}, C{rdns = false}, an empty
C{qualify_shortname}): a host-based name C{rcmd@localhost} is
C{rcmd/localhost} and C{rcmd@127.0.0.1} is C{rcmd/127.0.0.1}, whatever the
machine's resolver, C{/etc/hosts} or DNS search domain say.

Without the MIT KDC programs or the C{gssapi} and C{k5test} packages a test
that needs the realm is skipped, except under C{CI=true}, where it fails:
C{.ci/run} installs them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

#: The realm's name.
REALM = "KRBTEST.COM"

#: The service name of RFC 1961 section 3.1 ("rcmd" by convention; curl's
#: and the issue's default).
SERVICE = "rcmd"

#: The host parts the service principals are made for.
SERVICE_HOSTS = ("localhost", "127.0.0.1")

#: The programs k5test runs, and the Debian package of each.
_PROGRAMS = {
    "krb5kdc": "krb5-kdc",
    "kdb5_util": "krb5-kdc",
    "kadmin.local": "krb5-admin-server",
    "kinit": "krb5-user",
    "klist": "krb5-user",
    "krb5-config": "libkrb5-dev",
}

_SBIN_DIRECTORIES = ("/usr/local/sbin", "/usr/sbin", "/sbin")

#: The environment variables a Kerberos program reads that the realm sets.
ENVIRONMENT_VARIABLES = (
    "KRB5_CONFIG",
    "KRB5_KDC_PROFILE",
    "KRB5CCNAME",
    "KRB5_KTNAME",
    "KRB5_CLIENT_KTNAME",
    "KRB5RCACHEDIR",
)


@dataclass(frozen=True)
class KerberosRealm:
    """
    A running test realm.

    @ivar realm: The realm's name, C{KRBTEST.COM}.
    @ivar kdcPort: The port the KDC listens on, UDP and TCP, on 127.0.0.1.
    @ivar userPrincipal: The user whose TGT is in L{ccache}.
    @ivar userPassword: That user's password.
    @ivar keytab: The keytab holding the keys of every principal of
        L{servicePrincipals} (C{rcmd/localhost}, C{rcmd/127.0.0.1}).
    @ivar servicePrincipals: The full names of the SOCKS service principals.
    @ivar unkeyedPrincipal: A service principal the KDC knows whose key is in
        no keytab (C{other/localhost@KRBTEST.COM}).
    @ivar ccache: The user's credential cache, as a C{FILE:} name.
    @ivar env: The environment variables that point Kerberos programs and
        libraries at this realm: C{KRB5_CONFIG}, C{KRB5_KDC_PROFILE},
        C{KRB5CCNAME}, C{KRB5_KTNAME} (the service keytab),
        C{KRB5_CLIENT_KTNAME} and C{KRB5RCACHEDIR}.
    @ivar directory: The realm's temporary directory.
    """

    realm: str
    kdcPort: int
    userPrincipal: str
    userPassword: str
    keytab: str
    servicePrincipals: tuple[str, ...]
    unkeyedPrincipal: str
    ccache: str
    env: Mapping[str, str]
    directory: str

    def childEnvironment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """
        The environment for a child process (curl, danted, twistd) that must
        use this realm: C{base} (the current environment by default) with
        L{env} over it.
        """
        environment = dict(os.environ if base is None else base)
        environment.update(self.env)
        return environment

    def useInProcess(self, testCase: SynchronousTestCase) -> None:
        """
        Point this process's Kerberos library at the realm for the duration
        of C{testCase}: set L{env} in C{os.environ} and restore the previous
        values in a cleanup.  (MIT Kerberos reads C{KRB5_CONFIG} whenever it
        makes a new library context, which GSSAPI does per call.)
        """
        saved = {name: os.environ.get(name) for name in self.env}

        def restore() -> None:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

        testCase.addCleanup(restore)
        os.environ.update(self.env)


_realm: KerberosRealm | None = None
_startError: str | None = None


def _missing(what: str) -> None:
    """
    Skip, or fail under CI, because C{what} is missing.
    """
    if os.environ.get("CI") == "true":
        raise AssertionError(f"{what} is missing under CI")
    raise SkipTest(f"{what} is missing; the GSSAPI tests need it")


def _findPrograms() -> dict[str, str]:
    """
    The paths of the MIT programs k5test runs, by k5test's keyword names.

    @raise SkipTest: (or C{AssertionError} under CI) if one is missing.
    """
    searchPath = os.pathsep.join(
        [os.environ.get("PATH", os.defpath), *_SBIN_DIRECTORIES]
    )
    found: dict[str, str] = {}
    for program, package in _PROGRAMS.items():
        path = shutil.which(program, path=searchPath)
        if path is None:
            _missing(f"{program} (apt-get install {package})")
        else:
            found[program] = path
    return found


def _freeLoopbackPort() -> int:
    """
    A port free on 127.0.0.1 for both UDP and TCP at the time of the call,
    and below 65526 (k5test names nine ports after it in its configuration,
    though only the first, the KDC's, is listened on).
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            if port > 65525:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port for the KDC")


def _krb5Conf() -> dict[str, Any]:
    """
    What this fixture adds to k5test's C{krb5.conf}: the KDC on 127.0.0.1
    and no host name canonicalisation.
    """
    return {
        "libdefaults": {
            "dns_canonicalize_hostname": "false",
            "rdns": "false",
            # With canonicalisation off, MIT Kerberos (1.18+) qualifies a
            # name without a dot ("localhost") with the first DNS search
            # domain unless this is empty.
            "qualify_shortname": '""',
            "dns_lookup_realm": "false",
            "dns_lookup_kdc": "false",
            "default_realm": "$realm",
        },
        "realms": {"$realm": {"kdc": "127.0.0.1:$port0"}},
        "domain_realm": {host: "$realm" for host in SERVICE_HOSTS},
    }


def _kdcConf() -> dict[str, Any]:
    """
    What this fixture adds to k5test's C{kdc.conf}: listen on loopback only.
    """
    return {
        "realms": {
            "$realm": {
                "kdc_listen": "127.0.0.1:$port0",
                "kdc_tcp_listen": "127.0.0.1:$port0",
            }
        }
    }


def _start() -> KerberosRealm:
    """
    Start the realm, make its principals and keytab, and get the user's TGT.
    """
    programs = _findPrograms()
    try:
        import gssapi  # noqa: F401
        from k5test import K5Realm
    except ImportError as e:
        _missing(f"the {e.name} package (pip install '.[test]')")
        raise  # unreachable: _missing raises

    paths = {
        "krb5kdc": programs["krb5kdc"],
        "kdb5_util": programs["kdb5_util"],
        "kadmin.local": programs["kadmin.local"],
        "kinit": programs["kinit"],
        "klist": programs["klist"],
        "krb5-config": programs["krb5-config"],
    }
    lastError: Exception | None = None
    for _ in range(3):
        port = _freeLoopbackPort()
        try:
            k5 = K5Realm(
                realm=REALM,
                portbase=port,
                krb5_conf=_krb5Conf(),
                kdc_conf=_kdcConf(),
                create_host=False,
                **paths,
            )
        except Exception as e:  # k5test raises bare Exception
            # Most likely another process took the port between the probe
            # and krb5kdc's bind: try another.
            lastError = e
            continue
        break
    else:
        raise RuntimeError(f"the test KDC did not start: {lastError}")

    atexit.register(k5.stop)
    services = tuple(f"{SERVICE}/{host}@{REALM}" for host in SERVICE_HOSTS)
    for principal in services:
        k5.addprinc(principal)
        k5.extract_keytab(principal, k5.keytab)
    unkeyed = f"other/localhost@{REALM}"
    k5.addprinc(unkeyed)
    return KerberosRealm(
        realm=REALM,
        kdcPort=port,
        userPrincipal=k5.user_princ,
        userPassword=k5.password("user"),
        keytab=k5.keytab,
        servicePrincipals=services,
        unkeyedPrincipal=unkeyed,
        ccache=f"FILE:{k5.ccache}",
        env=dict(k5.env),
        directory=k5.tmpdir,
    )


def requireKerberosRealm(testCase: SynchronousTestCase) -> KerberosRealm:
    """
    The process's test realm, started on the first call, with its
    environment set in C{os.environ} for the duration of C{testCase}.

    @raise SkipTest: If MIT Kerberos, C{gssapi} or C{k5test} is missing (an
        C{AssertionError} instead under C{CI=true}), or if the realm failed
        to start once already in this process.
    """
    global _realm, _startError
    if _realm is None:
        if _startError is not None:
            raise SkipTest(f"the test realm did not start: {_startError}")
        try:
            _realm = _start()
        except RuntimeError as e:
            _startError = str(e)
            raise
    _realm.useInProcess(testCase)
    return _realm
