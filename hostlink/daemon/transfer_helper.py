"""The host side of a transfer: ``python3 -S -m hostlink.daemon.transfer_helper send|receive|stat|df``.

hostlinkd starts it as the client's user for ``hostlink cp``, ``put``, ``get`` and ``df``; it packs
or unpacks the tar stream (wire/tarstream.py) on the descriptors the request brought.
"""

import os
import stat
import sys

from ..wire.tarstream import (TransferError, Unpacker, copy_fd, free_bytes, manifest_line, pack,
                              receive_file, sha256_path, summary, total_size)


def main(argv):
    """Host side: ``send SRC [--exclude G]... [--verify]``, ``receive DEST [--verify] [--size N]``,
    ``df PATH``. Errors are one line on stderr and exit 1."""
    import signal
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        # A hang-up or timeout must unwind through the cleanups: no partial file stays behind.
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    try:
        action, path, rest = argv[0], argv[1], argv[2:]
        excludes = [rest[i + 1] for i, a in enumerate(rest) if a == "--exclude"]
        verify = "--verify" in rest
        if action == "send":
            if not os.path.lexists(path):
                raise TransferError("%s does not exist" % path)
            if "--raw" in rest:  # one regular file into the descriptor the client passed as stdout
                src = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    copy_fd(src, 1)
                finally:
                    os.close(src)
            else:
                pack(path, sys.stdout.buffer, excludes, verify)
        elif action == "stat":
            st = os.lstat(path)
            kind = "file" if stat.S_ISREG(st.st_mode) else "other"
            digest = sha256_path(path) if kind == "file" and verify else "-"
            # Anything else reports what a transfer of it would write, for the space check.
            size = st.st_size if kind == "file" else total_size(path, excludes)
            sys.stdout.write("%s %o %d %d %s\n" % (kind, st.st_mode & 0o7777, int(st.st_mtime),
                                                   size, digest))
        elif action == "receive":
            if "--size" in rest:
                need = int(rest[rest.index("--size") + 1])
                free, where = free_bytes(path)
                if need > free:
                    raise TransferError("%d bytes do not fit in %s (%d free)" % (need, where, free))
            manifest = sys.stdout.buffer if verify else None
            if "--mkdir" in rest:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            if "--file" in rest:  # one regular file, its own descriptor passed: no tar, no copy in user space
                opt = lambda key: rest[rest.index(key) + 1]  # noqa: E731
                sha = opt("--sha256") if "--sha256" in rest else ""
                done, digest = receive_file(path, opt("--file"), int(opt("--file-mode"), 8),
                                            int(opt("--mtime")), sha)
                files, size = 1, os.path.getsize(done)
                if manifest is not None:
                    manifest.write(manifest_line(digest, opt("--file")))
                path = done
            else:
                files, size = Unpacker(path, verify, manifest).run(sys.stdin.buffer)
            if "--mode" in rest and os.path.isfile(path) and not os.path.islink(path):
                os.chmod(path, int(rest[rest.index("--mode") + 1], 8))
            sys.stderr.write(summary(files, size) if verify else "received %d files, %d bytes\n" % (files, size))
        elif action == "df":
            free, where = free_bytes(path)
            st = os.statvfs(where)
            sys.stdout.write("%s %d %d\n" % (where, free, st.f_blocks * st.f_frsize))
        else:
            raise TransferError("unknown action %r" % action)
    except (TransferError, OSError, IndexError, ValueError) as exc:
        sys.stderr.write("hostlink transfer: %s\n" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
