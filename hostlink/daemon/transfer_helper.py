"""The host side of a transfer: ``hostlink cp``, ``put``, ``get`` and ``df``.

hostlinkd starts it isolated, in /, as the client's user (spawn.helper), with argv
``ROOT keep|strip ACTION PATH [OPTION]...``: the directory policy confines the transfer to and
whether setuid, setgid and sticky bits may be written come first, from the daemon; the rest is
the client's. The client's path is resolved beneath ROOT on descriptors (beneath.py) and the tar
stream packed or unpacked relative to them (wire/tarstream.py, wire/untar.py).
"""

import os
import stat
import sys

from ..wire.plain import words
from ..wire.tarstream import (TransferError, copy_fd, free_bytes, manifest_line, pack_at,
                              receive_file, sha256_fd, summary, total_size_at, walk_at)
from ..wire.untar import Unpacker
from .beneath import Outside, locate, open_dir

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def main(argv):
    """Host side: ``ROOT keep|strip`` then ``send SRC [--exclude G]... [--verify] [--raw]``,
    ``receive DEST [--verify] [--size N] [--mkdir] [--mode M] [--file NAME [--exact] ...]``, ``stat PATH``,
    ``df PATH``. Errors are one line in plain words on stderr (the client's own, in fds mode: it
    adds nothing) and exit 1."""
    import signal
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        # A hang-up or timeout must unwind through the cleanups: no partial file stays behind.
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    try:
        root, bits, action, path, rest = argv[0], argv[1], argv[2], argv[3], argv[4:]
        if action not in ACTIONS:
            raise TransferError("unknown action %r" % action)
        ACTIONS[action](root, path, rest, 0o7777 if bits == "keep" else 0o777)
    except (TransferError, Outside, OSError, IndexError, ValueError) as exc:
        if isinstance(exc, OSError) and len(argv) > 3 and exc.filename == _leaf(argv[3]):
            exc.filename = argv[3]  # opened by its name in a held directory: say the client's path
        sys.stderr.write("hostlink: %s\n" % words(exc, " on the host"))
        return 1
    return 0


def _leaf(path):
    return os.path.basename(os.path.normpath(path))


def _excludes(rest):
    return [rest[i + 1] for i, a in enumerate(rest) if a == "--exclude"]


def _option(rest, key):
    return rest[rest.index(key) + 1]


def _open_file(fd, name, shown):
    """An fd of the regular file ``name`` in ``fd``; never a symlink, a fifo or a device."""
    src = os.open(name, _READ, dir_fd=fd)
    if not stat.S_ISREG(os.fstat(src).st_mode):
        os.close(src)
        raise TransferError("%s is not a regular file" % shown)
    return src


def send(root, path, rest, modes):
    """The tree at ``path`` as a tar stream on stdout, or with --raw one file's bytes."""
    fd, name = locate(root, path)
    try:
        try:
            os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise TransferError("%s does not exist" % path) from None
        if "--raw" in rest:  # one regular file into the descriptor the client passed as stdout
            src = _open_file(fd, name, path)
            try:
                copy_fd(src, 1)
            finally:
                os.close(src)
        else:
            top = os.path.basename(os.path.normpath(path)) or "."
            pack_at(fd, name, top, sys.stdout.buffer, _excludes(rest), "--verify" in rest)
    finally:
        os.close(fd)


def stat_path(root, path, rest, modes):
    """One line: kind, mode, mtime, size (what a transfer of it would write), sha256 or -."""
    fd, name = locate(root, path)
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        kind = "file" if stat.S_ISREG(st.st_mode) else "other"
        digest = "-"
        if kind == "file" and "--verify" in rest:
            src = _open_file(fd, name, path)
            try:
                digest = sha256_fd(src)
            finally:
                os.close(src)
        # Anything else reports what a transfer of it would write, for the space check.
        size = st.st_size if kind == "file" else total_size_at(fd, name, _excludes(rest))
    finally:
        os.close(fd)
    sys.stdout.write("%s %o %d %d %s\n" % (kind, st.st_mode & 0o7777, int(st.st_mtime), size, digest))


