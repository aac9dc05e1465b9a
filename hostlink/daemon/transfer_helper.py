"""The host side of a transfer: ``python3 -S -m hostlink.daemon.transfer_helper send|receive|stat|df``.

hostlinkd starts it as the client's user for ``hostlink cp``, ``put``, ``get`` and ``df``; it packs
or unpacks the tar stream (wire/tarstream.py) on the descriptors the request brought.
"""

import os
import stat
import sys

from ..wire.plain import words
from ..wire.tarstream import (TransferError, Unpacker, copy_fd, free_bytes, manifest_line, pack,
                              receive_file, sha256_path, summary, total_size)


def main(argv):
    """Host side: ``send SRC [--exclude G]... [--verify]``, ``receive DEST [--verify] [--size N]``,
    ``stat PATH``, ``df PATH``. Errors are one line in plain words on stderr (the client's own, in
    fds mode: it adds nothing) and exit 1."""
    import signal
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        # A hang-up or timeout must unwind through the cleanups: no partial file stays behind.
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    try:
        action, path, rest = argv[0], argv[1], argv[2:]
        if action not in ACTIONS:
            raise TransferError("unknown action %r" % action)
        ACTIONS[action](path, rest)
    except (TransferError, OSError, IndexError, ValueError) as exc:
        sys.stderr.write("hostlink: %s\n" % words(exc, " on the host"))
        return 1
    return 0


def _excludes(rest):
    return [rest[i + 1] for i, a in enumerate(rest) if a == "--exclude"]


def _option(rest, key):
    return rest[rest.index(key) + 1]


def send(path, rest):
    """The tree at ``path`` as a tar stream on stdout, or with --raw one file's bytes."""
    if not os.path.lexists(path):
        raise TransferError("%s does not exist" % path)
    if "--raw" in rest:  # one regular file into the descriptor the client passed as stdout
        src = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            copy_fd(src, 1)
        finally:
            os.close(src)
    else:
        pack(path, sys.stdout.buffer, _excludes(rest), "--verify" in rest)


def stat_path(path, rest):
    """One line: kind, mode, mtime, size (what a transfer of it would write), sha256 or -."""
    st = os.lstat(path)
    kind = "file" if stat.S_ISREG(st.st_mode) else "other"
    digest = sha256_path(path) if kind == "file" and "--verify" in rest else "-"
    # Anything else reports what a transfer of it would write, for the space check.
    size = st.st_size if kind == "file" else total_size(path, _excludes(rest))
    sys.stdout.write("%s %o %d %d %s\n" % (kind, st.st_mode & 0o7777, int(st.st_mtime), size, digest))


def receive(path, rest):
    """Unpack the tar stream on stdin at ``path`` (or with --file take one passed file)."""
    verify = "--verify" in rest
    if "--size" in rest:
        need = int(_option(rest, "--size"))
        free, where = free_bytes(path)
        if need > free:
            raise TransferError("%d bytes do not fit in %s (%d free)" % (need, where, free))
    manifest = sys.stdout.buffer if verify else None
    if "--mkdir" in rest:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if "--file" in rest:  # one regular file, its own descriptor passed: no tar, no copy in user space
        sha = _option(rest, "--sha256") if "--sha256" in rest else ""
        done, digest = receive_file(path, _option(rest, "--file"), int(_option(rest, "--file-mode"), 8),
                                    int(_option(rest, "--mtime")), sha)
        files, size = 1, os.path.getsize(done)
        if manifest is not None:
            manifest.write(manifest_line(digest, _option(rest, "--file")))
        path = done
    else:
        files, size = Unpacker(path, verify, manifest).run(sys.stdin.buffer)
    if "--mode" in rest and os.path.isfile(path) and not os.path.islink(path):
        os.chmod(path, int(_option(rest, "--mode"), 8))
    sys.stderr.write(summary(files, size) if verify else "received %d files, %d bytes\n" % (files, size))


def df(path, rest):
    """One line: the filesystem holding ``path``, its free and total bytes."""
    free, where = free_bytes(path)
    st = os.statvfs(where)
    sys.stdout.write("%s %d %d\n" % (where, free, st.f_blocks * st.f_frsize))


ACTIONS = {"send": send, "stat": stat_path, "receive": receive, "df": df}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
