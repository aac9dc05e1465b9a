"""A command running on behalf of a connection: its process group and timers (Command), and its
run: Started, the client's input and the command's output through the request's exchange, then
Exit. For HLK2 the exchange relays with client_input() and pump() below: signals and stdin in,
output out as frames. execute.py starts commands and calls run().
"""

import asyncio
import errno
import fcntl
import logging
import os
import signal
import socket
import struct
import termios
import time

from ..wire import protocol as p
from ..wire.pipes import grow as grow_pipe
from . import spawn
from .channel import TooManyFds, ended, next_event, wait_readable, wait_writable, within

log = logging.getLogger("hostlinkd")

RELAY_CHUNK = 1 << 20  # one read from a command's pipe, one data frame (protocol.MAX_FRAME)
PIPE_SIZE = 1 << 20  # bigger pipes mean fewer wake-ups at GB/s
SOCKET_BUFFER = 4 << 20
# After a read shorter than this in a stream of output, the pump lets the loop go round once
# before reading again, so that the command's small writes gather into bigger frames (each
# frame costs ~20 us whatever its size). A timed pause would cost more: epoll rounds it up to
# 1 ms, which capped a fast reader at ~800 MB/s (bench/).
COALESCE_BELOW = 256 << 10
# How often a client whose command does not read its stdin is checked for having hung up.
HANGUP_CHECK = 0.25


class Command:
    """One running command: its process (by pidfd), process group, timers, slot and how it ended.

    Signals reach the group only while the leader is unreaped: until then its number cannot be
    reused, so neither can the group's (after the wait, a signal could reach a stranger's group
    once the pid counter wrapped). The last kill of a timed-out or abandoned command is sent
    from the reaper before the wait, and reaches what left the group (setsid) by pidfd."""

    def __init__(self, state, proc, timeout_ms, client="", tty=False, slot=None, pipes=()):
        self.state = state  # for the loop, the reaper and kill_grace_ms as it is when needed
        self.proc = proc
        self.pgid = proc.pid
        self.pidfd = pidfd_open(proc.pid)
        self.started = time.monotonic()
        self.loop = state.loop
        self.exited = state.loop.create_future()
        self.timed_out = False
        self.tty = tty
        self.hung_up = False
        self.client = client  # the client that started it: only it may signal it (Kill)
        self.slot = slot  # its limits ticket (max_concurrent)
        self.pipes = list(pipes)  # our ends of its stdio (relay): closed by release()
        self.escaped = []  # pidfds of descendants found when it was told to stop
        self._timers = []
        if timeout_ms:
            self._timers.append(state.loop.call_later(timeout_ms / 1000, self._on_timeout))
        state.reaper.watch(proc, self._on_exit, self._before_reap)

    def signal(self, sig):
        """``sig`` to the command's group, only while it runs; False once it has ended."""
        if self.exited.done():
            return False
        return spawn.kill_group(self.pgid, sig)

    def _on_timeout(self):
        self.timed_out = True
        self.terminate()

    def hang_up(self):
        """The client went away: its command goes too."""
        self.hung_up = True
        self.terminate()

    def terminate(self):
        """SIGTERM to the whole tree now (what left the group too), SIGKILL after the grace."""
        if self.exited.done():
            return
        self.escaped = descendants_by_pidfd(self.proc.pid, self.escaped)
        self.signal(15)
        _send_all(self.escaped, 15)
        grace = self.state.cfg.kill_grace_ms / 1000
        self._timers.append(self.loop.call_later(grace, self._kill))

    def _kill(self):
        self.escaped = descendants_by_pidfd(self.proc.pid, self.escaped)
        self.signal(9)
        _send_all(self.escaped, 9)

    def _before_reap(self):
        # The leader is a zombie: its group number is still ours, for this last signal.
        if self.timed_out or self.hung_up:
            self.escaped = descendants_by_pidfd(self.proc.pid, self.escaped)
            spawn.kill_group(self.pgid, 9)  # what ignored SIGTERM goes now, not after the grace
            _send_all(self.escaped, 9)

    def _on_exit(self, status):
        for t in self._timers:
            t.cancel()
        if not self.exited.done():
            self.exited.set_result(status)

    def release(self):
        """Give back its slot and descriptors (once it ended or was abandoned)."""
        if self.slot is not None:
            self.slot.release()
            self.slot = None
        from .channel import close_all
        close_all(self.pipes)
        close_all(self.escaped)
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    @property
    def duration_ms(self):
        return int((time.monotonic() - self.started) * 1000)


def pidfd_open(pid):
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return -1  # before Linux 5.3: signals stay guarded by the unreaped leader alone


def descendants_by_pidfd(pid, known):
    """pidfds of ``pid``'s live descendants, added to ``known``: held, they name these very
    processes however long the signals take (a number could be reused)."""
    from .jobrunner import descendants
    seen = {_fd_pid(fd) for fd in known}
    out = list(known)
    for child in descendants(pid):
        if child in seen:
            continue
        fd = pidfd_open(child)
        if fd >= 0:
            out.append(fd)
    return out


