"""Pipes that hold a whole data frame, on both sides of the wire.

A pipe of Linux's default 64 KiB turns one 1 MiB frame into 16 rounds of writer and reader;
grown to a frame's size it is one write (bench/). fcntl.F_SETPIPE_SZ exists only from Python
3.10, so the number is named here.
"""

import fcntl

from .protocol import MAX_FRAME

F_SETPIPE_SZ = 1031  # Linux, <fcntl.h>


def grow(fd, size=MAX_FRAME):
    """Make the pipe ``fd`` hold ``size`` bytes; False where the kernel refuses (over
    /proc/sys/fs/pipe-max-size for an unprivileged process): it keeps the size it has."""
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, size)
        return True
    except OSError:
        return False
