"""The client side of a hostlink request: connect, authenticate, run, and report how it ended.

Two ways to run a command. Over a Unix socket the client passes its own stdin, stdout and stderr
to the daemon (SCM_RIGHTS) and the command uses them directly: nothing is relayed, so output is
byte-exact and a terminal stays a terminal. Otherwise (``-j``, TCP) the streams are relayed as
frames. Only cheap modules are imported here: this is the hot path of ``hostlink exec``.
"""

import posix  # not os: see cli.py

import _signal
import _socket
from _struct import pack as _pack  # struct would be one more module to import

from ..wire import protocol as p
from .errors import FROM_DAEMON, ConnectFailed, HostlinkError, TimedOut

RECV_SIZE = 1 << 20
# A forwarded signal still unsent after this long waits behind stdin the command does not read.
STUCK_AFTER_MS = 1000
STDIN_CHUNK = 256 << 10
_F_SETPIPE_SZ = 1031  # Linux fcntl; fcntl.F_SETPIPE_SZ appears only in Python 3.10
_FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)


class Endpoint:
    """Where a daemon listens, and the token it wants."""

    def __init__(self, name="", socket="", address="", port=9876, token="", timeout_ms=0,
                 tls="required", fingerprint="", protocol="hostlink"):
        self.name = name
        self.socket = socket
        self.address = address
        self.port = port
        self.token = token
        self.timeout_ms = timeout_ms
        self.tls = tls  # TCP only: "required" (pinned by fingerprint) or "off"
        self.fingerprint = fingerprint
        self.protocol = protocol  # "hostlink", or "hlnk" for a first-hostlink daemon

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
        self.pid = 0  # the command's, on the host (Started)


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
        if not ep.socket and ep.tls != "off" and ep.protocol != "hlnk":
            sock = _tls(ep, sock)
    except OSError as exc:
        sock.close()
        raise ConnectFailed(_connect_hint(ep, exc)) from None
    sock.settimeout(None)
    return sock


def _tls(ep, raw):
    """Wrap a TCP socket in TLS and check the daemon's certificate against the pinned fingerprint."""
    import hashlib
    import socket as socket_mod
    import ssl
    if not ep.fingerprint:
        raw.close()
        raise ConnectFailed(
            "target %s (%s) has no tls_fingerprint: run 'hostlink-install show-target' on that host "
            "and put its tls_fingerprint line in targets.conf (or tls = off for a WireGuard-only "
            "address)" % (ep.name or "-a", ep.where))
    sock = socket_mod.socket(fileno=raw.detach())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the pin below is the check, as ssh's known_hosts is
    tls_sock = ctx.wrap_socket(sock)
    seen = "sha256:" + hashlib.sha256(tls_sock.getpeercert(binary_form=True)).hexdigest()
    want = ep.fingerprint.lower().replace(":", "").replace("sha256", "sha256:", 1)
    if seen != want:
        tls_sock.close()
        raise ConnectFailed(
            "TLS fingerprint mismatch for %s: expected %s, the daemon has %s; if its certificate was "
            "remade, update tls_fingerprint in targets.conf (hostlink-install show-target on that "
            "host prints it), otherwise something is in the middle" % (ep.where, ep.fingerprint, seen))
    return tls_sock


def _connect_hint(ep, exc):
    import errno
    import os
    where = ep.where
    if not ep.socket:
        return "cannot connect to %s: %s" % (where, exc.strerror or exc or "timed out")
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