def _fd_pid(fd):
    try:
        with open("/proc/self/fdinfo/%d" % fd) as f:
            for line in f:
                if line.startswith("Pid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return -1


def _send_all(pidfds, sig):
    for fd in pidfds:
        try:
            signal.pidfd_send_signal(fd, sig)
        except OSError:
            pass


async def run(command, exchange, pipes, timeout):
    """Started, then the client's input and the command's output until it ends, then Exit."""
    await exchange.started(command.proc.pid, timeout)
    tasks = [command.loop.create_task(exchange.input(command, pipes))]
    for fd, kind in zip(pipes[1:], (p.Stdout, p.Stderr)):
        if fd >= 0:
            tasks.append(command.loop.create_task(exchange.output(fd, kind, command)))
    try:
        status = await command.exited
        if len(tasks) > 1:
            await asyncio.gather(*tasks[1:])
        if command.hung_up:
            return
        code, sig = spawn.exit_code(status)
        await exchange.exit(p.Exit(code, sig, command.timed_out, command.duration_ms))
    except (ConnectionError, OSError):
        command.hang_up()
        await command.exited
    finally:
        await ended(*tasks)


async def client_input(chan, conn, fds, command, pipes):
    """Signals and stdin from the client; its hang-up ends the command."""
    stdin = pipes[0] if pipes else -1
    try:
        while True:
            event = await next_event(chan, conn, fds)
            if event is None:
                break
            if isinstance(event, p.Signal):
                if spawn.is_signal(event.signum):
                    command.signal(event.signum)
            elif isinstance(event, p.Stdin):
                if stdin >= 0:
                    stdin = await _write_all(command.loop, stdin, event.data, chan)
            elif isinstance(event, p.StdinEof):
                if stdin >= 0 and command.tty:
                    await _write_all(command.loop, stdin, b"\x04")  # a terminal's end of input
                elif stdin >= 0:
                    os.close(stdin)
                    pipes[0] = stdin = -1
            elif isinstance(event, p.Resize):
                if command.tty and stdin >= 0 and 0 < event.rows < 10000 and 0 < event.cols < 10000:
                    fcntl.ioctl(stdin, termios.TIOCSWINSZ,
                                struct.pack("HHHH", event.rows, event.cols, 0, 0))
    except (ConnectionError, OSError, p.ProtocolError, TooManyFds) as exc:
        log.debug("client input ended: %s", exc)
    if not command.exited.done():
        command.hang_up()


async def readable_again(command, fd, exc):
    """After ``exc`` from reading a command's output pipe: True once it may be read again,
    False at its end (raises what is not an empty pipe or a closed terminal)."""
    if exc.errno == errno.EIO:
        return False  # a pseudo-terminal whose other side closed: its end of file
    if not isinstance(exc, BlockingIOError):
        raise exc
    if command.exited.done():
        return False  # what a background child writes later is not waited for
    await wait_readable(command.loop, fd, until=command.exited)
    return True


async def pump(chan, conn, fd, kind, command):
    """Relay one output pipe as frames until EOF, or until drained once the command ended."""
    buf = bytearray(RELAY_CHUNK)  # reused: no allocation per chunk
    view = memoryview(buf)
    streaming = False
    while True:
        try:
            n = os.readv(fd, [buf])
        except OSError as exc:
            if not await readable_again(command, fd, exc):
                return
            streaming = False
            continue
        if not n:
            return
        if not command.hung_up:
            await chan.send(conn.send_header(kind, n), view[:n])
        if streaming and n < COALESCE_BELOW:
            await asyncio.sleep(0)  # never holds back the first frame after a pause
        streaming = True


async def _write_all(loop, fd, data, chan=None):
    """Write data to a command's stdin pipe; -1 (closed) once the command stopped reading.
    While the pipe is full, ConnectionResetError if the client behind ``chan`` hangs up."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            try:
                await within(wait_writable(loop, fd), HANGUP_CHECK)
            except asyncio.TimeoutError:
                # We read no more frames until the command reads its stdin, so the end of the
                # connection would wait behind them: look for it beside the unread data.
                if chan is not None and chan.peer_closed():
                    raise ConnectionResetError("the client hung up") from None
        except (BrokenPipeError, OSError):
            os.close(fd)
            return -1
    return fd


def grow_send_buffer(sock):
    """A bigger socket buffer for relayed output: fewer wake-ups at GB/s (root may exceed wmem_max)."""
    for opt in (getattr(socket, "SO_SNDBUFFORCE", 32), socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            return
        except OSError:
            continue


def pty(req):
    """A pseudo-terminal for a relayed command (--tty): the child's three ends, and ours."""
    master, slave = os.openpty()
    os.set_inheritable(master, False)
    if req.rows and req.cols:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", req.rows, req.cols, 0, 0))
    os.set_blocking(master, False)
    return [slave, os.dup(slave), os.dup(slave)], [os.dup(master), master, -1]


def relay_pipes():
    """Pipes for a relayed command: (child's stdin, stdout, stderr), [ours: stdin w, out r, err r]."""
    in_r, in_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    for fd in (in_w, out_r, err_r):
        os.set_blocking(fd, False)
    grow_pipe(out_r, PIPE_SIZE)  # refused over pipe-max-size (unprivileged): the default stays
    return [in_r, out_w, err_w], [in_w, out_r, err_r]
