"""Awaitable reads and writes on non-blocking descriptors, for hostlinkd's asyncio loop.

asyncio's stream transports cannot receive passed descriptors (recvmsg), so the daemon uses
these small helpers on raw sockets and pipes instead. Each call tries the syscall first and only
waits for readiness when it would block, which keeps a fast stream free of epoll traffic.
"""

import array
import asyncio
import os
import select
import socket
import ssl

from ..wire import protocol as p

RECV_SIZE = 256 << 10
# After our last frame, how long a peer may take to close its end before we close ours anyway.
LINGER = 2.0
# Descriptors one connection may pass in all: stdin, stdout, stderr.
MAX_FDS = 3
_ANC = socket.CMSG_SPACE((MAX_FDS + 1) * array.array("i").itemsize)


class TooManyFds(Exception):
    """The peer passed more descriptors than MAX_FDS, or ancillary data we did not ask for."""


async def wait_readable(loop, fd, until=None):
    """Wait until ``fd`` is readable, or until the future ``until`` is done."""
    fut = loop.create_future()
    loop.add_reader(fd, _wake, fut)
    wake = None
    if until is not None:
        wake = lambda _: _wake(fut)  # noqa: E731
        until.add_done_callback(wake)
    try:
        await fut
    finally:
        loop.remove_reader(fd)
        if wake is not None:
            until.remove_done_callback(wake)


async def ended(*tasks):
    """Cancel ``tasks`` and wait until they have ended. A cancelled reader keeps its add_reader on
    the socket until it runs once more, and its cleanup then removes whatever reader is there:
    the linger's, which then waited its full 2 s for a peer long gone (and lost the audit line
    if the daemon stopped meanwhile)."""
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.wait(tasks)


async def wait_writable(loop, fd):
    fut = loop.create_future()
    loop.add_writer(fd, _wake, fut)
    try:
        await fut
    finally:
        loop.remove_writer(fd)


if hasattr(asyncio, "timeout"):  # 3.11+: a deadline on the running task, no task of its own
    async def within(awaitable, seconds):
        """``await awaitable``, or asyncio.TimeoutError after ``seconds``."""
        async with asyncio.timeout(seconds):
            return await awaitable
else:
    within = asyncio.wait_for


def _wake(fut):
    if not fut.done():
        fut.set_result(None)


