"""Moving files for ``cp``, ``put`` and ``get``: a tar stream through a pipe, or one file's descriptor.

Over a Unix socket one end of a local pipe is passed to the host-side helper
(daemon/transfer_helper.py), so the bytes move at pipe speed; over TCP the same pipe is relayed.
Packing or unpacking runs in a thread beside the request. Nothing here prints: a get returns
what it received, and the caller tells it.
"""

import os
import threading

from ..wire import plain, tarstream, untar
from ..wire.plain import words
from .capture import write_all
from .errors import TransferFailed


def split_remote(spec, target_names):
    """(target or None, path) for ``host:PATH`` or ``NAME:PATH``; (None, None) for a local path."""
    head, sep, path = spec.partition(":")
    if sep and "/" not in head and head and (head == "host" or head in target_names):
        return head, path
    return None, None


def _pump_thread(fn):
    """Run ``fn`` in a thread; (the thread, a dict that gets its "result" or "error")."""
    box = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as exc:  # reported by the caller, after the request ended
            box["error"] = exc
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def put(session, req_factory, local, remote, excludes, verify, fds_mode, extra=(), meter=None):
    """Send ``local`` (file or directory) to ``remote`` on the host (``meter``: progress.wanted's)."""
    if not os.path.lexists(local):
        raise TransferFailed("%s does not exist here" % local)
    if fds_mode and os.path.isfile(local) and not os.path.islink(local):
        return _put_file(session, req_factory, local, remote, verify, extra, meter)
    total = tarstream.total_size(local, excludes)
    args = ((remote, "--size", str(total)) + (("--verify",) if verify else ()) + tuple(extra))
    req = req_factory("receive", args)
    r, w = os.pipe()
    out = Counted(os.fdopen(w, "wb"))
    t, box = _pump_thread(lambda: (tarstream.pack(local, out, excludes, verify), out.close()))
    held = Held(meter is not None)
    try:
        with watch(meter, total, lambda: out.count):
            if fds_mode:
                result = session.exec(req, stdio=(r, 1, held.w))
            else:
                result = session.exec(req, stdin_fd=r, out=held.sink)
    finally:
        os.close(r)
        t.join()
        held.release()
    if "error" in box and not isinstance(box["error"], BrokenPipeError):
        raise TransferFailed("reading %s: %s" % (local, words(box["error"], " here")))
    return result


