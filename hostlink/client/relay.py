"""A running relayed exchange (``-j``, TCP, --tty, job tail): stdin to the daemon as frames, its
output frames to ours, and signals sent between whole frames (as asyncssh's SSHClientProcess).

Signal handlers may run between any two steps of the loop, so they only ``push`` an event; the
loop sends it after the frame it is in the middle of. A signal that stays unsent waits behind
stdin the command does not read: the loop says so once (``on_stuck``), and a second one leaves.
"""

import posix
import select

import _signal

from ..wire import protocol as p
from .capture import Kept, grow_pipes, write_all
from .errors import Leave

# A forwarded signal still unsent after this long waits behind stdin the command does not read.
STUCK_AFTER_MS = 1000
STDIN_CHUNK = 256 << 10
READABLE = select.POLLIN | select.POLLHUP | select.POLLERR


class Relay:
    """Pump stdin to the daemon and its output frames to ours (or into the result, or a sink)."""

    def __init__(self, session, capture=False, sink=None, stdin=True, stdin_fd=0, wake=False):
        self.session = session
        self.sock = session.sock
        self.capture = Kept(session.result) if capture else None
        self.sink = sink
        self.stdin_fd = stdin_fd
        self.stdin_open = stdin
        self.stdin_sent = False  # once stdin flows, a signal may wait behind what is unread
        self.wake = wake  # our signal handlers are set: a signal must wake the loop
        self.wake_r = self.wake_w = -1
        self.old_wake = -1
        self.pending = b""  # encoded frames not yet taken by the socket; never ends mid-frame
        self.urgent = []  # Signal and Resize events pushed by signal handlers
        self.owed = 0  # bytes to send before the last signal is out
        self.poller = select.poll()
        self.read, self.again = self._reader()

    def _reader(self):
        if hasattr(self.sock, "pending"):  # TLS: decrypted bytes may wait that poll cannot see
            from .tls import reader
            return reader(self.sock, self.session.RECV_SIZE)
        # A new bytes object each time: the parser hands out views of it instead of copying
        # frames out of a reused buffer.
        return self.sock.recv, (BlockingIOError,)

    def push(self, event):
        """Queue an event from a signal handler; a second signal while one is stuck leaves."""
        if isinstance(event, p.Signal) and (self.owed > 0 or self.urgent):
            # We exit; the daemon ends the command as on any hang-up.
            raise Leave(event.signum)
        self.urgent.append(event)

    def run(self):
        """Relay until the command's Exit; the output kept in the session's result if captured."""
        if not self.capture and self.sink is None:
            grow_pipes((1, 2))
        self.sock.setblocking(False)
        self._check_stdin()
        self._start_wake()
        self.session.relay = self
        try:
            running = True
            while running:
                self._send_urgent()
                for fd, ev in self._wait():
                    running = self._ready(fd, ev) and running
        finally:
            self.session.relay = None
            self._stop_wake()
        if self.capture:
            self.capture.finish()

    def _check_stdin(self):
        try:
            posix.fstat(self.stdin_fd)
        except OSError:
            self.stdin_open = False
            self.pending = self.session.encode(p.StdinEof())

    def _start_wake(self):
        if not self.wake:
            return
        self.wake_r, self.wake_w = posix.pipe()
        for fd in (self.wake_r, self.wake_w):
            posix.set_blocking(fd, False)
        self.old_wake = _signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.poller.register(self.wake_r, select.POLLIN)

    def _stop_wake(self):
        self.urgent = []
        self.owed = 0
        if self.wake:
            _signal.set_wakeup_fd(self.old_wake)
            posix.close(self.wake_r)
            posix.close(self.wake_w)

    def _send_urgent(self):
        """Queue what the signal handlers pushed, after whole frames."""
        while self.urgent:
            event = self.urgent.pop(0)
            if isinstance(event, p.Signal) and self.stdin_sent and self.session.kill_aside(event):
                continue
            self.pending += self.session.encode(event)
            if isinstance(event, p.Signal):
                self.owed = len(self.pending)

    def _wait(self):
        """The ready (fd, events), registering what the loop waits for now."""
        self.poller.register(self.sock.fileno(),
                             select.POLLIN | (select.POLLOUT if self.pending else 0))
        if self.stdin_open:
            # backpressure: no more stdin until the daemon took what we have
            self.poller.register(self.stdin_fd, 0 if self.pending else select.POLLIN)
        if len(self.again) > 1 and self.sock.pending():
            return [(self.sock.fileno(), select.POLLIN)]
        if self.owed > 0 and self.session.on_stuck is not None:
            ready = self.poller.poll(STUCK_AFTER_MS)
            if not ready and self.owed > 0:
                self.session.on_stuck()
                self.session.on_stuck = None
            return ready
        return self.poller.poll()

    def _ready(self, fd, ev):
        """Serve one ready descriptor; False once the command has ended."""
        if fd == self.wake_r:  # a signal: its event waits in urgent for the loop's top
            try:
                posix.read(self.wake_r, 512)
            except OSError:
                pass
        elif fd == self.stdin_fd and fd != self.sock.fileno():
            if ev & (select.POLLIN | select.POLLHUP):
                self._read_stdin()
        else:
            if ev & select.POLLOUT and self.pending:
                self._write_socket()
            if ev & READABLE:
                return self._read_socket()
        return True

    def _read_stdin(self):
        data = posix.read(self.stdin_fd, STDIN_CHUNK)
        self.pending += self.session.encode(p.Stdin(data) if data else p.StdinEof())
        self.stdin_sent = True
        if not data:
            self.stdin_open = False
            self.poller.unregister(self.stdin_fd)

    def _write_socket(self):
        try:
            sent = self.sock.send(self.pending)
            self.pending = self.pending[sent:]
            self.owed -= sent
        except self.again:
            pass
        except OSError:
            self.pending = b""  # the command ended and the daemon stopped reading

    def _read_socket(self):
        try:
            self.session.receive(self.read, self.again)
        except self.again:
            return True
        return self.session.dispatch(self._output)

    def _output(self, event):
        fd = 1 if type(event) is p.Stdout else 2
        if self.capture:
            self.capture.add(fd, event.data)
        elif self.sink is not None:
            self.sink(fd, event.data)
        else:
            write_all(fd, event.data)