class Channel:
    """A non-blocking stream socket: recv() with passed descriptors, send() of buffers."""

    def __init__(self, sock, can_pass_fds=True):
        self.sock = sock
        self.fd = sock.fileno()
        self.can_pass_fds = can_pass_fds
        self._held = b""
        self.handshaking = False  # a TLS handshake begun and not done: no frame can go out
        self._writing = asyncio.Lock()
        self.loop = asyncio.get_running_loop()
        sock.setblocking(False)

    async def _wait_for(self, exc):
        """Wait for what a non-blocking call said it needs (TLS may read to write and back)."""
        if isinstance(exc, ssl.SSLWantWriteError):
            await wait_writable(self.loop, self.fd)
        else:
            await wait_readable(self.loop, self.fd)

    async def handshake(self, context):
        """Wrap the socket in TLS (server side) and complete the handshake."""
        self.sock = context.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
        self.can_pass_fds = False
        self.handshaking = True
        while True:
            try:
                self.sock.do_handshake()
                self.handshaking = False
                return
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
                await self._wait_for(exc)

    async def peek(self, n):
        """The first ``n`` bytes the peer sent (fewer if it closed), without consuming them."""
        while True:
            try:
                data = self.sock.recv(n, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                await wait_readable(self.loop, self.fd)
                continue
            if len(data) >= n or not data:
                return data
            await asyncio.sleep(0.005)  # a preface split across packets: rare, short

    async def recv(self):
        """(data, fds): data is b"" at end of stream. Extra or odd ancillary data raises."""
        while True:
            try:
                if not self.can_pass_fds:
                    return self.sock.recv(RECV_SIZE), []
                data, anc, flags, _ = self.sock.recvmsg(RECV_SIZE, _ANC, socket.MSG_CMSG_CLOEXEC)
                break
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
                await self._wait_for(exc)
        fds = []
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                arr = array.array("i")
                arr.frombytes(payload[:len(payload) - len(payload) % arr.itemsize])
                fds.extend(arr)
            else:
                close_all(fds)
                raise TooManyFds("unexpected ancillary data (level %d, type %d)" % (level, kind))
        if flags & socket.MSG_CTRUNC:
            close_all(fds)
            raise TooManyFds("more than %d descriptors passed" % MAX_FDS)
        return data, fds

    def peer_closed(self):
        """Whether the peer has closed or shut down its end, even with its data still unread
        (POLLRDHUP: a TCP FIN, or a Unix socket's peer gone)."""
        poller = select.poll()
        poller.register(self.fd, select.POLLRDHUP)
        return any(ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR)
                   for _, ev in poller.poll(0))

    def hold(self, data):
        """Keep ``data`` to go out with the next send (or at linger): one wake-up of the peer
        instead of two."""
        self._held += data

    async def send(self, *bufs):
        """Send what is held, then all of ``bufs``, in order, whole: a send that has to wait
        for the socket keeps others out until it is done (stdout and stderr relay at once)."""
        async with self._writing:
            await self._send(bufs)

    async def _send(self, bufs):
        if self._held:
            bufs = (self._held,) + bufs
            self._held = b""
        views = [memoryview(b) for b in bufs if len(b)]
        while views:
            try:
                if len(views) > 1 and self.can_pass_fds:
                    sent = self.sock.sendmsg(views)
                else:
                    sent = self.sock.send(views[0])
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
                await self._wait_for(exc if not isinstance(exc, BlockingIOError) else ssl.SSLWantWriteError())
                continue
            while sent and views:
                if sent >= len(views[0]):
                    sent -= len(views[0])
                    views.pop(0)
                else:
                    views[0] = views[0][sent:]
                    sent = 0

    async def linger(self, timeout=LINGER):
        """Half-close and wait (bounded) for the peer to close. Closing with unread input makes
        TCP send a reset, which can destroy our last frame before the peer reads it."""
        try:
            if self._held:
                await self.send()
            self.sock.shutdown(socket.SHUT_WR)
            await within(self._drain(), timeout)
        except (OSError, asyncio.TimeoutError, ValueError):
            pass

    async def _drain(self):
        while True:
            try:
                if not socket.socket.recv(self.sock, RECV_SIZE):
                    return
            except (BlockingIOError, InterruptedError):
                await wait_readable(self.loop, self.fd)

    def close(self):
        self.sock.close()

    def close_now(self):
        """Close without lingering (too many do already), but read what the peer has already
        sent first: unread input at close makes TCP reset, which can destroy our last frame."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            for _ in range(16):  # bounded: this connection gets no more time than that
                if not socket.socket.recv(self.sock, RECV_SIZE, socket.MSG_DONTWAIT):
                    break
        except OSError:
            pass
        self.sock.close()


async def next_event(chan, conn, fds):
    """The next event from the peer on ``chan``, reading as needed (passed descriptors go to
    ``fds``); None when it closed cleanly."""
    while True:
        event = conn.next_event()
        if event is not p.NEED_DATA:
            return event
        if conn.buffered > p.MAX_BUFFER:
            raise p.RemoteProtocolError("peer sent more than one frame ahead")
        data, new_fds = await chan.recv()
        fds.extend(new_fds)
        if len(fds) > MAX_FDS:
            raise TooManyFds("more than %d descriptors passed" % MAX_FDS)
        conn.receive_data(data)


def close_all(fds):
    """Close every descriptor in ``fds`` (passed ones we will not use)."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    del fds[:]