def _put_file(session, req_factory, local, remote, verify, extra, meter):
    """One regular file over the socket: its own descriptor goes to the host-side helper, which
    copies it in the kernel (copy_file_range or sendfile): no tar, no pipe, no copy through us."""
    fd = os.open(local, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        args = (remote, "--size", str(st.st_size), "--file", os.path.basename(local.rstrip("/")),
                "--file-mode", "%o" % (st.st_mode & 0o7777), "--mtime", str(int(st.st_mtime)))
        if verify:
            args += ("--verify", "--sha256", tarstream.sha256_fd(fd))
        held = Held(meter is not None)
        try:
            # The host copies from our descriptor: its offset, which we share, is the progress.
            with watch(meter, st.st_size, lambda: os.lseek(fd, 0, os.SEEK_CUR)):
                return session.exec(req_factory("receive", args + tuple(extra)),
                                    stdio=(fd, 1, held.w))
        finally:
            held.release()
    finally:
        os.close(fd)


def remote_stat(new_session, req_factory, remote, verify, excludes=()):
    """(kind, mode, mtime, size, sha256 or "-") of ``remote`` on the host; kind is file or other,
    and the size of other is the bytes of the regular files a transfer of it would write."""
    args = (remote,) + tuple(a for g in excludes for a in ("--exclude", g)) + (("--verify",) if verify else ())
    with new_session() as session:
        r = session.exec(req_factory("stat", args, "relay"), capture=True)
    if r.returncode:
        why = r.stderr.decode("utf-8", "replace").strip()
        exc = TransferFailed(why[len("hostlink: "):] if why.startswith("hostlink: ") else
                             why or "cannot read %s on the host" % remote)
        exc.path, exc.reason = remote, _strerror(why)  # hostlink-cli says it in its words
        raise exc
    kind, mode, mtime, size, digest = r.stdout.decode().split()
    return kind, int(mode, 8), int(mtime), int(size), digest


def _strerror(why):
    """The reason in a helper's message, in strerror's words (hostlink-cli says it so)."""
    return plain.strerror_of(why) or "unreadable"


def check_space(local, need):
    """TransferFailed when ``need`` bytes do not fit where ``local`` would be written."""
    free, where = tarstream.free_bytes(local)
    if need > free:
        raise TransferFailed("insufficient disk space: %d bytes do not fit in %s here (%d free); "
                             "nothing was fetched" % (need, where, free))


def get_file(session, req_factory, remote, local, info, verify, meter=None):
    """One regular file over the socket: our temporary file beside the destination is passed to the
    helper, which copies into it in the kernel; renamed into place when complete.
    Returns (result, files, bytes, its manifest line or b"")."""
    _, mode, mtime, size, digest = info
    target = os.path.join(local, os.path.basename(remote.rstrip("/"))) if os.path.isdir(local) else local

    def fill(fd):
        with watch(meter, size, lambda: os.lseek(fd, 0, os.SEEK_CUR)):
            result = session.exec(req_factory("send", (remote, "--raw")), stdio=(0, fd, 2))
        if result.returncode != 0:
            raise _HostFailed(result)  # the temporary file goes; the host said why
        if verify and tarstream.sha256_fd(fd) != digest:
            raise TransferFailed("%s: sha256 differs after the transfer" % target)
        return result
    dfd = os.open(os.path.dirname(os.path.abspath(target)), os.O_RDONLY | os.O_DIRECTORY)
    try:
        result = tarstream.write_beside(dfd, os.path.basename(target), fill, mode, mtime)
    except _HostFailed as failed:
        return failed.result, 0, 0, b""
    finally:
        os.close(dfd)
    line = tarstream.manifest_line(digest, os.path.basename(target)) if verify else b""
    return result, 1, size, line


class _HostFailed(Exception):
    """The host-side helper failed: ``result`` says how."""

    def __init__(self, result):
        super().__init__("the host-side transfer failed")
        self.result = result


def get(session, req_factory, remote, local, excludes, verify, fds_mode, manifest=None,
        meter=None, total=0):
    """Fetch ``remote`` (``total`` bytes, 0: unknown) from the host into ``local`` (the sha256
    lines go to ``manifest``); (result, files, bytes)."""
    args = (remote,) + tuple(a for g in excludes for a in ("--exclude", g)) + (("--verify",) if verify else ())
    req = req_factory("send", args)
    r, w = os.pipe()
    try:
        unpacker = untar.Unpacker(local, verify, manifest)
    except (tarstream.TransferError, OSError) as exc:
        os.close(r)
        os.close(w)
        raise TransferFailed("cannot write %s: %s" % (local, words(exc, " here")))
    src = Counted(os.fdopen(r, "rb"))
    sink = os.fdopen(w, "wb")
    t, box = _pump_thread(lambda: unpacker.run(src))
    def out(fd, data):  # relayed: the stream goes into our pipe, messages to our stderr
        (sink.write(data) if fd == 1 else os.write(2, data))
    try:
        with watch(meter, total, lambda: src.count):
            result = (session.exec(req, stdio=(0, w, 2)) if fds_mode else
                      session.exec(req, out=out))
    finally:
        sink.close()  # the unpacker sees the end of the stream, whatever happened
        t.join()
        src.close()
    if "error" in box:
        raise TransferFailed("writing %s: %s" % (local, words(box["error"], " here")))
    if result.returncode == 0:
        files, size = box["result"]
        return result, files, size
    return result, 0, 0


class Counted:
    """A binary file object that counts the bytes read from or written to it (for progress)."""

    def __init__(self, raw):
        self.raw = raw
        self.count = 0

    def read(self, n=-1):
        data = self.raw.read(n)
        self.count += len(data)
        return data

    def write(self, data):
        n = self.raw.write(data)
        self.count += len(data)
        return n

    def __getattr__(self, name):
        return getattr(self.raw, name)


class Held:
    """The host side's stderr (its summary, or why it failed) held back while a progress line
    shows, and told after it: a pipe in fds mode (a line or two: it fits), chunks when relayed."""

    def __init__(self, hold):
        self.r, self.w = os.pipe() if hold else (-1, 2)
        self.chunks = []

    def sink(self, fd, data):
        if fd == 2 and self.r >= 0:
            self.chunks.append(bytes(data))
        else:
            write_all(fd, data)

    def release(self):
        if self.r < 0:
            return
        os.close(self.w)  # the host side has exited: the pipe ends once ours is closed
        while True:
            data = os.read(self.r, 1 << 16)
            if not data:
                break
            self.chunks.append(data)
        os.close(self.r)
        self.r = -1
        write_all(2, b"".join(self.chunks))


class _Silent:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def watch(meter, total, count):
    """``meter(total, count)`` (a progress.Meter), or a context that shows nothing."""
    return meter(total, count) if meter else _Silent()
