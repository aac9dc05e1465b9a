"""fds mode with pipes of our own as the command's stdout and stderr (-j, -m, -O, fan-out):
read them until the command's Exit, into the result or to a sink. Kept apart from relay.py so
that ``-j exec`` (what agents call) loads only this much.
"""

import posix
import select


def collect(session, capture, sink, out_r, err_r):
    """fds mode with our own pipes for output: read them (into the result, or to ``sink``)
    until the command's Exit, then what is left in them without waiting for more."""
    pipes = Pipes({out_r: 1, err_r: 2}, Kept(session.result) if capture else None, sink,
                  session.RECV_SIZE)
    sock_fd = session.sock.fileno()
    pipes.poller.register(sock_fd, select.POLLIN)
    try:
        running = True
        while running and not session.result.pid:
            # Started first: it says what the conf caps, before any output is kept or passed on.
            session.receive(session.sock.recv)
            running = session.dispatch(None)
        while running:
            for fd, _ in pipes.poller.poll():
                if fd != sock_fd:
                    pipes.take(fd)
                    continue
                session.receive(session.sock.recv)
                running = session.dispatch(None)
        pipes.drain()
    finally:
        pipes.close()
    if capture:
        pipes.capture.finish()


class Kept:
    """Output kept for a result (-j): all of it, or what the daemon's conf caps it to (Started:
    default_max_output_bytes, at most max_output_bytes, as the first hostlink kept it)."""

    def __init__(self, result, asked=None):
        self.result = result
        self.asked = asked or {}  # fd -> a cap the caller asked for (-m)
        self.chunks = {1: [], 2: []}
        self.size = {1: 0, 2: 0}
        self.total = {1: 0, 2: 0}

    def cap(self, fd):
        r = self.result
        cap = self.asked.get(fd) or r.default_cap
        return min(cap, r.max_cap) if cap and r.max_cap else cap or r.max_cap

    def add(self, fd, data):
        self.total[fd] += len(data)
        cap = self.cap(fd)  # 0 before Started: kept, and cut at the end
        room = len(data) if not cap else cap - self.size[fd]
        if room > 0:
            self.chunks[fd].append(data[:room] if room < len(data) else data)
            self.size[fd] += min(room, len(data))

    def finish(self):
        kept = {}
        for fd in (1, 2):
            data = b"".join(self.chunks[fd])
            cap = self.cap(fd)
            kept[fd] = data[:cap] if cap else data
        self.result.stdout, self.result.stderr = kept[1], kept[2]
        self.result.totals = dict(self.total)


class Pipes:
    """The read ends of the command's stdout and stderr pipes, polled without blocking."""

    def __init__(self, fds, capture, sink, read_size):
        self.fds = fds  # read end -> 1 or 2
        self.read_size = read_size
        self.capture = capture  # a Kept, or None: output to ``sink``
        self.sink = sink
        grow_pipes(fds)
        self.poller = select.poll()
        for fd in fds:
            posix.set_blocking(fd, False)
            self.poller.register(fd, select.POLLIN)

    def take(self, fd):
        """Read what ``fd`` has; False at its end or when it is empty."""
        try:
            data = posix.read(fd, self.read_size)
        except BlockingIOError:
            return False
        if not data:
            self.poller.unregister(fd)
            del self.fds[fd]
            posix.close(fd)
            return False
        if self.capture:
            self.capture.add(self.fds[fd], data)
        else:
            self.sink(self.fds[fd], data)
        return True

    def drain(self):
        """What was written before the exit; a background child's later output is not waited for."""
        for fd in list(self.fds):
            while fd in self.fds and self.take(fd):
                pass

    def close(self):
        for fd in self.fds:
            posix.close(fd)


def write_all(fd, data):
    """Write all of ``data`` to ``fd``; exit 141 when our reader went away."""
    view = memoryview(data)
    while view:
        try:
            view = view[posix.write(fd, view):]
        except BrokenPipeError:
            raise SystemExit(141)  # as a local command would on SIGPIPE


def grow_pipes(fds):
    """Let the pipes among ``fds`` that carry output hold a whole frame: one write per frame."""
    from ..wire.pipes import grow
    for fd in fds:
        try:
            if posix.fstat(fd).st_mode & 0o170000 == 0o010000:  # a FIFO
                grow(fd)
        except OSError:
            pass
