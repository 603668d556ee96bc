"""
Start real third-party SOCKS servers on loopback for interop tests.

Each starter takes the running trial L{TestCase}, starts one (or, for
OpenSSH, two) child processes listening on a free loopback port, waits until
the port accepts TCP connections, registers a cleanup that ends exactly the
processes it started, and returns a frozen L{ThirdPartyServer} describing
where to connect and with which credentials.

The peers and the Debian packages they come from:

    - Dante (C{danted}, package C{dante-server}): SOCKS4 (not 4a) and
      SOCKS5, CONNECT, BIND and UDP ASSOCIATE, username/password checked
      against the system password database.
    - microsocks (package C{microsocks}): SOCKS5 CONNECT only, optional
      username/password.
    - OpenSSH dynamic forwarding (C{ssh -D}, packages C{openssh-server} and
      C{openssh-client}): SOCKS4, SOCKS4a and SOCKS5 CONNECT only, no
      authentication.
    - HAProxy (package C{haproxy}): not a SOCKS server but the TCP load
      balancer in front of several of ours, speaking the PROXY protocol
      (version 2) to them.

Every child writes its output to a log file inside C{testCase.mktemp()};
when a server does not become ready in time the test fails with that log.

Free ports are found by binding C{127.0.0.1:0}, reading the port the kernel
chose and closing the socket.  Between the close and the child's own bind
another process may take the same port.  The window is tiny; if it happens,
the child fails to bind and the test fails with its log.  The readiness
check looks in C{/proc} for the listening socket among the child's file
descriptors, so a stranger on the port is not mistaken for our server.
Passing the listening socket to the child would close the race, but none of
these programs accepts one.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from twisted.trial.unittest import TestCase

from ._support import peerMissing, requireBuilt, requirePeer

LOOPBACK = "127.0.0.1"

#: How long a server has to start accepting connections.
READY_TIMEOUT = 15.0

#: How long a process has to exit after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT = 5.0

#: The system account Dante's C{username} method authenticates.
DANTE_USER = "sockstest"

#: The password L{startDante} gives L{DANTE_USER}.
DANTE_PASSWORD = "sockstest-Pa55"

#: The credentials L{startMicrosocks} configures when C{auth=True}.
MICROSOCKS_USER = "microuser"
MICROSOCKS_PASSWORD = "micro-Pa55"

_DANTE_COMMANDS = frozenset({"connect", "bind", "udpassociate"})


@dataclass(frozen=True)
class ThirdPartyServer:
    """
    A running third-party SOCKS server.

    @ivar name: A short label, such as C{"dante"}.
    @ivar host: The address the server listens on (always loopback).
    @ivar port: The TCP port of its SOCKS service.
    @ivar username: The username it requires, or L{None} without auth.
    @ivar password: The password it requires, or L{None} without auth.
    @ivar logPath: The absolute path of the server's log file.
    """

    name: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    logPath: str = ""


#: Where C{.ci/build-dante-gssapi} installs the danted it builds with GSSAPI
#: (Debian's dante-server is built without it).
DANTE_GSSAPI = "/opt/socks-twisted-peers/dante-gssapi/sbin/danted"


def requireGSSAPIDante() -> str:
    """
    Find the danted built with GSSAPI by C{.ci/build-dante-gssapi}.

    @return: L{DANTE_GSSAPI}.
    @raise AssertionError: If it is missing and C{CI=true} (C{.ci/run}
        builds it).
    @raise SkipTest: If it is missing outside CI.
    """
    return requireBuilt(
        DANTE_GSSAPI, "Debian's danted has no GSSAPI", ".ci/build-dante-gssapi"
    )


#: Where C{.ci/build-dante-gssapi} installs Dante's client preload library,
#: built with GSSAPI (Debian's dante-client is built without it).
DANTE_GSSAPI_CLIENT = "/opt/socks-twisted-peers/dante-gssapi/lib/libdsocks.so"


def requireGSSAPIDanteClient() -> str:
    """
    Find Dante's client library (C{libdsocks}, what C{socksify} preloads)
    built with GSSAPI by C{.ci/build-dante-gssapi}.

    @return: L{DANTE_GSSAPI_CLIENT}.
    @raise AssertionError: If it is missing and C{CI=true} (C{.ci/run}
        builds it).
    @raise SkipTest: If it is missing outside CI.
    """
    return requireBuilt(
        DANTE_GSSAPI_CLIENT,
        "Debian's dante-client has no GSSAPI",
        ".ci/build-dante-gssapi",
    )


def _requireRoot(what: str) -> None:
    """
    Skip (or fail, in CI) unless this process runs as root.
    """
    if os.geteuid() == 0:
        return
    peerMissing(f"{what} needs root")


def freePort() -> int:
    """
    Return a TCP port on 127.0.0.1 that was free a moment ago.

    The socket is closed before returning, so another process may take the
    port before the caller binds it; see the module docstring.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def _tempDir(testCase: TestCase) -> str:
    """
    Create and return an absolute, fresh directory for one test's files.
    """
    relative: str = testCase.mktemp()
    path = os.path.abspath(relative)
    os.makedirs(path)
    return path


