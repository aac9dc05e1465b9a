"""File transfers as tar streams, packed on one side and unpacked safely on the other (untar.py).

The same code runs in the client (``hostlink cp``, ``put``, ``get``) and on the host, in the
helper hostlinkd starts as the client's user (daemon/transfer_helper.py). Packing walks with
directory descriptors (os.fwalk) and opens each file with O_NOFOLLOW relative to its directory,
so a symlink swapped in while a tree is sent is never followed; a file is written under a
temporary name beside its destination and renamed into place only when complete.
"""

import os
import stat

# tarfile, fnmatch and hashlib are imported where they are used: together they cost more than
# 20 ms (re, enum), and a single file, a stat or df needs none of them (bench/).

CHUNK = 1 << 20
PAX_SHA = "hostlink.sha256"
TMP_PREFIX = ".hostlink-partial-"


class TransferError(Exception):
    """A transfer cannot go on; the message says why and how far it got."""


def excluded(rel, patterns):
    """True when ``rel`` (a relative path) matches a pattern by base name, whole path or any
    leading directory."""
    if not patterns:
        return False
    import fnmatch
    parts = rel.split("/")
    for pat in patterns:
        if fnmatch.fnmatchcase(parts[-1], pat) or fnmatch.fnmatchcase(rel, pat):
            return True
        for i in range(1, len(parts)):
            if fnmatch.fnmatchcase(parts[i - 1], pat) or fnmatch.fnmatchcase("/".join(parts[:i]), pat):
                return True
    return False


def pack(src, out, excludes=(), verify=False):
    """Write ``src`` (a file or a directory, recursively) as a tar stream to the binary file
    ``out``; symlinks stay symlinks. Returns the (files, bytes) sent."""
    src = src.rstrip("/") or "/"
    with _parent(src) as (fd, name):
        return pack_at(fd, name, os.path.basename(src) or ".", out, excludes, verify)


def pack_at(dir_fd, name, top, out, excludes=(), verify=False):
    """pack() of ``name`` in the directory ``dir_fd``, its members named from ``top``: every
    component is opened relative to the one above it, so no symlink is followed on the way."""
    import tarfile
    files = size = 0
    # 1 MiB blocks: tarfile's stream default (10 KiB records, 16 KiB copies) caps it near 150 MB/s.
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape", bufsize=CHUNK, copybufsize=CHUNK) as tar:
        for fd, entry, rel, st in walk_at(dir_fd, name, top, excludes):
            info = _info(tarfile, rel, st)
            if info.isreg():
                src = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                              dir_fd=fd)
                with os.fdopen(src, "rb") as f:
                    if not os.path.samestat(os.fstat(src), st):
                        raise TransferError("%s changed while it was sent" % rel)
                    if verify:
                        info.pax_headers[PAX_SHA] = sha256_fd(src)
                    tar.addfile(info, f)
                files += 1
                size += info.size
            elif info.isdir():
                tar.addfile(info)
            elif info.issym():
                info.linkname = os.readlink(entry, dir_fd=fd)
                tar.addfile(info)
    return files, size


def _info(tarfile, rel, st):
    info = tarfile.TarInfo(rel)
    info.mode, info.mtime, info.uid, info.gid = st.st_mode & 0o7777, st.st_mtime, st.st_uid, st.st_gid
    if stat.S_ISREG(st.st_mode):
        info.type, info.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
    else:
        info.type = tarfile.FIFOTYPE  # devices, fifos, sockets: never sent
    return info


class _parent:
    """``with _parent(path) as (fd, name)``: its directory held open, and its last name."""

    def __init__(self, path):
        path = os.path.abspath(path)
        self.fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.name = os.path.basename(path) or "."

    def __enter__(self):
        return self.fd, self.name

    def __exit__(self, *exc):
        os.close(self.fd)


