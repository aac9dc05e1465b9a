"""A client's path resolved beneath the directory its policy allows, on held descriptors.

The transfer helper, already running as the client's user, opens the allowed directory and walks
the client's path below it: openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
where the kernel has it (Linux 5.6+), else one component at a time with O_NOFOLLOW. The daemon
resolved symlinks when it checked the path, so a symlink met here was swapped in since: the walk
refuses it. Everything after is opened relative to the descriptors this returns; no path is
resolved again.
"""

import errno
import os
import struct

_SYS_OPENAT2 = 437  # the same number on every architecture (the unified table since 5.6)
_RESOLVE = 0x02 | 0x04 | 0x08  # NO_MAGICLINKS | NO_SYMLINKS | BENEATH
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_openat2 = []  # [syscall function] once probed; [None] when the kernel has none


class Outside(Exception):
    """The path leaves the allowed directory, or a symlink was met on the way."""


def locate(root, path, create=False):
    """(fd of the directory holding ``path``, its last name) beneath ``root``; with ``create``
    the missing directories above it are made (mkdir -p, never through a symlink)."""
    path = os.path.normpath(path)
    real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    if real == root or root == "/" and path == "/":  # the allowed directory itself
        return os.open(os.path.dirname(root), _DIR), os.path.basename(root) or "."
    rel = os.path.relpath(real, root)
    if rel == ".." or rel.startswith("../") or os.path.isabs(rel):
        raise Outside("refused %s: it leads outside %s (cwd_allow)" % (path, root))
    top = os.open(root, _DIR)
    try:
        return open_beneath(top, os.path.dirname(rel), create), os.path.basename(rel)
    except OSError as exc:  # named as the client named it, not relative to root
        raise OSError(exc.errno, exc.strerror, os.path.dirname(path)) from None
    finally:
        os.close(top)


def open_dir(root, path):
    """An fd of the existing directory ``path`` beneath ``root`` (symlinks resolved as the daemon
    checked them), or None when it is not one."""
    real = os.path.realpath(path)
    if real == root:
        return os.open(root, _DIR)
    rel = os.path.relpath(real, root)
    if rel == ".." or rel.startswith("../"):
        return None
    top = os.open(root, _DIR)
    try:
        return open_beneath(top, rel)
    except (Outside, OSError):
        return None
    finally:
        os.close(top)


def open_beneath(dir_fd, rel, create=False):
    """An fd of the directory ``rel`` below ``dir_fd``; Outside when it leaves it or a symlink
    is on the way."""
    if not rel or rel == ".":
        return os.dup(dir_fd)
    call = None if create else _syscall()
    if call is not None:
        try:
            return call(dir_fd, rel)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EXDEV):
                raise Outside("refused %s: a symlink or '..' on the way (never followed)" % rel)
            raise
    return _walk(dir_fd, rel, create)


def _walk(dir_fd, rel, create):
    fd = os.dup(dir_fd)
    for part in rel.split("/"):
        if part in ("", "."):
            continue
        try:
            if part == "..":
                raise Outside("refused %s: '..' on the way" % rel)
            try:
                nfd = os.open(part, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o777, dir_fd=fd)
                nfd = os.open(part, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Outside("refused %s: %s is not a directory (a symlink is never followed)"
                                  % (rel, part)) from None
                raise
        finally:
            os.close(fd)
        fd = nfd
    return fd


def _syscall():
    if not _openat2:
        _openat2.append(_probe())
    return _openat2[0]


def _probe():
    """openat2 as a function (dir_fd, rel) -> fd, or None where the kernel or libc has none."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        return None
    libc.syscall.restype = ctypes.c_long
    raw = struct.pack("=QQQ", _DIR, 0, _RESOLVE)  # struct open_how: flags, mode, resolve
    how = ctypes.create_string_buffer(raw, len(raw))

    def call(dir_fd, rel):
        fd = libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dir_fd), os.fsencode(rel), how,
                          ctypes.c_size_t(len(raw)))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), rel)
        return fd
    top = os.open("/", _DIR)
    try:
        os.close(call(top, "."))
    except OSError:
        return None  # no such call (ENOSYS), or a seccomp filter says no: walk instead
    finally:
        os.close(top)
    return call