def _readLog(logPath: str) -> str:
    try:
        with open(logPath, errors="replace") as f:
            return f.read()
    except OSError as e:
        return f"<could not read {logPath}: {e}>"


def _stopProcess(process: subprocess.Popen[bytes]) -> None:
    """
    End one child we started: SIGTERM, a bounded wait, then SIGKILL.
    """
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


def _spawn(
    testCase: TestCase,
    argv: Sequence[str],
    logPath: str,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """
    Start C{argv} with stdout and stderr appended to C{logPath}, and
    register its termination as a cleanup of C{testCase}.

    @param env: The child's environment; ours by default.
    """
    with open(logPath, "ab") as log:
        process = subprocess.Popen(
            list(argv),
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            close_fds=True,
        )
    testCase.addCleanup(_stopProcess, process)
    return process


def _listeningInodes(port: int) -> set[str] | None:
    """
    Return the socket inodes listening on C{127.0.0.1:port}, from
    C{/proc/net/tcp}, or L{None} where that file does not exist.
    """
    try:
        with open("/proc/net/tcp") as f:
            lines = f.readlines()[1:]
    except OSError:
        return None
    # The kernel prints the address as a 32-bit number in host byte order.
    (address,) = struct.unpack("=I", socket.inet_aton(LOOPBACK))
    wanted = f"{address:08X}:{port:04X}"
    inodes = set()
    for line in lines:
        fields = line.split()
        # local_address, state (0A is LISTEN), inode
        if fields[1] == wanted and fields[3] == "0A":
            inodes.add(fields[9])
    return inodes


def _ownsListener(pid: int, port: int) -> bool:
    """
    Whether process C{pid} holds the socket listening on C{127.0.0.1:port}.

    This tells our child from a stranger that took the port in the race
    described in the module docstring.  Where C{/proc} cannot answer, assume
    it does.
    """
    inodes = _listeningInodes(port)
    if inodes is None:
        return True
    fdDir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fdDir)
    except OSError:
        return True
    for fd in fds:
        try:
            target = os.readlink(os.path.join(fdDir, fd))
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def _waitForPort(
    process: subprocess.Popen[bytes],
    port: int,
    logPaths: Sequence[str],
    timeout: float = READY_TIMEOUT,
) -> None:
    """
    Poll until C{127.0.0.1:port} accepts a TCP connection on a socket that
    C{process} holds.

    @raise AssertionError: With the contents of C{logPaths}, if the process
        exits or is not accepting on the port after C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        exitCode = process.poll()
        if exitCode is not None:
            problem = f"exited with status {exitCode}"
            break
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1.0):
                pass
        except OSError:
            pass
        else:
            if _ownsListener(process.pid, port):
                return
        if time.monotonic() >= deadline:
            problem = f"did not accept on {LOOPBACK}:{port} within {timeout}s"
            break
        time.sleep(0.05)
    logs = "\n".join(f"--- {path} ---\n{_readLog(path)}" for path in logPaths)
    raise AssertionError(f"{process.args!r} {problem}\n{logs}")


def _run(argv: Sequence[str], stdin: bytes = b"") -> None:
    """
    Run a short helper command to completion, failing with its output.
    """
    result = subprocess.run(
        list(argv),
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{list(argv)!r} exited with {result.returncode}: "
            f"{result.stdout.decode(errors='replace')}"
        )


def ensureDanteUser() -> tuple[str, str]:
    """
    Create (if needed) the system account L{DANTE_USER} and set its password
    to L{DANTE_PASSWORD}.  Idempotent; needs root.

    @return: The username and password.
    """
    _requireRoot(f"creating the system user {DANTE_USER!r}")
    useradd = requirePeer("useradd", "passwd")
    chpasswd = requirePeer("chpasswd", "passwd")
    result = subprocess.run(
        [
            useradd,
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            DANTE_USER,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=30,
        check=False,
    )
    # 9: the user already exists (perhaps created by a parallel test run).
    if result.returncode not in (0, 9):
        raise AssertionError(
            f"useradd {DANTE_USER} exited with {result.returncode}: "
            f"{result.stdout.decode(errors='replace')}"
        )
    _run([chpasswd], f"{DANTE_USER}:{DANTE_PASSWORD}\n".encode())
    return DANTE_USER, DANTE_PASSWORD


def danteConfig(
    *,
    port: int,
    logPath: str,
    auth: bool,
    commands: Sequence[str],
    asRoot: bool,
    gssapiKeytab: str | None = None,
    gssapiService: str = "rcmd",
    gssapiEncryption: str = "clear integrity confidentiality",
    gssapiNEC: bool = False,
) -> str:
    """
    Render a C{danted.conf} that serves only loopback clients and targets.

    C{bind} also allows C{bindreply} and C{udpassociate} also allows
    C{udpreply}, so the replies of those commands are not blocked.

    @param asRoot: Whether danted will run as root.  Only then may the
        configuration name C{user.privileged} / C{user.unprivileged}: a
        non-root danted given them exits at start.
    @param gssapiKeytab: With it, the only method is GSSAPI (RFC 1961) with
        the service keys of this keytab (C{auth} is then ignored).  The
        C{gssapi.*} settings go in the client rule: Dante 1.4 negotiates the
        method with the client rule's (C{sockd_negotiate.c} copies them from
        C{CRULE_OR_HRULE(neg)}); in a socks rule they would be ignored and
        the defaults (C{/etc/sockd.keytab}, service C{rcmd}) used.
    @param gssapiService: Dante's C{gssapi.servicename}: with a C{/}, a
        whole principal name.
    @param gssapiEncryption: Dante's C{gssapi.enctype}: the protection
        levels it grants, from C{clear}, C{integrity} and
        C{confidentiality}.
    @param gssapiNEC: Add C{clientcompatibility: necgssapi} to the client
        rule: Dante then also takes the protection level message unwrapped,
        as the NEC reference implementation sends it (and answers it
        unwrapped).
    """
    unknown = set(commands) - _DANTE_COMMANDS
    if unknown:
        raise ValueError(f"unknown Dante commands: {sorted(unknown)}")
    allowed = list(commands)
    if "bind" in commands:
        allowed.append("bindreply")
    if "udpassociate" in commands:
        allowed.append("udpreply")
    method = "username" if auth else "none"
    gssapi = ""
    if gssapiKeytab is not None:
        method = "gssapi"
        gssapi = (
            f"    gssapi.keytab: {gssapiKeytab}\n"
            f"    gssapi.servicename: {gssapiService}\n"
            f"    gssapi.enctype: {gssapiEncryption}\n"
        )
        if gssapiNEC:
            gssapi += "    clientcompatibility: necgssapi\n"
    users = "user.privileged: root\nuser.unprivileged: nobody\n" if asRoot else ""
    return f"""\