class Session:
    """One request over one connection."""

    def __init__(self, ep, connect_timeout_ms=5000, client_name="hostlink"):
        self.ep = ep
        self.sock = connect(ep, connect_timeout_ms)
        self.conn = p.Connection(p.CLIENT)
        self.result = Result()
        self._hello = self.conn.send(p.Auth(ep.token, client_name))
        self.on_wait = None  # called with a protocol.Waiting when a person must approve
        self.on_stuck = None  # called once when a forwarded signal waits behind unread stdin
        self._urgent = None  # relaying: Signal and Resize events for the loop to send
        self._owed = 0  # relaying: bytes to send before the last signal is out
        self._aside = None  # False once a daemon refused Kill

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

    def call(self, event):
        """Send a JobRequest (or a detached Exec) and return the daemon's JSON Reply as a dict."""
        import json
        self._send(self._hello + self.conn.send(event))
        self._hello = b""
        while True:
            reply = self._next()
            if isinstance(reply, p.Ok):
                self.result.node = reply.node
            elif isinstance(reply, p.Waiting):
                if self.on_wait is not None:
                    self.on_wait(reply)
            elif isinstance(reply, p.Reply):
                return json.loads(reply.text)

    def stream(self, event):
        """Send a JobRequest whose answer streams (tail, wait); output goes to ours."""
        self._send(self._hello + self.conn.send(event))
        self._hello = b""
        self._relay(False, stdin=False)
        return self.result

    def exec(self, request, capture=False, out=None, signals=True, stdio=None, stdin_fd=0):
        """Run ``request`` (a protocol.Exec); capture=True relays and keeps output in the Result.

        ``out(kind, data)`` receives relayed output instead of our stdout/stderr (fan-out);
        ``signals=False`` leaves signal handlers alone (only the main thread may set them).
        """
        fds_mode = request.mode == "fds"
        data = self._hello + self.conn.send(request)
        self._hello = b""
        old = {sig: _signal.signal(sig, self._forward) for sig in _FORWARDED} if signals else {}
        if signals and request.tty:
            old[_signal.SIGWINCH] = _signal.signal(_signal.SIGWINCH, self._resize)
        try:
            if fds_mode:
                # cli.main gave any closed standard descriptor /dev/null, so 0, 1, 2 are valid.
                std = list(stdio) if stdio else [0, 1, 2]
                pipes = []
                if capture or out is not None:
                    # Output to keep or to cap: pipes of ours become the command's stdout and
                    # stderr, so it comes straight here instead of relayed by the daemon.
                    pipes = [posix.pipe(), posix.pipe()]
                    std[1], std[2] = pipes[0][1], pipes[1][1]
                try:
                    self.sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                                _pack_fds(std))])
                finally:
                    for _, w in pipes:
                        posix.close(w)  # the command has its own; ours would hold off the end
                if pipes:
                    self._collect(capture, out, pipes[0][0], pipes[1][0])
                else:
                    while self._handle(self._next(), None):
                        pass
            else:
                self._send(data)
                self._relay(capture, out, stdin_fd=stdin_fd, wake=bool(old))
        finally:
            for sig, handler in old.items():
                _signal.signal(sig, handler)
        return self.result

    # ---- internals -----------------------------------------------------------------------------

    def _resize(self, signum, frame):
        from .commands import _winsize
        rows, cols = _winsize()
        if rows and cols:
            self._queue(p.Resize(rows, cols))

    def _forward(self, signum, frame):
        self._queue(p.Signal(signum))

    def _queue(self, event):
        """Send an event from a signal handler. While relaying, the loop sends it after the frame
        it is in the middle of (the handler may run between any two of its steps); otherwise
        nothing else writes, and it goes at once."""
        if self._urgent is not None:
            if isinstance(event, p.Signal) and (self._owed > 0 or self._urgent):
                # The last signal is still stuck behind stdin the command does not read: a
                # second one gives up. We exit; the daemon ends the command as on any hang-up.
                raise KeyboardInterrupt
            self._urgent.append(event)
            return
        try:
            self.sock.sendall(self.conn.send(event))
        except OSError:
            pass

    def _kill_aside(self, event):
        """Deliver a signal on a connection of its own (protocol Kill), so that it does not wait
        behind stdin in this one; False where that cannot be done (a daemon before Kill)."""
        if not self.result.pid or self._aside is False:
            return False
        try:
            side = Session(self.ep, client_name="hostlink-signal")
            try:
                side.call(p.Kill(self.result.pid, event.signum))
            finally:
                side.close()
        except HostlinkError:
            self._aside = False  # it said no once: the frame in this connection will do
            return False
        return True

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
            self._feed(self.sock.recv)

    def _feed(self, read, again=()):
        """One read from the daemon into the parser; ConnectFailed when the connection broke
        (``again``: what a non-blocking read raises when there is nothing yet, let through)."""
        try:
            data = read(RECV_SIZE)
        except again:
            raise
        except OSError as exc:
            raise ConnectFailed("lost the daemon at %s: %s" % (self.ep.where, exc.strerror or exc))
        self.conn.receive_data(data)

    def _dispatch(self, out):
        """Apply every whole event received so far; False once the command has ended."""
        while True:
            event = self._parse()
            if event is p.NEED_DATA:
                return True
            if not self._handle(event, out):
                return False

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
            r.timeout_ms, r.pid = event.timeout_ms, event.pid
        elif isinstance(event, p.Waiting):
            if self.on_wait is not None:
                self.on_wait(event)
        elif isinstance(event, p.Exit):
            r.returncode, r.signal = event.exit_code, event.signal
            r.timed_out, r.duration_ms = event.timed_out, event.duration_ms
            return False
        elif out is not None:
            out(event)
        return True

    def _collect(self, capture, sink, out_r, err_r):
        """fds mode with our own pipes for output: read them (into the Result, or to ``sink``)
        until the command's Exit, then what is left in them without waiting for more."""
        import select
        chunks = {1: [], 2: []}
        pipes = {out_r: 1, err_r: 2}
        _grow_pipes(pipes)
        poller = select.poll()
        for fd in pipes:
            posix.set_blocking(fd, False)
            poller.register(fd, select.POLLIN)
        sock_fd = self.sock.fileno()
        poller.register(sock_fd, select.POLLIN)

        def take(fd):
            """Read what ``fd`` has; False at its end or when it is empty."""
            try:
                data = posix.read(fd, RECV_SIZE)
            except BlockingIOError:
                return False
            if not data:
                poller.unregister(fd)
                del pipes[fd]
                posix.close(fd)
                return False
            if capture:
                chunks[pipes[fd]].append(data)
            else:
                sink(pipes[fd], data)
            return True
        try:
            running = True
            while running:
                for fd, _ in poller.poll():
                    if fd != sock_fd:
                        take(fd)
                        continue
                    self._feed(self.sock.recv)
                    running = self._dispatch(None)
            for fd in list(pipes):  # written before the exit; a background child's later output
                while fd in pipes and take(fd):  # is not waited for
                    pass
        finally:
            for fd in pipes:
                posix.close(fd)
        if capture:
            self.result.stdout = b"".join(chunks[1])
            self.result.stderr = b"".join(chunks[2])

    def _relay(self, capture, sink=None, stdin=True, stdin_fd=0, wake=False):
        """Pump stdin to the daemon and its output frames to ours (or to the Result, or sink).
        ``wake``: our signal handlers are set, and a signal must wake the loop to send its frame."""
        import select
        if hasattr(self.sock, "pending"):  # TLS: decrypted bytes may wait that poll cannot see
            import ssl
            again = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
            read = _tls_reader(self.sock, again)
        else:
            again = (BlockingIOError,)
            # A new bytes object each time: the parser hands out views of it instead of
            # copying frames out of a reused buffer.
            read = self.sock.recv
        r = self.result
        if capture:
            chunks = {p.Stdout: [], p.Stderr: []}

            def out(event):
                chunks[type(event)].append(event.data)
        elif sink is not None:
            def out(event):
                sink(1 if type(event) is p.Stdout else 2, event.data)
        else:
            def out(event):
                _write_all(1 if type(event) is p.Stdout else 2, event.data)
        if not capture and sink is None:
            _grow_pipes((1, 2))
        sock_fd = self.sock.fileno()
        self.sock.setblocking(False)
        pending = b""
        try:
            posix.fstat(stdin_fd)
            stdin_open = stdin
        except OSError:
            stdin_open = False
            pending = self.conn.send(p.StdinEof())
        poller = select.poll()
        wake_r = -1
        if wake:
            wake_r, wake_w = posix.pipe()
            for fd in (wake_r, wake_w):
                posix.set_blocking(fd, False)
            old_wake = _signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
            poller.register(wake_r, select.POLLIN)
        self._urgent = []
        stdin_sent = False  # once stdin flows, a signal may wait behind what the command has not read
        running = True
        try:
            while running:
                while self._urgent:  # after whole frames: pending never ends inside one
                    event = self._urgent.pop(0)
                    if isinstance(event, p.Signal) and stdin_sent and self._kill_aside(event):
                        continue
                    pending += self.conn.send(event)
                    if isinstance(event, p.Signal):
                        self._owed = len(pending)
                poller.register(sock_fd, select.POLLIN | (select.POLLOUT if pending else 0))
                if stdin_open:
                    if pending:  # backpressure: no more stdin until the daemon took what we have
                        poller.register(stdin_fd, 0)
                    else:
                        poller.register(stdin_fd, select.POLLIN)
                if len(again) > 1 and self.sock.pending():
                    ready = [(sock_fd, select.POLLIN)]
                elif self._owed > 0 and self.on_stuck is not None:
                    ready = poller.poll(STUCK_AFTER_MS)
                    if not ready and self._owed > 0:
                        self.on_stuck()
                        self.on_stuck = None
                else:
                    ready = poller.poll()
                for fd, ev in ready:
                    if fd == wake_r:  # a signal: its event waits in _urgent for the loop's top
                        try:
                            posix.read(wake_r, 512)
                        except OSError:
                            pass
                        continue
                    if fd == stdin_fd and fd != sock_fd:
                        if not ev & (select.POLLIN | select.POLLHUP):
                            continue
                        data = posix.read(stdin_fd, STDIN_CHUNK)
                        pending += self.conn.send(p.Stdin(data) if data else p.StdinEof())
                        stdin_sent = True
                        if not data:
                            stdin_open = False
                            poller.unregister(stdin_fd)
                        continue
                    if ev & select.POLLOUT and pending:
                        try:
                            sent = self.sock.send(pending)
                            pending = pending[sent:]
                            self._owed -= sent
                        except again:
                            pass
                        except OSError:
                            pending = b""  # the command ended and the daemon stopped reading
                    if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                        try:
                            self._feed(read, again)
                        except again:
                            continue
                        running = self._dispatch(out)
        finally:
            self._urgent = None
            self._owed = 0
            if wake:
                _signal.set_wakeup_fd(old_wake)
                posix.close(wake_r)
                posix.close(wake_w)
        if capture:
            r.stdout = b"".join(chunks[p.Stdout])
            r.stderr = b"".join(chunks[p.Stderr])