def walk_at(dir_fd, name, top="x", excludes=()):
    """(directory fd, name in it, member name, lstat) of ``name`` and all below it, each directory
    opened without following a symlink (os.fwalk)."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    yield dir_fd, name, top, st
    if not stat.S_ISDIR(st.st_mode):
        return
    for base, dirs, names, fd in os.fwalk(name, dir_fd=dir_fd):
        relbase = os.path.relpath(base, name)
        for entry in sorted(dirs + names):
            rel = entry if relbase == "." else relbase + "/" + entry
            if excludes and excluded(rel, excludes):
                if entry in dirs:
                    dirs.remove(entry)
                continue
            try:
                yield fd, entry, top + "/" + rel, os.stat(entry, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we walk: not sent
        dirs.sort()


def total_size(src, excludes=()):
    src = src.rstrip("/") or "/"
    with _parent(src) as (fd, name):
        return total_size_at(fd, name, excludes)


def total_size_at(dir_fd, name, excludes=()):
    """The bytes of the regular files a transfer of ``name`` in ``dir_fd`` would write."""
    return sum(st.st_size for _, _, _, st in walk_at(dir_fd, name, "x", excludes)
               if stat.S_ISREG(st.st_mode))


def manifest_line(digest, name):
    """A sha256sum line as bytes; names with a newline or backslash are escaped as sha256sum does."""
    raw = name.encode("utf-8", "surrogateescape")
    if b"\n" in raw or b"\\" in raw:
        return b"\\" + digest.encode() + b"  " + raw.replace(b"\\", b"\\\\").replace(b"\n", b"\\n") + b"\n"
    return digest.encode() + b"  " + raw + b"\n"


def summary(files, size):
    """The count after a verified transfer (stderr, so stdout stays a sha256sum file)."""
    return "%d of %d files sha256-verified, %d bytes\n" % (files, files, size)


def free_bytes(path):
    """Free space for an unprivileged writer at ``path`` (the nearest existing ancestor)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, path


def write_beside(dir_fd, final, fill, mode, mtime):
    """Write ``final`` in the directory ``dir_fd`` the safe way: ``fill(fd)`` writes a new temporary
    file beside it (O_EXCL, O_NOFOLLOW), then mode and time are set and it is renamed into place. On
    any failure, ``fill``'s included, the temporary file is removed. Returns what ``fill`` returned."""
    tmp = TMP_PREFIX + os.urandom(4).hex()
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    try:
        out = fill(fd)
        os.fchmod(fd, mode)
        os.utime(fd, (mtime, mtime))
        os.close(fd)
        fd = -1
        os.rename(tmp, final, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return out
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def copy_fd(src, dst):
    """Copy everything from ``src`` to ``dst`` inside the kernel where it can; returns the bytes."""
    total = 0
    for copy in (_copy_range, _sendfile):
        try:
            while True:
                n = copy(src, dst)
                if not n:
                    return total
                total += n
        except OSError as exc:
            if total or exc.errno not in (18, 22, 38, 95):  # EXDEV, EINVAL, ENOSYS, EOPNOTSUPP
                raise
    while True:  # neither works between these two: plain reads and writes
        block = os.read(src, CHUNK)
        if not block:
            return total
        view = memoryview(block)
        while view:
            view = view[os.write(dst, view):]
        total += len(block)


def _copy_range(src, dst):
    return os.copy_file_range(src, dst, 1 << 30)


def _sendfile(src, dst):
    return os.sendfile(dst, src, None, 1 << 30)


def receive_file(dir_fd, dest, name, mode, mtime, want_sha):
    """One regular file from fd 0 (the client's own file, passed to us) to ``dest`` in the
    directory ``dir_fd``: into it when it is a directory (never through a symlink), else as it;
    written beside it and renamed when complete. Returns (the name written, digest)."""
    if not name or name in (".", "..") or "/" in name:
        raise TransferError("refused the file name %r" % name)
    try:
        parent = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=dir_fd)
        final, shown = name, os.path.join(dest, name)
    except OSError:
        parent, final, shown = os.dup(dir_fd), dest, dest

    def fill(fd):
        copy_fd(0, fd)
        digest = sha256_fd(fd) if want_sha else ""
        if digest != want_sha:
            raise TransferError("%s: sha256 differs after the transfer (%s, expected %s)"
                                % (final, digest, want_sha))
        return digest
    try:
        return shown, write_beside(parent, final, fill, mode, mtime)
    finally:
        os.close(parent)


def sha256_path(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        return sha256_fd(fd)
    finally:
        os.close(fd)


def sha256_fd(fd):
    import hashlib
    h = hashlib.sha256()
    offset = 0
    while True:
        block = os.pread(fd, CHUNK, offset)
        if not block:
            return h.hexdigest()
        h.update(block)
        offset += len(block)
