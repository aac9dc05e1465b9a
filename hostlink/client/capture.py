"""fds mode with pipes of our own as the command's stdout and stderr (-j, -m, -O, fan-out):
read them until the command's Exit, into the result or to a sink. Kept apart from relay.py so
that ``-j exec`` (what agents call) loads only this much.
"""

import posix
import select


def collect(session, capture, sink, out_r, err_r):
    """fds mode with our own pipes for output: read them (into the result, or to ``sink``)
    until the command's Exit, then what is left in them without waiting for more."""
    pipes = Pipes({out_r: 1, err_r: 2}, capture, sink, session.RECV_SIZE)
    sock_fd = session.sock.fileno()
    pipes.poller.register(sock_fd, select.POLLIN)
    try:
        running = True
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
        session.result.stdout = b"".join(pipes.chunks[1])
        session.result.stderr = b"".join(pipes.chunks[2])


class Pipes:
    """The read ends of the command's stdout and stderr pipes, polled without blocking."""

    def __init__(self, fds, capture, sink, read_size):
        self.fds = fds  # read end -> 1 or 2
        self.read_size = read_size
        self.capture = capture
        self.sink = sink
        self.chunks = {1: [], 2: []}
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
            self.chunks[self.fds[fd]].append(data)
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