def _pack_fds(fds):
    return _pack("%di" % len(fds), *fds)


def _tls_reader(sock, again):
    """recv for a non-blocking TLS socket that returns all it can, up to ``size`` bytes: one
    TLS read yields one record (16 KiB), and feeding the parser record by record cost more
    than the decryption."""
    whole = memoryview(bytearray(RECV_SIZE))  # reused: what is read goes out as a bytes copy

    def read(size):
        view = whole[:size]
        n = sock.recv_into(view)  # raises when nothing is there yet: the caller polls
        while n and n < size:
            try:
                got = sock.recv_into(view[n:])
            except again:
                break
            if not got:
                break  # the end of the stream: the next read returns b""
            n += got
        return bytes(view[:n])
    return read


def _grow_pipes(fds):
    """Let the pipes among ``fds`` that carry output hold a whole frame (1 MiB, the unprivileged
    maximum): a frame is then one write, not 16 turns of a 64 KiB pipe with its reader."""
    import fcntl
    for fd in fds:
        try:
            if posix.fstat(fd).st_mode & 0o170000 == 0o010000:  # a FIFO
                fcntl.fcntl(fd, _F_SETPIPE_SZ, p.MAX_FRAME)
        except OSError:
            pass  # over /proc/sys/fs/pipe-max-size: keep the size it has


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            view = view[posix.write(fd, view):]
        except BrokenPipeError:
            raise SystemExit(141)  # our reader went away, as a local command would on SIGPIPE


def check_timeout(result, requested_ms):
    """A warning when the daemon ran the command with less time than asked, else ""."""
    if requested_ms and result.timeout_ms and result.timeout_ms < requested_ms:
        return ("-T %d exceeds this daemon's max_timeout_ms; it runs with %d ms"
                % (requested_ms, result.timeout_ms))
    return ""


def raise_for(result):
    """TimedOut if the command hit its timeout."""
    if result.timed_out:
        raise TimedOut("timed out after %d ms; the command's process group was killed"
                       % result.timeout_ms)