def list_files(root, path, rest, modes):
    """What the first hostlink's get_stat lists: the kind of ``path`` (dir, file, other) on the
    first line, then each regular file below it as a JSON [path, size], at most --limit + 1."""
    import json
    limit = int(_option(rest, "--limit"))
    fd, name = locate(root, path)
    try:
        out = sys.stdout
        walk = walk_at(fd, name)
        st = next(walk)[3]
        out.write("dir\n" if stat.S_ISDIR(st.st_mode) else "file\n" if stat.S_ISREG(st.st_mode)
                  else "other\n")
        listed = 0
        for _fd, _name, rel, st in walk:
            if stat.S_ISREG(st.st_mode):
                out.write(json.dumps([rel.split("/", 1)[1], st.st_size]) + "\n")
                listed += 1
                if listed > limit:
                    break
    finally:
        os.close(fd)


def _destination(root, path, mkdir):
    """(directory fd, name) to write ``path`` at: an existing directory is written into."""
    fd = open_dir(root, path)
    return (fd, ".") if fd is not None else locate(root, path, create=mkdir)


def _exactly(root, path, mkdir):
    """(directory fd, name) to write the file ``path`` as; IsADirectoryError when it is one."""
    fd, name = locate(root, path, create=mkdir)
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return fd, name
    except OSError:
        os.close(fd)
        raise
    if stat.S_ISDIR(st.st_mode) or name in (".", ".."):
        os.close(fd)
        raise IsADirectoryError(21, os.strerror(21), path)
    return fd, name


def receive(root, path, rest, modes):
    """Unpack the tar stream on stdin at ``path`` (or with --file take one passed file)."""
    verify = "--verify" in rest
    if "--size" in rest:
        need = int(_option(rest, "--size"))
        free, where = free_bytes(path)
        if need > free:
            raise TransferError("%d bytes do not fit in %s (%d free)" % (need, where, free))
    manifest = sys.stdout.buffer if verify else None
    try:
        if "--exact" in rest:  # PATH itself, never into it (the first hostlink's put)
            fd, name = _exactly(root, path, "--mkdir" in rest)
        else:
            fd, name = _destination(root, path, "--mkdir" in rest)
    except FileNotFoundError:
        raise TransferError("%s does not exist" % os.path.dirname(os.path.normpath(path))) from None
    try:
        if "--file" in rest:  # one regular file, its own descriptor passed: no tar, no copy in user space
            sha = _option(rest, "--sha256") if "--sha256" in rest else ""
            shown, digest = receive_file(fd, name, _option(rest, "--file"),
                                         int(_option(rest, "--file-mode"), 8) & modes,
                                         int(_option(rest, "--mtime")), sha)
            files, size = 1, os.fstat(0).st_size
            if manifest is not None:
                manifest.write(manifest_line(digest, _option(rest, "--file")))
        else:
            files, size = Unpacker(path, verify, manifest, (fd, name), modes).run(sys.stdin.buffer)
        if "--mode" in rest and name != ".":
            _chmod(fd, name, int(_option(rest, "--mode"), 8) & modes)
    finally:
        os.close(fd)
    sys.stderr.write(summary(files, size) if verify else "received %d files, %d bytes\n" % (files, size))


def _chmod(fd, name, mode):
    """put --mode: on the regular file just written (never through a symlink)."""
    try:
        target = _open_file(fd, name, name)
    except (TransferError, OSError):
        return  # a directory or link was written: --mode is for a file
    try:
        os.fchmod(target, mode)
    finally:
        os.close(target)


def df(root, path, rest, modes):
    """One line: the filesystem holding ``path``, its free and total bytes."""
    free, where = free_bytes(path)
    st = os.statvfs(where)
    sys.stdout.write("%s %d %d\n" % (where, free, st.f_blocks * st.f_frsize))


ACTIONS = {"send": send, "stat": stat_path, "receive": receive, "df": df, "list": list_files}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
