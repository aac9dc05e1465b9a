"""Slots for commands running at once (``max_concurrent``), and the bounded queue of requests that
wait for one (``max_queued`` of them, each for at most ``busy_wait_ms``).

ServerState owns the one ``Slots``. A request takes a slot before its command is spawned and gives
it back when the command has ended; a waiting request leaves the queue on every path: a slot handed
to it, its deadline, its client hanging up, its task cancelled, the daemon shutting down (``close``).
A slot freed goes to the oldest waiter first, so a newcomer never overtakes the queue.
"""

import asyncio
import collections

from .errors import Busy, ShuttingDown

# A request that waits this long is told so (Waiting, kind "slot"): shorter waits say nothing,
# as a busy daemon usually frees a slot within them.
NOTICE_AFTER_S = 1.0


class Slots:
    """How many slots are taken, and the requests waiting for one, oldest first."""

    def __init__(self, state):
        self.state = state  # for the current configuration (max_concurrent may change on reload)
        self.used = 0
        self.queue = collections.deque()  # futures: True when handed a slot, False on shutdown
        self.closed = False

    async def take(self, queue, exchange):
        """Take a slot; when none is free and ``queue`` is set, wait in line for one (telling the
        client after NOTICE_AFTER_S). Busy, ShuttingDown, or ConnectionResetError on a hang-up."""
        if self.closed:
            raise ShuttingDown("hostlinkd is shutting down")
        self._hand_out()
        cfg = self.state.cfg
        if not self.queue and self.used < cfg.max_concurrent:
            self.used += 1
            return
        if not queue or not cfg.busy_wait_ms:
            raise Busy("server busy: %d commands running (max_concurrent = %d)"
                       % (self.used, cfg.max_concurrent))
        if len(self.queue) >= cfg.max_queued:
            raise Busy("server busy: %d commands running (max_concurrent = %d) and %d waiting "
                       "(max_queued)" % (self.used, cfg.max_concurrent, len(self.queue)))
        got = self.state.loop.create_future()
        self.queue.append(got)
        try:
            await self._wait(got, exchange, cfg.busy_wait_ms)
        except BaseException:
            self._leave(got)
            raise

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
            gone.cancel()
        if got.done():
            if got.result():
                return
            raise ShuttingDown("hostlinkd is shutting down")
        if gone in done:
            raise ConnectionResetError("the client went away while waiting for a slot")
        raise Busy("server busy: no free slot within %d ms (max_concurrent = %d, busy_wait_ms)"
                   % (wait_ms, self.state.cfg.max_concurrent))

    def _leave(self, got):
        """Out of the queue, whatever happened; a slot handed to us as we left goes on."""
        if got.done() and not got.cancelled() and got.result():
            self.release()
            return
        got.cancel()
        try:
            self.queue.remove(got)
        except ValueError:
            pass

    def release(self):
        """Give a slot back: the oldest waiter gets it."""
        self.used -= 1
        self._hand_out()

    def _hand_out(self):
        while self.queue and self.used < self.state.cfg.max_concurrent and not self.closed:
            got = self.queue.popleft()
            if not got.done():
                self.used += 1
                got.set_result(True)

    def close(self):
        """The daemon stops: every waiter is told so, and no slot is handed out any more."""
        self.closed = True
        while self.queue:
            got = self.queue.popleft()
            if not got.done():
                got.set_result(False)
