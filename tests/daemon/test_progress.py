"""A progress line for transfers on a terminal (stderr a tty): bytes, rate, ETA; silent when stderr
is not a terminal or with -q. HOSTLINK_PROGRESS_AFTER_MS=0 shows it at once (default 2000), so
the test does not depend on how long a transfer takes."""

import os
import pty
import subprocess

import pytest

SIZE = 8 << 20


def _run_on_a_terminal(d, *args, env=None):
    """(exit code, what reached the terminal on stderr) of the client with stderr on a pty."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(d.cmd(*args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=follower, env=env or d.env(HOSTLINK_PROGRESS_AFTER_MS="0"))
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the client and all it started have closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    return proc.wait(20), seen


@pytest.fixture
def big(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(SIZE))
    return src


@pytest.mark.parametrize("how", ["file", "tree", "relayed tree"])
def test_progress_on_a_terminal(daemon, big, tmp_path, how):
    src = big / "a.bin" if how == "file" else big
    flags = ("--relay",) if how.startswith("relayed") else ()
    for direction in ("put", "get"):
        dest = tmp_path / ("%s-%s" % (direction, how.replace(" ", "-")))
        args = ("cp", str(src), "host:%s" % dest) if direction == "put" else \
               ("cp", "host:%s" % src, str(dest))
        code, seen = _run_on_a_terminal(daemon, *flags, *args)
        assert code == 0, seen
        lines = seen.split(b"\r\x1b[K")  # each update rewrites the line
        assert b"8.0 MiB of 8.0 MiB (100%)" in lines[-1] and b"MiB/s" in lines[-1], seen
        # The summary comes after the progress line, never inside it.
        assert seen.endswith(b"received 1 files, %d bytes\r\n" % SIZE), seen


def test_silent_without_a_terminal_or_with_q(daemon, big, tmp_path):
    r = daemon.run("cp", str(big), "host:%s" % (tmp_path / "a"),
                   env=daemon.env(HOSTLINK_PROGRESS_AFTER_MS="0"))
    assert r.returncode == 0 and r.stderr == b"received 1 files, %d bytes\n" % SIZE
    for quiet in (("-q", "cp"), ("cp", "-q"), ("cp", "--quiet")):
        code, seen = _run_on_a_terminal(daemon, *quiet, str(big), "host:%s" % (tmp_path / "b"))
        assert (code, seen) == (0, b"received 1 files, %d bytes\r\n" % SIZE)
