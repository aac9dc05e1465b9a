"""The client side of a hostlink request: connect, authenticate, run, and report how it ended.

Two ways to run a command. Over a Unix socket the client passes its own stdin, stdout and stderr
to the daemon (SCM_RIGHTS) and the command uses them directly: nothing is relayed, so output is
byte-exact and a terminal stays a terminal. Otherwise (``-j``, TCP) the streams are relayed as
frames. Only cheap modules are imported here: this is the hot path of ``hostlink exec``.
"""

import os
import sys

import _signal
import _socket

from . import protocol as p
from .errors import FROM_DAEMON, AuthFailed, ConnectFailed, HostlinkError, TimedOut

RECV_SIZE = 1 << 20
STDIN_CHUNK = 256 << 10
_FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)


class Endpoint:
    """Where a daemon listens, and the token it wants."""

    def __init__(self, name="", socket="", address="", port=9876, token="", timeout_ms=0):
        self.name = name
        self.socket = socket
        self.address = address
        self.port = port
        self.token = token
        self.timeout_ms = timeout_ms

    @property
    def where(self):
        return self.socket or "%s:%d" % (self.address, self.port)


class Result:
    """How a request ended, shaped like subprocess.CompletedProcess (returncode, stdout, stderr)."""

    def __init__(self):
        self.node = ""
        self.returncode = None
        self.signal = 0
        self.timed_out = False
        self.duration_ms = 0
        self.uptime_s = 0
        self.stdout = None
        self.stderr = None
        self.timeout_ms = 0


def connect(ep, connect_timeout_ms=5000):
    """A connected socket to ``ep``; ConnectFailed says what went wrong and how to fix it."""
    if ep.socket:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        target = ep.socket
    else:
        sock = _socket.socket(_socket.AF_INET6 if ":" in ep.address else _socket.AF_INET,
                              _socket.SOCK_STREAM)
        target = (ep.address, ep.port)
    sock.settimeout(connect_timeout_ms / 1000)
    try:
        sock.connect(target)
    except OSError as exc:
        sock.close()
        raise ConnectFailed(_connect_hint(ep, exc)) from None
    sock.settimeout(None)
    return sock


def _connect_hint(ep, exc):
    import errno
    where = ep.where
    if not ep.socket:
        return "cannot connect to %s: %s" % (where, exc.strerror or "timed out")
    if exc.errno == errno.ENOENT:
        folder = os.path.dirname(where)
        if os.path.isdir(folder) and os.listdir(folder) == []:
            why = "the directory %s is there but empty: hostlinkd is not running on the host" % folder
        elif os.path.isdir(folder):
            why = "hostlinkd is not running, or listens elsewhere"
        else:
            why = "%s is not mounted into this container (mount the socket's directory)" % folder
        return ("no socket at %s: %s; start it on the host with 'hostlinkd' or "
                "'hostlink-install host', or set HOSTLINK_SOCKET" % (where, why))
    if exc.errno == errno.ECONNREFUSED:
        return ("%s refuses connections: hostlinkd is not running (stale socket); start it on the "
                "host with 'hostlinkd'" % where)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ("permission denied on %s: this user (uid %d) needs the socket's group; add it "
                "with group_add (compose) or --group-add (docker run)" % (where, os.getuid()))
    return "cannot connect to %s: %s" % (where, exc.strerror or exc)


