"""Where a daemon is (Endpoint) and one request to it over one connection (Session).

Two ways to run a command. Over a Unix socket the client passes its own stdin, stdout and stderr
to the daemon (SCM_RIGHTS) and the command uses them directly: nothing is relayed, so output is
byte-exact and a terminal stays a terminal. Otherwise (``-j``, TCP) the streams are relayed as
frames by relay.py. Only cheap modules are imported here: this is the hot path of ``hostlink exec``.
"""

import posix  # not os: see main.py

import _signal
import _socket
from _struct import pack as _pack  # struct would be one more module to import

from ..wire import protocol as p
from .errors import (FROM_DAEMON, AuthFailed, ClientBug, ConnectFailed, HostlinkError, Interrupted,
                     Leave, TimedOut, UsageError)

DEFAULT_SOCKET = "/run/hostlink/hostlink.sock"
DEFAULT_PORT = 9876
DEFAULT_CONNECT_TIMEOUT_MS = 5000
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)


class Endpoint:
    """Where a daemon listens, and the token it wants."""

    def __init__(self, name="", socket="", address="", port=DEFAULT_PORT, token="", timeout_ms=0,
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


def whole_ms(value, name, low=0):
    """The option ``value`` as an int of at least ``low``; UsageError otherwise."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise UsageError("%s must be a whole number of milliseconds, not %r" % (name, value))
    if n < low:
        raise UsageError("%s must be at least %d, not %d" % (name, low, n))
    return n


def endpoint(opts, environ, warnings, target=None):
    """The Endpoint the options and environment name (``target`` overrides -t)."""
    if opts.socket:
        ep = Endpoint(socket=opts.socket)
    elif opts.address:
        host, _, port = opts.address.rpartition(":")
        ep = Endpoint(name=opts.address, address=host.strip("[]") or opts.address,
                      port=whole_ms(port, "-a port", 1) if host else DEFAULT_PORT,
                      tls="off" if opts.plain else "", fingerprint=opts.fingerprint)
    else:
        name = target or opts.target or environ.get("HOSTLINK_TARGET")
        if name:
            ep = target_endpoint(name, opts.targets_file, environ, warnings)
        else:
            ep = Endpoint(socket=environ.get("HOSTLINK_SOCKET") or DEFAULT_SOCKET)
    ep.token = token_for(opts, environ, ep.token, warnings)
    if ep.address and not ep.tls:  # TCP, and nothing said about TLS
        ep.tls = "off" if opts.compat and not ep.fingerprint else "required"
        if ep.tls == "off":
            warnings.append("warning: %s has no TLS fingerprint to pin: the token travels in clear, "
                            "as the first hostlink sent it (hostlink-install show-target on the "
                            "host prints the fingerprint)" % ep.where)
    return ep


# Told once when -k carries the token itself: any user of the machine can read our argv.
LITERAL_TOKEN = ("-k TOKEN shows the token in /proc/PID/cmdline to every user of this "
                 "machine; use HOSTLINK_TOKEN_FILE=FILE or -k @FILE")
MAX_TOKEN_FILE = 4096  # a token is 64 characters; anything much longer is the wrong file


def token_for(opts, environ, own, warnings):
    """-k (a literal, or @FILE), else the target's own token ``own``, else the environment's
    (the file HOSTLINK_TOKEN_FILE names, else HOSTLINK_TOKEN). Under the name hostlink-cli the
    first hostlink's order: -k, else the environment's when set, else the target's."""
    if opts.token is not None:
        if opts.token.startswith("@"):
            return read_token(opts.token[1:])
        # Not under hostlink-cli: its scripts pass -k TOKEN as its docs say, and read the
        # command's last line of stderr.
        if LITERAL_TOKEN not in warnings and not opts.compat:
            warnings.append(LITERAL_TOKEN)
        return opts.token
    if opts.compat:
        return _environment_token(environ) or own or ""
    return own or _environment_token(environ) or ""


def _environment_token(environ):
    """The file HOSTLINK_TOKEN_FILE names, else HOSTLINK_TOKEN; "" when neither is set."""
    if environ.get("HOSTLINK_TOKEN_FILE"):
        return read_token(environ["HOSTLINK_TOKEN_FILE"])
    return environ.get("HOSTLINK_TOKEN") or ""


def read_token(path):
    """The token in the file ``path`` (surrounding white space removed); UsageError if unusable."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TOKEN_FILE + 1)
    except OSError as exc:
        raise UsageError("cannot read the token file %s: %s" % (path, exc.strerror)) from None
    token = data.decode("utf-8", "replace").strip()
    if not token or len(data) > MAX_TOKEN_FILE or any(c.isspace() for c in token):
        raise UsageError("the token file %s does not hold one token (one line, at most %d bytes)"
                         % (path, MAX_TOKEN_FILE))
    return token


def target_endpoint(name, targets_file, environ, warnings):
    """The Endpoint of target ``name`` in targets.conf; UsageError when there is none."""
    from . import targets_conf
    return Endpoint(**targets_conf.find(name, targets_file, environ, warnings))


def timeout_fields(opts, environ, ep):
    """(timeout_ms, no_timeout) to ask for: -T, else HOSTLINK_TIMEOUT_MS, else the target's
    timeout_ms, else (0, False): the daemon's default. A 0 in -T or the variable means none (the
    daemon's max_timeout_ms still caps it)."""
    if opts.timeout is not None:
        ms = whole_ms(opts.timeout, "-T")
    elif environ.get("HOSTLINK_TIMEOUT_MS"):
        ms = whole_ms(environ["HOSTLINK_TIMEOUT_MS"], "HOSTLINK_TIMEOUT_MS")
    else:
        return ep.timeout_ms, False
    return ms, ms == 0


def connect_timeout(opts):
    """The -C option in ms."""
    if opts.connect_timeout is None:
        return DEFAULT_CONNECT_TIMEOUT_MS
    return whole_ms(opts.connect_timeout, "-C", 1)


def need_token(ep):
    """AuthFailed before connecting when ``ep`` has no token."""
    if not ep.token:
        raise AuthFailed("no token: set HOSTLINK_TOKEN_FILE (or HOSTLINK_TOKEN, or -k @FILE); it must match auth_token in "
                         "hostlink.conf on the host")


def connect(ep, connect_timeout_ms=DEFAULT_CONNECT_TIMEOUT_MS):
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
        # The first hostlink has no TLS; a pinned fingerprint still means TLS or nothing.
        if not ep.socket and ep.tls != "off" and (ep.protocol != "hlnk" or ep.fingerprint):
            from . import tls
            sock = tls.wrap(ep, sock)
    except OSError as exc:
        sock.close()
        from .hints import connect_hint
        raise ConnectFailed(connect_hint(ep, exc)) from None
    sock.settimeout(None)
    return sock


class CompletedProcess:
    """How a command ended, shaped like subprocess.CompletedProcess (and asyncssh's)."""

    def __init__(self):
        self.returncode = None
        self.stdout = None
        self.stderr = None
        self.node = ""
        self.signal = 0
        self.timed_out = False
        self.duration_ms = 0
        self.timeout_ms = 0  # what the daemon granted (Started)
        self.pid = 0  # the command's, on the host (Started)
        self.default_cap = self.max_cap = 0  # the conf's output caps for -j (Started; 0: none)
        self.totals = None  # {1: bytes, 2: bytes} the command wrote, when less was kept
        self.forwarded = 0  # the last signal we forwarded to it, 0 for none


class Session:
    """One request over one connection; a context manager that closes it."""

    RECV_SIZE = 1 << 20  # one read from the daemon: a whole data frame

    def __init__(self, ep, connect_timeout_ms=DEFAULT_CONNECT_TIMEOUT_MS, client_name="hostlink",
                 on_wait=None, on_stuck=None):
        self.ep = ep
        self.sock = connect(ep, connect_timeout_ms)
        self.conn = p.Connection(p.CLIENT)
        self.result = CompletedProcess()
        self.on_wait = on_wait  # called with a protocol.Waiting: a person must approve, or a slot
        self.on_stuck = on_stuck  # called once when a forwarded signal waits behind unread stdin
        self.relay = None  # the Relay while one runs: signals go through it
        self.kill_refused = False  # a daemon before protocol Kill said no once
        self.queued = False  # waiting for a free slot (Waiting kind "slot"): a signal leaves
        self._hello = self.encode(p.Auth(ep.token, client_name))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def encode(self, event):
        """The bytes of ``event``; ClientBug when this client breaks the protocol."""
        try:
            return self.conn.send(event)
        except p.LocalProtocolError as exc:
            raise our_bug(exc) from None

    def ping(self):
        """The daemon's protocol.Pong (node, uptime_s)."""
        self._open(p.Ping())
        while True:
            event = self.next_event()
            if isinstance(event, p.Pong):
                return event

    def call(self, event):
        """Send a JobRequest, Kill or detached Exec; the daemon's JSON Reply as a dict."""
        import json
        self._open(event)
        while True:
            reply = self.next_event()
            if isinstance(reply, p.Ok):
                self.result.node = reply.node
            elif isinstance(reply, p.Waiting):
                self._waiting(reply)
            elif isinstance(reply, p.Reply):
                return json.loads(reply.text)

    def stream(self, event):
        """Send a JobRequest whose answer streams (tail, wait); output goes to ours."""
        self._open(event)
        from .relay import Relay
        Relay(self, stdin=False).run()
        return self.result

    def exec(self, request, capture=False, out=None, signals=True, stdio=None, stdin_fd=0):
        """Run ``request`` (a protocol.Exec); capture=True keeps its output in the result.

        ``out(fd, data)`` receives its output instead of our stdout/stderr (fan-out, -m);
        ``signals=False`` leaves signal handlers alone (only the main thread may set them).
        """
        old = self._catch_signals(request.tty) if signals else {}
        try:
            if request.mode == "fds":
                self._exec_fds(request, capture, out, stdio)
            else:
                self._send(self._hello + self.encode(request))
                self._hello = b""
                from .relay import Relay
                Relay(self, capture, out, stdin_fd=stdin_fd, wake=bool(old)).run()
        finally:
            for sig, handler in old.items():
                _signal.signal(sig, handler)
        return self.result

    def _exec_fds(self, request, capture, out, stdio):
        # main.py gave any closed standard descriptor /dev/null, so 0, 1, 2 are valid.
        std = list(stdio) if stdio else [0, 1, 2]
        pipes = []
        if capture or out is not None:
            # Output to keep or to cap: pipes of ours become the command's stdout and stderr,
            # so it comes straight here instead of relayed by the daemon.
            pipes = [posix.pipe(), posix.pipe()]
            std[1], std[2] = pipes[0][1], pipes[1][1]
        data = self._hello + self.encode(request)
        self._hello = b""
        try:
            self.sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, pack_fds(std))])
        except OSError as exc:
            self._refused(exc)
        finally:
            for _, w in pipes:
                posix.close(w)  # the command has its own; ours would hold off the end
        if pipes:
            from .capture import collect
            collect(self, capture, out, pipes[0][0], pipes[1][0])
        else:
            while self.handle(self.next_event(), None):
                pass

    # ---- signals -------------------------------------------------------------------------------

    def _catch_signals(self, tty):
        old = {sig: _signal.signal(sig, self._forward) for sig in FORWARDED}
        if tty:
            old[_signal.SIGWINCH] = _signal.signal(_signal.SIGWINCH, self._resize)
        return old

    def _resize(self, signum, frame):
        from .terminal import winsize
        rows, cols = winsize()
        if rows and cols:
            self._queue(p.Resize(rows, cols))

    def _forward(self, signum, frame):
        if self.queued and not self.result.pid:
            raise Leave(signum)  # nothing runs yet: leave the queue (the daemon sees us go)
        self.result.forwarded = signum
        self._queue(p.Signal(signum))

    def _queue(self, event):
        """Send an event from a signal handler: through the relay while one runs (it sends it
        between frames), otherwise at once, as nothing else writes."""
        if self.relay is not None:
            self.relay.push(event)
            return
        try:
            self.sock.sendall(self.encode(event))
        except OSError:
            pass

    def kill_aside(self, event):
        """Deliver a signal on a connection of its own (protocol Kill), so that it does not wait
        behind stdin in this one; False where that cannot be done (a daemon before Kill)."""
        if not self.result.pid or self.kill_refused:
            return False
        try:
            with Session(self.ep, client_name="hostlink-signal") as side:
                side.call(p.Kill(self.result.pid, event.signum))
        except HostlinkError:
            self.kill_refused = True  # it said no once: the frame in this connection will do
            return False
        return True

    # ---- events --------------------------------------------------------------------------------

    def _open(self, event):
        self._send(self._hello + self.encode(event))
        self._hello = b""

    def _send(self, data):
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self._refused(exc)

    def _refused(self, exc):
        """A send failed: the daemon may have answered (server busy) and closed before reading
        our request. Raise its answer, else ConnectFailed."""
        try:
            self.sock.settimeout(1)
            while True:
                data = self.sock.recv(self.RECV_SIZE)
                self.conn.receive_data(data)
                if not data:
                    break
        except (OSError, p.ProtocolError):
            pass
        try:
            while True:
                event = self.conn.next_event()
                if event is p.NEED_DATA or event is None:
                    break
                if isinstance(event, p.Error):
                    raise FROM_DAEMON.get(event.code, HostlinkError)(event.message)
        except p.ProtocolError:
            pass
        raise ConnectFailed("the daemon at %s went away: %s" % (self.ep.where, exc.strerror))

    def next_event(self):
        """The next event, reading from the socket as needed."""
        while True:
            event = self._parse()
            if event is not p.NEED_DATA:
                return event
            self.receive(self.sock.recv)

    def receive(self, read, again=()):
        """One read from the daemon into the parser; ConnectFailed when the connection broke
        (``again``: what a non-blocking read raises when there is nothing yet, let through)."""
        try:
            data = read(self.RECV_SIZE)
        except again:
            raise
        except OSError as exc:
            raise ConnectFailed("lost the daemon at %s: %s" % (self.ep.where, exc.strerror or exc))
        self.conn.receive_data(data)

    def dispatch(self, out):
        """Apply every whole event received so far; False once the command has ended."""
        while True:
            event = self._parse()
            if event is p.NEED_DATA:
                return True
            if not self.handle(event, out):
                return False

    def _parse(self):
        try:
            event = self.conn.next_event()
        except p.RemoteProtocolError as exc:
            raise ConnectFailed("the daemon at %s broke the protocol: %s" % (self.ep.where, exc))
        except p.LocalProtocolError as exc:
            raise our_bug(exc) from None
        if event is None:
            raise ConnectFailed("the daemon at %s closed the connection before answering "
                                "(it may have been restarted)" % self.ep.where)
        if isinstance(event, p.Error):
            exc = FROM_DAEMON.get(event.code, HostlinkError)(event.message)
            exc.remote = True
            exc.shell_status = event.status
            raise exc
        return event

    def _waiting(self, event):
        if event.kind == "slot":
            self.queued = True
        if self.on_wait is not None:
            self.on_wait(event)

    def handle(self, event, out):
        """Apply one event (output ones go to ``out``); False once the command has ended."""
        r = self.result
        if isinstance(event, p.Ok):
            r.node = event.node
        elif isinstance(event, p.Started):
            r.timeout_ms, r.pid = event.timeout_ms, event.pid
            r.default_cap, r.max_cap = event.default_max_output_bytes, event.max_output_bytes
        elif isinstance(event, p.Waiting):
            self._waiting(event)
        elif isinstance(event, p.Exit):
            r.returncode, r.signal = event.exit_code, event.signal
            r.timed_out, r.duration_ms = event.timed_out, event.duration_ms
            return False
        elif out is not None:
            out(event)
        return True


