"""Moving files for ``cp``, ``put`` and ``get``: a tar stream through a pipe, or one file's descriptor.

Over a Unix socket one end of a local pipe is passed to the host-side helper
(daemon/transfer_helper.py), so the bytes move at pipe speed; over TCP the same pipe is relayed.
Packing or unpacking runs in a thread beside the request. Nothing here prints: a get returns
what it received, and the caller tells it.
"""

import os
import threading

from ..wire import tarstream, untar
from .errors import HostlinkError, RemoteFailed, UsageError


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


def put(session, req_factory, local, remote, excludes, verify, fds_mode, extra=()):
    """Send ``local`` (file or directory) to ``remote`` on the host."""
    if not os.path.lexists(local):
        raise UsageError("%s does not exist here" % local)
    if fds_mode and os.path.isfile(local) and not os.path.islink(local):
        return _put_file(session, req_factory, local, remote, verify, extra)
    args = ((remote, "--size", str(tarstream.total_size(local, excludes))) + (("--verify",) if verify else ())
            + tuple(extra))
    req = req_factory("receive", args)
    r, w = os.pipe()
    out = os.fdopen(w, "wb")
    t, box = _pump_thread(lambda: (tarstream.pack(local, out, excludes, verify), out.close()))
    try:
        if fds_mode:
            result = session.exec(req, stdio=(r, 1, 2))
        else:
            result = session.exec(req, stdin_fd=r)
    finally:
        os.close(r)
        t.join()
    if "error" in box and not isinstance(box["error"], BrokenPipeError):
        raise HostlinkError("reading %s: %s" % (local, box["error"]))
    return result


def _put_file(session, req_factory, local, remote, verify, extra):
    """One regular file over the socket: its own descriptor goes to the host-side helper, which
    copies it in the kernel (copy_file_range or sendfile): no tar, no pipe, no copy through us."""
    fd = os.open(local, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        args = (remote, "--size", str(st.st_size), "--file", os.path.basename(local.rstrip("/")),
                "--file-mode", "%o" % (st.st_mode & 0o7777), "--mtime", str(int(st.st_mtime)))
        if verify:
            args += ("--verify", "--sha256", tarstream.sha256_fd(fd))
        return session.exec(req_factory("receive", args + tuple(extra)), stdio=(fd, 1, 2))
    finally:
        os.close(fd)


def remote_stat(new_session, req_factory, remote, verify, excludes=()):
    """(kind, mode, mtime, size, sha256 or "-") of ``remote`` on the host; kind is file or other,
    and the size of other is the bytes of the regular files a transfer of it would write."""
    args = (remote,) + tuple(a for g in excludes for a in ("--exclude", g)) + (("--verify",) if verify else ())
    with new_session() as session:
        r = session.exec(req_factory("stat", args, "relay"), capture=True)
    if r.returncode:
        why = r.stderr.decode("utf-8", "replace").strip().replace("hostlink transfer: ", "")
        raise RemoteFailed(why or "cannot read %s on the host" % remote)
    kind, mode, mtime, size, digest = r.stdout.decode().split()
    return kind, int(mode, 8), int(mtime), int(size), digest


def check_space(local, need):
    """UsageError when ``need`` bytes do not fit where ``local`` would be written."""
    free, where = tarstream.free_bytes(local)
    if need > free:
        raise UsageError("%d bytes do not fit in %s (%d free); nothing was fetched" % (need, where, free))


def get_file(session, req_factory, remote, local, info, verify):
    """One regular file over the socket: our temporary file beside the destination is passed to the
    helper, which copies into it in the kernel; renamed into place when complete.
    Returns (result, files, bytes, its manifest line or b"")."""
    _, mode, mtime, size, digest = info
    target = os.path.join(local, os.path.basename(remote.rstrip("/"))) if os.path.isdir(local) else local

    def fill(fd):
        result = session.exec(req_factory("send", (remote, "--raw")), stdio=(0, fd, 2))
        if result.returncode != 0:
            raise _HostFailed(result)  # the temporary file goes; the host said why
        if verify and tarstream.sha256_fd(fd) != digest:
            raise HostlinkError("%s: sha256 differs after the transfer" % target)
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


def get(session, req_factory, remote, local, excludes, verify, fds_mode, manifest=None):
    """Fetch ``remote`` from the host into ``local`` (the sha256 lines go to ``manifest``);
    (result, files, bytes)."""
    args = (remote,) + tuple(a for g in excludes for a in ("--exclude", g)) + (("--verify",) if verify else ())
    req = req_factory("send", args)
    r, w = os.pipe()
    try:
        unpacker = untar.Unpacker(local, verify, manifest)
    except (tarstream.TransferError, OSError) as exc:
        os.close(r)
        os.close(w)
        raise UsageError("cannot write %s: %s" % (local, exc))
    src = os.fdopen(r, "rb")
    sink = os.fdopen(w, "wb")
    t, box = _pump_thread(lambda: unpacker.run(src))
    try:
        if fds_mode:
            result = session.exec(req, stdio=(0, w, 2))
        else:
            def out(fd, data):
                (sink.write(data) if fd == 1 else os.write(2, data))
            result = session.exec(req, out=out)
    finally:
        sink.close()  # the unpacker sees the end of the stream, whatever happened
        t.join()
        src.close()
    if "error" in box:
        raise HostlinkError("writing %s: %s" % (local, box["error"]))
    if result.returncode == 0:
        files, size = box["result"]
        return result, files, size
    return result, 0, 0
