"""A progress line for a transfer that lasts, on a terminal: bytes, rate, and the ETA when the size
is known. A thread looks at a counter every half second once AFTER_MS has passed; the transfer
itself never waits for it. Loaded only when stderr is a terminal and -q was not given.
"""

import os
import threading
import time

from . import output

# Shorter transfers say nothing: a line that flashes by is noise (env HOSTLINK_PROGRESS_AFTER_MS).
AFTER_MS = 2000
EVERY_S = 0.5


def wanted(opts, environ):
    """A Meter factory when progress is to be shown (stderr a terminal, no -q), else None."""
    if opts.quiet or not os.isatty(2):
        return None
    after = environ.get("HOSTLINK_PROGRESS_AFTER_MS", "")
    after_ms = int(after) if after.isdigit() else AFTER_MS
    return lambda total, count: Meter(total, count, after_ms / 1000)


class Meter:
    """Shows ``count()`` against ``total`` (0: unknown) while a transfer runs; a context manager."""

    def __init__(self, total, count, after_s):
        self.total = total
        self.count = count
        self.after_s = after_s
        self.started = time.monotonic()
        self.shown = False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        if self.shown or time.monotonic() - self.started >= self.after_s:
            self._show(final=True)

    def _tick(self):
        if self.done.wait(self.after_s):
            return
        while True:
            self._show()
            if self.done.wait(EVERY_S):
                return

    def _show(self, final=False):
        try:
            moved = self.count()
        except (OSError, ValueError):
            return  # the descriptor is closed: the transfer ended
        self.shown = True
        output.progress(moved, self.total, time.monotonic() - self.started, final)