def hlnk_request(ep, fields, connect_timeout_ms):
    """One request to a first-hostlink daemon (protocol = hlnk): ping or exec. The answer to a
    ping is (node, uptime_s); to an exec, the daemon's JSON object."""
    from . import hlnk
    obj = {"version": 1, "type": fields["type"], "id": new_id(), "token": ep.token}
    obj.update(fields)
    sock = connect(ep, connect_timeout_ms)
    try:
        resp = hlnk.request(sock, ep.where, obj)
    finally:
        sock.close()
    return hlnk.pong(resp) if obj["type"] == "ping" else resp


def our_bug(exc):
    """The error for a LocalProtocolError: this client's bug, never blamed on the daemon."""
    return ClientBug("hostlink itself broke the protocol (a bug in this client, not the "
                     "daemon's fault): %s" % exc)


def ping(ep, connect_timeout_ms):
    """(node, uptime_s) of the daemon at ``ep``, over either protocol; raises HostlinkError."""
    need_token(ep)
    if ep.protocol == "hlnk":
        return hlnk_request(ep, {"type": "ping"}, connect_timeout_ms)
    with Session(ep, connect_timeout_ms) as session:
        pong = session.ping()
    return pong.node, pong.uptime_s


def with_fields(event, **changes):
    """A copy of the protocol ``event`` with some fields changed (events are immutable)."""
    fields = {n: getattr(event, n) for n in event.__slots__}
    fields.update(changes)
    return type(event)(**fields)


def new_id():
    """A request id for -j output, as the first hostlink made them."""
    return posix.urandom(4).hex()


def pack_fds(fds):
    """The SCM_RIGHTS payload for ``fds``."""
    return _pack("%di" % len(fds), *fds)


def check_timeout(result, requested_ms):
    """A warning when the daemon ran the command with less time than asked, else ""."""
    if requested_ms and result.timeout_ms and result.timeout_ms < requested_ms:
        return ("-T %d exceeds this daemon's max_timeout_ms; it runs with %d ms"
                % (requested_ms, result.timeout_ms))
    return ""


def raise_for(result):
    """TimedOut if the command hit its timeout; Interrupted if the signal we forwarded ended it."""
    if result.timed_out:
        exc = TimedOut("timed out after %d ms; the command's process group was killed"
                       % result.timeout_ms)
        exc.remote = True
        raise exc
    sig = result.forwarded
    if sig and (result.signal == sig or result.returncode == 128 + sig):
        raise Interrupted(sig)
