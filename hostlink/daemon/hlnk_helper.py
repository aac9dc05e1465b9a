"""The transfer helper (transfer_helper.py) run for a request of the first hostlink's (HLNK):
``run`` hands it to execute.run_exec, so it is authorized, run as the client's user and audited
as every transfer is; ``Helper`` is its exchange: what goes to its stdin, what becomes of its
stdout (kept, or handed on as it comes), its stderr kept for the message.
"""

import errno
import logging
import os

from ..wire import plain
from ..wire import protocol as p
from . import execute
from .channel import TooManyFds, wait_readable, wait_writable
from .running import RELAY_CHUNK

log = logging.getLogger("hostlinkd")
STDERR_KEPT = 64 << 10  # its message is one line; more is not kept


class Helper:
    """One helper run's side of the connection. ``feed(command, fd)`` writes its stdin (then it
    is closed; False: only once the helper is gone); ``sink(data)`` takes its stdout as it comes, else up to ``keep`` bytes are kept
    (past them it is stopped); ``on_start()`` runs once it is started."""

    def __init__(self, rq, keep=0, sink=None, feed=None, on_start=None):
        self.rq = rq
        self.keep, self.sink, self.feed, self.on_start = keep, sink, feed, on_start
        self.stdout, self.stderr = bytearray(), bytearray()
        self.total = 0  # stdout bytes, kept or not
        self.ended = self.refusal = None

    @property
    def fds(self):
        return self.rq.fds

    @property
    def sock(self):
        return self.rq.chan.sock

    @property
    def ok(self):
        return self.refusal is None and self.ended is not None and self.ended.exit_code == 0

    def reason(self):
        """Why it failed, in the words of strerror where it said [Errno N]."""
        if self.ended is not None and self.ended.timed_out:
            return "timed out after %d ms" % self.ended.duration_ms
        text = self.stderr.decode("utf-8", "replace").strip().splitlines()
        return plain.strerror_of(text[-1]) if text else "failed"

    async def refuse(self, exc):
        self.refusal = (exc.code, exc.message)

    async def waiting(self, ident, node, text, timeout_ms, kind="approval"):
        pass

    async def until_closed(self):
        while await self.rq.recv(keep=False):
            pass

    async def started(self, pid, timeout_ms):
        if self.on_start is not None:
            await self.on_start()

    async def input(self, command, pipes):
        """Its stdin from ``feed``, then closed; the client's hang-up ends it."""
        try:
            if self.feed is not None and await self.feed(command, pipes[0]) is False:
                await command.exited  # it was told to stop: it must not see the end of its input
            os.close(pipes[0])
            pipes[0] = -1
            while await self.rq.recv(keep=False):
                pass
        except (ConnectionError, OSError, TooManyFds, p.RemoteProtocolError) as exc:
            log.debug("client input ended: %s", exc)
        if not command.exited.done():
            command.hang_up()

    async def output(self, fd, kind, command):
        while True:
            try:
                data = os.read(fd, RELAY_CHUNK)
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return
                if not isinstance(exc, BlockingIOError):
                    raise
                if command.exited.done():
                    return
                await wait_readable(command.loop, fd, until=command.exited)
                continue
            if not data:
                return
            if kind is p.Stderr:
                self.stderr += data[:max(0, STDERR_KEPT - len(self.stderr))]
            elif self.sink is not None:
                await self.sink(data)
            else:
                self.total += len(data)
                self.stdout += data[:max(0, self.keep - len(self.stdout))]
                if self.total > self.keep and not command.exited.done():
                    command.terminate()  # more than can be answered: no use reading it all

    async def exit(self, event):
        self.ended = event


async def run(rq, action, args, helper):
    """Run the transfer helper's ``action`` on ``args`` with ``helper`` as its exchange."""
    req = p.Exec(argv=tuple(args), xfer=action, mode="relay")
    rq.record.update(xfer=action, path=args[0] if args else "")
    try:
        rq.record.update((await execute.run_exec(rq.state, rq.client, req, helper,
                                                 rq.audit_start)).audit())
    except p.RemoteProtocolError as exc:
        helper.refusal = ("bad_request", str(exc))
    return helper


async def write_all(loop, fd, data):
    """All of ``data`` into a helper's stdin pipe; False when it stopped reading."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await wait_writable(loop, fd)
        except OSError:
            return False
    return True
