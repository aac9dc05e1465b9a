"""Unpacking a tar stream all-or-nothing, beneath a held directory descriptor.

Every member is written into a private staging directory (``.hostlink-partial-*``, 0700) beside
the destination; only when the whole stream has been read and found good is the staged tree moved
into place: whole subtrees by one rename each, and into a directory that already exists entry by
entry (a directory copied onto one merges with it, as ``cp -r`` and ``docker cp`` do). Before any
rename, a dry pass checks that every one will succeed (no directory replaced by a file, no symlink
written through), so a refused stream leaves nothing behind: not the members before the bad one,
not a partial file. Every path component is opened relative to the one above it with O_NOFOLLOW.
"""

import os
import stat

from .tarstream import CHUNK, PAX_SHA, TMP_PREFIX, TransferError, manifest_line, write_beside

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir(parent, name):
    """An fd of the directory ``name`` in ``parent``; a symlink is never followed."""
    try:
        return os.open(name, _DIR, dir_fd=parent)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise TransferError("refused to write through %s: it is not a directory (a symlink is "
                            "never followed)" % name) from None


class Unpacker:
    """Extracts a tar stream as docker cp does: into the destination when it is a directory, else
    as it. The destination is ``dest`` (a path), or ``at`` = (directory fd, name) held by the
    caller; ``modes`` masks every mode written (0o777 strips setuid, setgid and sticky)."""

    def __init__(self, dest, verify=False, manifest=None, at=None, modes=0o7777):
        self.verify = verify
        self.manifest = manifest
        self.modes = modes
        self.files = self.bytes = 0
        self._dir_times = []
        if at is None:
            dest = os.path.abspath(dest)
            parent, name = os.path.dirname(dest), os.path.basename(dest)
            try:
                at = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), name or "."
            except FileNotFoundError:
                raise TransferError("%s does not exist" % parent) from None
        else:
            at = os.dup(at[0]), at[1]
        try:
            self.root_fd, self.rename = os.open(at[1], _DIR, dir_fd=at[0]), None
            os.close(at[0])
        except OSError:  # not a directory (or a symlink, never followed): written as it
            self.root_fd, self.rename = at
        self.stage = TMP_PREFIX + os.urandom(4).hex()
        try:
            os.mkdir(self.stage, 0o700, dir_fd=self.root_fd)
            self.stage_fd = os.open(self.stage, _DIR, dir_fd=self.root_fd)
        except OSError:
            os.close(self.root_fd)
            raise

    def run(self, fileobj):
        """Read the whole stream, then move it into place; (files, bytes)."""
        import tarfile
        try:
            try:
                with tarfile.open(fileobj=fileobj, mode="r|", encoding="utf-8",
                                  errors="surrogateescape", bufsize=CHUNK) as tar:
                    for member in tar:
                        self._member(tar, member)
            except (tarfile.TarError, EOFError) as exc:
                raise TransferError("the stream broke after %d files (%d bytes): %s; nothing was "
                                    "written" % (self.files, self.bytes, exc)) from None
            names = os.listdir(self.stage_fd)
            for name in names:  # the dry pass: every rename below will succeed
                _merge(self.stage_fd, self.root_fd, name, dry=True)
            for name in names:
                _merge(self.stage_fd, self.root_fd, name, dry=False)
            _remove_tree(self.root_fd, self.stage)  # only the emptied directories of merges
            for dfd, mode, mtime in reversed(self._dir_times):
                os.fchmod(dfd, mode)  # last: a read-only directory must still take its files
                os.utime(dfd, (mtime, mtime))
        finally:
            for dfd, _, _ in self._dir_times:
                os.close(dfd)
            _remove_tree(self.root_fd, self.stage)
            os.close(self.stage_fd)
            os.close(self.root_fd)
        return self.files, self.bytes

    def _parts(self, name):
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if name.startswith("/") or ".." in parts or not parts:
            raise TransferError("refused the stream: member %r is absolute or leaves the "
                                "destination; nothing was written" % name)
        if self.rename:
            parts[0] = self.rename
        return parts

    def _dir(self, parts):
        """An fd of the staged directory ``parts``, made where missing."""
        fd = os.dup(self.stage_fd)
        for part in parts:
            try:
                try:
                    nfd = open_dir(fd, part)
                except FileNotFoundError:
                    os.mkdir(part, 0o700, dir_fd=fd)
                    nfd = open_dir(fd, part)
            finally:
                os.close(fd)
            fd = nfd
        return fd

    def _member(self, tar, m):
        parts = self._parts(m.name)
        parent = self._dir(parts[:-1])
        name = parts[-1]
        try:
            if m.isdir():
                try:
                    os.mkdir(name, 0o700, dir_fd=parent)
                except FileExistsError:
                    pass
                self._dir_times.append((open_dir(parent, name), m.mode & self.modes, m.mtime))
            elif m.issym():
                _unlink(parent, name)
                os.symlink(m.linkname, name, dir_fd=parent)
                os.utime(name, (m.mtime, m.mtime), dir_fd=parent, follow_symlinks=False)
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
                raise TransferError("%s: sha256 differs after the transfer (%s, expected %s); "
                                    "nothing was written" % (m.name, h.hexdigest(), want))
            return h
        h = write_beside(parent, name, fill, m.mode & self.modes, m.mtime)
        self.files += 1
        self.bytes += m.size
        if self.manifest is not None:
            # Relative to what was copied, so `sha256sum -c` runs in the source or the copy.
            rel = shown.split("/", 1)[1] if "/" in shown else shown
            self.manifest.write(manifest_line(h.hexdigest(), rel))


def _merge(src, dst, name, dry):
    """Move staged ``name`` from directory ``src`` into ``dst``; with ``dry`` only check it can."""
    staged = os.stat(name, dir_fd=src, follow_symlinks=False)
    try:
        there = os.stat(name, dir_fd=dst, follow_symlinks=False)
    except FileNotFoundError:
        if not dry:
            os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)
        return
    if stat.S_ISDIR(staged.st_mode) != stat.S_ISDIR(there.st_mode):
        if stat.S_ISDIR(there.st_mode):
            raise TransferError("refused to replace the directory %s with a file; nothing was "
                                "written" % name)
        raise TransferError("refused to write through %s: it is not a directory (a symlink is "
                            "never followed); nothing was written" % name)
    if not stat.S_ISDIR(staged.st_mode):
        if not dry:
            os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)
        return
    sfd, dfd = open_dir(src, name), open_dir(dst, name)
    try:
        for child in os.listdir(sfd):
            _merge(sfd, dfd, child, dry)
    finally:
        os.close(sfd)
        os.close(dfd)


def _unlink(parent, name):
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass


def _remove_tree(parent, name):
    """Remove ``name`` in ``parent`` and all below it (nothing followed); quiet when gone."""
    try:
        fd = os.open(name, _DIR, dir_fd=parent)
    except OSError:
        return
    try:
        for child in os.listdir(fd):
            try:
                os.unlink(child, dir_fd=fd)
            except IsADirectoryError:
                _remove_tree(fd, child)
            except OSError:
                pass
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=parent)
    except OSError:
        pass
