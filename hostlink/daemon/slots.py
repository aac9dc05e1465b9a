"""The bounded queue of requests waiting for a running-command slot (``max_queued`` of them, each
for at most ``busy_wait_ms``). limits.py counts the slots; this is only the line in front of them.

A waiting request leaves the queue on every path: a slot handed to it, its deadline, its client
hanging up, its task cancelled, the daemon shutting down (``close``). A slot freed goes to the
oldest waiter first, as a ticket taken for it at that moment, so a newcomer never overtakes.
"""

import asyncio
import collections

from .channel import ended
from .errors import Busy, ShuttingDown

# A request that waits this long is told so (Waiting, kind "slot"): shorter waits say nothing,
# as a busy daemon usually frees a slot within them.
NOTICE_AFTER_S = 1.0


class Slots:
    """The requests waiting for a slot, oldest first: (future, client name)."""

    def __init__(self, state):
        self.state = state  # the configuration as it is now, and its limits
        self.queue = collections.deque()  # future -> a limits.Ticket when handed one, None at shutdown
        self.closed = False

    async def take(self, client, queue, exchange):
        """A running-command ticket of ``client``'s; when none is free and ``queue`` is set, wait in
        line for one (telling the client after NOTICE_AFTER_S). Busy, ShuttingDown, or
        ConnectionResetError when the client hangs up while it waits."""
        if self.closed:
            raise ShuttingDown("hostlinkd is shutting down")
        busy = self.state.limits.commands_busy()
        if not self.queue and not busy:
            return self._ticket(client)
        cfg = self.state.cfg
        if not busy:
            busy = "server busy: %d requests wait for a slot (max_concurrent = %d): try again " \
                "later" % (len(self.queue), cfg.max_concurrent)
        if not queue or not cfg.busy_wait_ms:
            raise Busy(busy)
        if len(self.queue) >= cfg.max_queued:
            raise Busy("server busy: %d commands running and %d waiting (max_concurrent = %d, "
                       "max_queued = %d): try again later" % (
                           self.state.limits.commands.get("", 0), len(self.queue),
                           cfg.max_concurrent, cfg.max_queued))
        got = self.state.loop.create_future()
        self.queue.append((got, client))
        try:
            return await self._wait(got, exchange, cfg.busy_wait_ms)
        except BaseException:
            self._leave(got)
            raise

    def _ticket(self, client):
        return self.state.limits.command(client, on_release=self._hand_out)

    async def _wait(self, got, exchange, wait_ms):
        gone = self.state.loop.create_task(exchange.until_closed())
        try:
            done, _ = await asyncio.wait({got, gone}, timeout=min(NOTICE_AFTER_S, wait_ms / 1000),
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done and wait_ms / 1000 > NOTICE_AFTER_S:
                cfg = self.state.cfg
                await exchange.waiting("", cfg.node, "waiting for a free slot on %s (max_concurrent "
                                       "%d)..." % (cfg.node, cfg.max_concurrent), wait_ms, "slot")
                done, _ = await asyncio.wait({got, gone}, timeout=wait_ms / 1000 - NOTICE_AFTER_S,
                                             return_when=asyncio.FIRST_COMPLETED)
        finally:
            await ended(gone)
        if got.done():
            if got.result() is not None:
                return got.result()
            raise ShuttingDown("hostlinkd is shutting down")
        if gone in done:
            raise ConnectionResetError("the client went away while waiting for a slot")
        raise Busy("server busy: no free slot within %d ms (max_concurrent = %d, busy_wait_ms): "
                   "try again later" % (wait_ms, self.state.cfg.max_concurrent))

    def _leave(self, got):
        """Out of the queue, whatever happened; a slot handed to us as we left goes on."""
        if got.done() and not got.cancelled() and got.result() is not None:
            got.result().release()  # hands it to the next in line
            return
        got.cancel()
        for entry in self.queue:
            if entry[0] is got:
                self.queue.remove(entry)
                break

    def _hand_out(self):
        """A slot came free: the oldest waiters get tickets while there are slots."""
        while self.queue and not self.closed and not self.state.limits.commands_busy():
            got, client = self.queue.popleft()
            if not got.done():
                got.set_result(self._ticket(client))

    def close(self):
        """The daemon stops: every waiter is told so, and no slot is handed out any more."""
        self.closed = True
        while self.queue:
            got, _ = self.queue.popleft()
            if not got.done():
                got.set_result(None)
