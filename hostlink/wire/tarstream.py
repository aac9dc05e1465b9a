"""File transfers as tar streams, packed on one side and unpacked safely on the other.

The same code runs in the client (``hostlink cp``, ``put``, ``get``) and on the host, in the
helper hostlinkd starts as the client's user (daemon/transfer_helper.py). Unpacking
never writes outside its destination: every path component is opened relative to the directory
above it with O_NOFOLLOW, names that are absolute or hold ``..`` refuse the whole stream, and
each file is written under a temporary name beside its destination and renamed into place only
when complete, so an interrupted transfer leaves no partial file under a real name.
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
    top = os.path.basename(src) or "."
    import tarfile
    files = size = 0
    # 1 MiB blocks: tarfile's stream default (10 KiB records, 16 KiB copies) caps it near 150 MB/s.
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape", bufsize=CHUNK, copybufsize=CHUNK) as tar:
        for path, rel in _walk(src, top, excludes):
            info = tar.gettarinfo(path, arcname=rel)
            info.uname = info.gname = ""
            if info.isreg():
                if verify:
                    info.pax_headers[PAX_SHA] = sha256_path(path)
                with open(path, "rb") as f:
                    tar.addfile(info, f)
                files += 1
                size += info.size
            elif info.isdir() or info.issym():
                tar.addfile(info)
    return files, size


def _walk(src, top, excludes):
    yield src, top
    if os.path.isdir(src) and not os.path.islink(src):
        for base, dirs, names in os.walk(src):
            relbase = os.path.relpath(base, src)
            for name in sorted(dirs + names):
                rel = name if relbase == "." else relbase + "/" + name
                if excludes and excluded(rel, excludes):
                    if name in dirs:
                        dirs.remove(name)
                    continue
                yield os.path.join(base, name), top + "/" + rel
            dirs.sort()


def total_size(src, excludes=()):
    return sum(os.lstat(p).st_size for p, _ in _walk(src.rstrip("/") or "/", "x", excludes)
               if stat.S_ISREG(os.lstat(p).st_mode))


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


class Unpacker:
    """Extracts a tar stream into ``dest`` as docker cp does: into it when it is a directory,
    else as it (its parent must exist)."""

    def __init__(self, dest, verify=False, manifest=None):
        self.verify = verify
        self.manifest = manifest
        self.files = self.bytes = 0
        self._made = []
        self._dir_times = []
        dest = os.path.abspath(dest)
        if os.path.isdir(dest):
            self.root, self.rename = dest, None
        else:
            self.root, self.rename = os.path.dirname(dest), os.path.basename(dest)
            if not os.path.isdir(self.root):
                raise TransferError("%s does not exist" % self.root)
        self.root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)

    def run(self, fileobj):
        import tarfile
        try:
            with tarfile.open(fileobj=fileobj, mode="r|", encoding="utf-8",
                              errors="surrogateescape", bufsize=CHUNK) as tar:
                for member in tar:
                    self._member(tar, member)
            for dfd, mode, mtime in reversed(self._dir_times):
                os.fchmod(dfd, mode)
                os.utime(dfd, (mtime, mtime))
        except (tarfile.TarError, EOFError) as exc:
            self._undo()
            raise TransferError("the stream broke after %d files (%d bytes): %s"
                                % (self.files, self.bytes, exc)) from None
        except BaseException:
            self._undo()
            raise
        finally:
            for dfd, _, _ in self._dir_times:
                os.close(dfd)
            for fd, _ in self._made:
                os.close(fd)
            os.close(self.root_fd)
        return self.files, self.bytes

    def _undo(self):
        for parent_fd, name in reversed(self._made):
            try:
                os.rmdir(name, dir_fd=parent_fd)
            except OSError:
                pass

    def _parts(self, name):
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if name.startswith("/") or ".." in parts or not parts:
            raise TransferError("refused the stream: member %r is absolute or leaves the "
                                "destination" % name)
        if self.rename:
            parts[0] = self.rename
        return parts

    def _dir(self, parts, create):
        """An fd of the directory ``parts`` below the root, no symlink followed on the way."""
        fd = os.dup(self.root_fd)
        for part in parts:
            try:
                try:
                    nfd = self._open_dir(fd, part)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o700, dir_fd=fd)
                    self._made.append((os.dup(fd), part))
                    nfd = self._open_dir(fd, part)
            finally:
                os.close(fd)
            fd = nfd
        return fd

    @staticmethod
    def _open_dir(parent, name):
        try:
            return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        except (NotADirectoryError, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise TransferError("refused to write through %s: it is not a directory (a symlink is "
                                "never followed)" % name) from None

    def _member(self, tar, m):
        parts = self._parts(m.name)
        parent = self._dir(parts[:-1], create=True)
        name = parts[-1]
        try:
            if m.isdir():
                try:
                    os.mkdir(name, 0o700, dir_fd=parent)
                    self._made.append((os.dup(parent), name))
                except FileExistsError:
                    pass
                dfd = self._open_dir(parent, name)
                # Mode and time are set last: a read-only directory must still take its files.
                self._dir_times.append((dfd, m.mode & 0o7777, m.mtime))
            elif m.issym():
                tmp = TMP_PREFIX + os.urandom(4).hex()
                os.symlink(m.linkname, tmp, dir_fd=parent)
                os.utime(tmp, (m.mtime, m.mtime), dir_fd=parent, follow_symlinks=False)
                os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
            elif m.isreg():
                self._file(tar, m, parent, name, "/".join(parts))
        finally:
            os.close(parent)

    def _file(self, tar, m, parent, name, shown):
        def fill(fd):
            import hashlib
            h = hashlib.sha256() if (self.verify or self.manifest is not None) else None
            src = tar.extractfile(m)
            left = m.size
            with os.fdopen(os.dup(fd), "wb", buffering=0) as out:
                while left:
                    block = src.read(min(CHUNK, left))
                    if not block:
                        raise TransferError("the stream ended inside %s" % m.name)
                    out.write(block)
                    if h is not None:
                        h.update(block)
                    left -= len(block)
            want = m.pax_headers.get(PAX_SHA)
            if self.verify and want and want != h.hexdigest():
                raise TransferError("%s: sha256 differs after the transfer (%s, expected %s)"
                                    % (m.name, h.hexdigest(), want))
            return h
        h = write_beside(parent, name, fill, m.mode & 0o7777, m.mtime)
        self.files += 1
        self.bytes += m.size
        if self.manifest is not None:
            # Relative to what was copied, so `sha256sum -c` runs in the source or the copy.
            rel = shown.split("/", 1)[1] if "/" in shown else shown
            self.manifest.write(manifest_line(h.hexdigest(), rel))


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


def receive_file(dest, name, mode, mtime, want_sha):
    """One regular file from fd 0 (the client's own file, passed to us) to ``dest``: into it when it
    is a directory, else as it; written beside it and renamed when complete. Returns (path, digest)."""
    if os.path.isdir(dest):
        parent, final = dest, name
    else:
        parent, final = os.path.dirname(os.path.abspath(dest)), os.path.basename(dest)
    if not final or final in (".", "..") or "/" in final:
        raise TransferError("refused the file name %r" % name)
    def fill(fd):
        copy_fd(0, fd)
        digest = sha256_fd(fd) if want_sha else ""
        if digest != want_sha:
            raise TransferError("%s: sha256 differs after the transfer (%s, expected %s)"
                                % (final, digest, want_sha))
        return digest
    dfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return os.path.join(parent, final), write_beside(dfd, final, fill, mode, mtime)
    finally:
        os.close(dfd)


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