logoutput: {logPath}
internal: {LOOPBACK} port = {port}
external: {LOOPBACK}
clientmethod: none
socksmethod: {method}
{users}
client pass {{
    from: 127.0.0.0/8 to: 127.0.0.0/8
{gssapi}    log: error
}}

socks pass {{
    from: 127.0.0.0/8 to: 127.0.0.0/8
    command: {" ".join(allowed)}
    protocol: tcp udp
    socksmethod: {method}
    log: error
}}
"""


def startDante(
    testCase: TestCase,
    *,
    auth: bool = False,
    commands: Sequence[str] = ("connect", "bind", "udpassociate"),
    gssapiKeytab: str | None = None,
    gssapiService: str = "rcmd",
    gssapiEncryption: str = "clear integrity confidentiality",
    gssapiNEC: bool = False,
    executable: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ThirdPartyServer:
    """
    Start Dante's C{danted} on a free loopback port.

    Dante (1.4.2 in Debian 12) speaks SOCKS4 and SOCKS5 with CONNECT, BIND
    and UDP ASSOCIATE.  Observed behaviour with this configuration:

        - Method selection: it picks C{00} without auth, C{02} with auth,
          and answers C{05 FF} when the client offers neither.  A wrong
          username or password gets the RFC 1929 status C{01 01}, then EOF.
          With auth, SOCKS4 requests are rejected (C{5B}).
        - SOCKS4a is not supported: a request for C{0.0.0.x} plus a host
          name is rejected with C{5B}.
        - Replies carry a real bound address, 127.0.0.1 and a port,
          including both BIND replies and the UDP relay address, because
          the external address is loopback.
        - A refused target gives C{05}, an unresolvable name C{04} (with the
          name echoed in the reply), an IPv6 target C{08} (address type not
          supported: the external side has no IPv6 address).

    With C{auth=True} it checks the system account L{DANTE_USER} (created
    here, which needs root) against the shadow password database.

    @param testCase: The running test; the server stops at its cleanup.
    @param auth: Require RFC 1929 username/password authentication.
    @param commands: The SOCKS commands to allow, from C{"connect"},
        C{"bind"} and C{"udpassociate"}.
    @param gssapiKeytab: Serve only the GSSAPI method with this keytab (see
        L{danteConfig}).  danted reads the Kerberos configuration of this
        process's environment (the test realm's, after
        L{tests._kerberos.requireKerberosRealm}).
    @param gssapiService: See L{danteConfig}.
    @param gssapiEncryption: See L{danteConfig}.
    @param gssapiNEC: See L{danteConfig}.
    @param executable: The danted to run (such as L{requireGSSAPIDante}'s),
        instead of the one of the C{dante-server} package.
    @param env: danted's environment; ours by default.
    """
    danted = executable or requirePeer("danted", "dante-server")
    username: str | None = None
    password: str | None = None
    if auth:
        username, password = ensureDanteUser()
    directory = _tempDir(testCase)
    port = freePort()
    logPath = os.path.join(directory, "danted.log")
    outputPath = os.path.join(directory, "danted.out")
    configPath = os.path.join(directory, "danted.conf")
    with open(configPath, "w") as f:
        f.write(
            danteConfig(
                port=port,
                logPath=logPath,
                auth=auth,
                commands=commands,
                asRoot=os.geteuid() == 0,
                gssapiKeytab=gssapiKeytab,
                gssapiService=gssapiService,
                gssapiEncryption=gssapiEncryption,
                gssapiNEC=gssapiNEC,
            )
        )
    # Without -D danted stays in the foreground, so the PID we hold is the
    # mother process; on SIGTERM it ends its own children.
    process = _spawn(
        testCase,
        [
            danted,
            "-f",
            configPath,
            "-N",
            "1",
            "-p",
            os.path.join(directory, "danted.pid"),
        ],
        outputPath,
        env,
    )
    _waitForPort(process, port, [outputPath, logPath, configPath])
    return ThirdPartyServer(
        name="dante",
        host=LOOPBACK,
        port=port,
        username=username,
        password=password,
        logPath=logPath,
    )


def startMicrosocks(testCase: TestCase, *, auth: bool = False) -> ThirdPartyServer:
    """
    Start microsocks on a free loopback port.

    microsocks speaks SOCKS5 CONNECT only.  Observed behaviour (1.0.3 in
    Debian 12):

        - Method selection: C{00} without auth, C{02} with auth, C{05 FF}
          otherwise.  A wrong username or password gets status C{01 02}.
        - A SOCKS4 request is answered with C{05 FF} and closed.
        - BIND and UDP ASSOCIATE are refused with C{07}.
        - Every reply's bound address is C{0.0.0.0:0}.
        - A refused target gives C{05}, an unresolvable name C{01}.

    With C{auth=True} it requires L{MICROSOCKS_USER} /
    L{MICROSOCKS_PASSWORD}.

    @param testCase: The running test; the server stops at its cleanup.
    @param auth: Require RFC 1929 username/password authentication.
    """
    microsocks = requirePeer("microsocks", "microsocks")
    directory = _tempDir(testCase)
    port = freePort()
    logPath = os.path.join(directory, "microsocks.log")
    argv = [microsocks, "-i", LOOPBACK, "-p", str(port)]
    username: str | None = None
    password: str | None = None
    if auth:
        username, password = MICROSOCKS_USER, MICROSOCKS_PASSWORD
        argv += ["-u", username, "-P", password]
    process = _spawn(testCase, argv, logPath)
    _waitForPort(process, port, [logPath])
    return ThirdPartyServer(
        name="microsocks",
        host=LOOPBACK,
        port=port,
        username=username,
        password=password,
        logPath=logPath,
    )


def _sshdConfig(
    *, port: int, hostKey: str, authorizedKeys: str, pidFile: str, user: str
) -> str:
    return f"""\
ListenAddress {LOOPBACK}
Port {port}
HostKey {hostKey}
PidFile {pidFile}
AuthorizedKeysFile {authorizedKeys}
AllowUsers {user}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
PermitOpen any
X11Forwarding no
PrintMotd no
LogLevel VERBOSE
"""


def startSSHDynamic(testCase: TestCase) -> ThirdPartyServer:
    """
    Start a private C{sshd} and an C{ssh -D} client logged into it, and
    return the SOCKS port of the client's dynamic forwarding.

    OpenSSH's dynamic forwarding speaks SOCKS4, SOCKS4a and SOCKS5 CONNECT
    only.  Observed behaviour (OpenSSH 9.2 in Debian 12):

        - It accepts only method C{00}; a client that does not offer it is
          disconnected without a C{05 FF} reply.
        - Success replies carry the bound address C{0.0.0.0:0}.
        - Failures send no reply at all: a refused or unresolvable target,
          BIND and UDP ASSOCIATE (SOCKS5 or SOCKS4) all end in EOF.

    Both processes stop at cleanup.

    The login user is the current user (root when run as root).  With
    C{UsePAM no}, sshd refuses accounts whose password field is locked
    (starts with C{!}); the login then fails with the sshd log.

    @param testCase: The running test; both processes stop at its cleanup.
    """
    sshd = requirePeer("sshd", "openssh-server")
    ssh = requirePeer("ssh", "openssh-client")
    sshKeygen = requirePeer("ssh-keygen", "openssh-client")
    if not os.path.isdir("/run/sshd"):
        try:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        except OSError as e:
            peerMissing(f"sshd needs the privilege separation directory /run/sshd: {e}")

    directory = _tempDir(testCase)
    hostKey = os.path.join(directory, "ssh_host_ed25519_key")
    clientKey = os.path.join(directory, "id_ed25519")
    authorizedKeys = os.path.join(directory, "authorized_keys")
    for key in (hostKey, clientKey):
        _run([sshKeygen, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", key])
    shutil.copyfile(clientKey + ".pub", authorizedKeys)

    user = getpass.getuser()
    sshdPort = freePort()
    configPath = os.path.join(directory, "sshd_config")
    with open(configPath, "w") as f:
        f.write(
            _sshdConfig(
                port=sshdPort,
                hostKey=hostKey,
                authorizedKeys=authorizedKeys,
                pidFile=os.path.join(directory, "sshd.pid"),
                user=user,
            )
        )
    sshdLog = os.path.join(directory, "sshd.log")
    sshdProcess = _spawn(testCase, [sshd, "-D", "-e", "-f", configPath], sshdLog)
    _waitForPort(sshdProcess, sshdPort, [sshdLog, configPath])

    socksPort = freePort()
    sshLog = os.path.join(directory, "ssh.log")
    sshProcess = _spawn(
        testCase,
        [
            ssh,
            "-N",
            "-F",
            "/dev/null",
            "-D",
            f"{LOOPBACK}:{socksPort}",
            "-p",
            str(sshdPort),
            "-i",
            clientKey,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            f"{user}@{LOOPBACK}",
        ],
        sshLog,
    )
    _waitForPort(sshProcess, socksPort, [sshLog, sshdLog])
    return ThirdPartyServer(
        name="ssh-dynamic",
        host=LOOPBACK,
        port=socksPort,
        logPath=sshLog,
    )


def startHAProxy(
    testCase: TestCase,
    backends: Sequence[tuple[str, int]],
    *,
    source: str,
) -> ThirdPartyServer:
    """
    Start HAProxy on a free port of 127.0.0.1, balancing TCP connections
    round-robin over C{backends}, each told the real client by a PROXY
    protocol version 2 header (C{send-proxy-v2}), with a TCP health check
    every second.

    @param backends: The nodes, as (address, port).
    @param source: The address HAProxy connects to the nodes from, so that
        a node that mistook HAProxy for the client would show it.
    """
    haproxy = requirePeer("haproxy", "haproxy")
    directory = _tempDir(testCase)
    port = freePort()
    logPath = os.path.join(directory, "haproxy.log")
    servers = "\n".join(
        f"    server node{index} {host}:{nodePort} send-proxy-v2 check inter 1s"
        for index, (host, nodePort) in enumerate(backends, 1)
    )
    configPath = os.path.join(directory, "haproxy.cfg")
    with open(configPath, "w") as config:
        config.write(
            "global\n"
            "    log stderr format short local0 info\n"
            "defaults\n"
            "    mode tcp\n"
            "    log global\n"
            "    option tcplog\n"
            "    timeout connect 5s\n"
            "    timeout client 60s\n"
            "    timeout server 60s\n"
            "frontend socks\n"
            f"    bind {LOOPBACK}:{port}\n"
            "    default_backend nodes\n"
            "backend nodes\n"
            "    balance roundrobin\n"
            f"    source {source}\n"
            f"{servers}\n"
        )
    process = _spawn(testCase, [haproxy, "-db", "-f", configPath], logPath)
    _waitForPort(process, port, [logPath, configPath])
    return ThirdPartyServer(
        name="haproxy",
        host=LOOPBACK,
        port=port,
        username=None,
        password=None,
        logPath=logPath,
    )