def _std_fds():
    """Our stdin, stdout, stderr; a closed one is replaced by /dev/null."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    return fds


class Session:
    """One request over one connection."""

    def __init__(self, ep, connect_timeout_ms=5000, client_name="hostlink"):
        self.ep = ep
        self.sock = connect(ep, connect_timeout_ms)
        self.conn = p.Connection(p.CLIENT)
        self.result = Result()
        self._hello = self.conn.send(p.Auth(ep.token, client_name))

    def close(self):
        self.sock.close()

    def ping(self):
        """Result with node and uptime_s."""
        self._send(self._hello + self.conn.send(p.Ping()))
        self._hello = b""
        while True:
            event = self._next()
            if isinstance(event, p.Pong):
                self.result.node = event.node
                self.result.uptime_s = event.uptime_s
                return self.result

    def exec(self, request, capture=False):
        """Run ``request`` (a protocol.Exec); capture=True relays and keeps output in the Result."""
        fds_mode = request.mode == "fds"
        data = self._hello + self.conn.send(request)
        self._hello = b""
        old = {sig: _signal.signal(sig, self._forward) for sig in _FORWARDED}
        try:
            if fds_mode:
                std = _std_fds()
                self.sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                            _pack_fds(std))])
                for fd in std[3:]:
                    os.close(fd)
                while self._handle(self._next(), None):
                    pass
            else:
                self._send(data)
                self._relay(capture)
        finally:
            for sig, handler in old.items():
                _signal.signal(sig, handler)
        return self.result

    # ---- internals -----------------------------------------------------------------------------

    def _forward(self, signum, frame):
        try:
            self.sock.send(self.conn.send(p.Signal(signum)))
        except OSError:
            pass

    def _send(self, data):
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ConnectFailed("the daemon at %s went away: %s" % (self.ep.where, exc.strerror))

    def _next(self):
        """The next event, reading from the socket as needed."""
        while True:
            event = self._parse()
            if event is not p.NEED_DATA:
                return event
            try:
                data = self.sock.recv(RECV_SIZE)
            except OSError as exc:
                raise ConnectFailed("lost the daemon at %s: %s" % (self.ep.where, exc.strerror))
            self.conn.receive_data(data)

    def _parse(self):
        try:
            event = self.conn.next_event()
        except p.ProtocolError as exc:
            raise ConnectFailed("the daemon at %s broke the protocol: %s" % (self.ep.where, exc))
        if event is None:
            raise ConnectFailed("the daemon at %s closed the connection before answering "
                                "(it may have been restarted)" % self.ep.where)
        if isinstance(event, p.Error):
            cls = FROM_DAEMON.get(event.code, HostlinkError)
            raise cls(event.message)
        return event

    def _handle(self, event, out):
        """Apply one event; False once the command has ended."""
        r = self.result
        if isinstance(event, p.Ok):
            r.node = event.node
        elif isinstance(event, p.Started):
            r.timeout_ms = event.timeout_ms
        elif isinstance(event, p.Exit):
            r.returncode, r.signal = event.exit_code, event.signal
            r.timed_out, r.duration_ms = event.timed_out, event.duration_ms
            return False
        elif out is not None:
            out(event)
        return True

    def _relay(self, capture):
        """Pump stdin to the daemon and its output frames to ours (or to the Result)."""
        import select
        r = self.result
        if capture:
            chunks = {p.Stdout: [], p.Stderr: []}

            def out(event):
                chunks[type(event)].append(event.data)
        else:
            def out(event):
                _write_all(1 if type(event) is p.Stdout else 2, event.data)
        sock_fd = self.sock.fileno()
        self.sock.setblocking(False)
        pending = b""
        stdin_open = True
        try:
            os.fstat(0)
        except OSError:
            stdin_open = False
        if not stdin_open:
            pending = self.conn.send(p.StdinEof())
        poller = select.poll()
        rbuf = bytearray(RECV_SIZE)  # reused for every read: no allocation per chunk
        rview = memoryview(rbuf)
        running = True
        while running:
            poller.register(sock_fd, select.POLLIN | (select.POLLOUT if pending else 0))
            if stdin_open and not pending:
                poller.register(0, select.POLLIN)
            elif stdin_open:
                try:
                    poller.unregister(0)
                except KeyError:
                    pass
            for fd, ev in poller.poll():
                if fd == 0:
                    data = os.read(0, STDIN_CHUNK)
                    pending += self.conn.send(p.Stdin(data) if data else p.StdinEof())
                    if not data:
                        stdin_open = False
                        poller.unregister(0)
                elif ev & select.POLLOUT and pending:
                    try:
                        pending = pending[self.sock.send(pending):]
                    except BlockingIOError:
                        pass
                    except OSError:
                        pending = b""  # the command ended and the daemon stopped reading
                if fd == sock_fd and ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    try:
                        n = self.sock.recv_into(rbuf)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        raise ConnectFailed("lost the daemon at %s: %s"
                                            % (self.ep.where, exc.strerror))
                    self.conn.receive_data(rview[:n])
                    while running:
                        event = self._parse()
                        if event is p.NEED_DATA:
                            break
                        running = self._handle(event, out)
        if capture:
            r.stdout = b"".join(chunks[p.Stdout])
            r.stderr = b"".join(chunks[p.Stderr])


def _pack_fds(fds):
    import struct
    return struct.pack("%di" % len(fds), *fds)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BrokenPipeError:
            raise SystemExit(141)  # our reader went away, as a local command would on SIGPIPE


def check_timeout(result, requested_ms):
    """A warning when the daemon ran the command with less time than asked, else ""."""
    if requested_ms and result.timeout_ms and result.timeout_ms < requested_ms:
        return ("timeout %d ms is over the daemon's max_timeout_ms; it runs with %d ms"
                % (requested_ms, result.timeout_ms))
    return ""


def raise_for(result):
    """TimedOut if the command hit its timeout."""
    if result.timed_out:
        raise TimedOut("timed out after %d ms; the command's process group was killed"
                       % result.timeout_ms)
