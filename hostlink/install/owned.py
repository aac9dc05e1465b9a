"""Files the installer writes for a user (in their workspace, their ~/.openclaw): written by a
child process with that user's uid and groups, so the files are theirs, and a link they planted
cannot make root write somewhere else."""

import os
import pwd


class OwnedError(OSError):
    """Writing as the user failed; the message says what and as whom."""


def owner(path):
    """(uid, gid) of ``path``, or of the nearest directory above it that exists."""
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.stat(path)
    return st.st_uid, st.st_gid


def _drop_to(uid, gid):
    try:
        name = pwd.getpwuid(uid).pw_name
        groups = os.getgrouplist(name, gid)
    except KeyError:
        groups = [gid]
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)


def as_user(uid, gid, fn, *args):
    """Run ``fn(*args)`` as uid:gid (in a child unless we are that user already); what fails in
    the child is an OwnedError here."""
    if uid == os.geteuid():
        return fn(*args)
    read, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to the user, do the work, say what failed
        code = 1
        try:
            os.close(read)
            _drop_to(uid, gid)
            fn(*args)
            code = 0
        except BaseException as exc:  # everything must reach the parent, nothing may escape a fork
            os.write(write_end, str(exc).encode("utf-8", "replace")[:4000])
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read, "rb") as f:
        message = f.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise OwnedError("as uid %d: %s" % (uid, message or "failed (status %d)" % status))
    return None


def _write_all(changes):
    for ch in changes:
        os.makedirs(os.path.dirname(ch.path), exist_ok=True)
        tmp = ch.path + ".hostlink-tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, ch.mode)
        with os.fdopen(fd, "wb") as f:
            f.write(ch.content)
        os.chmod(tmp, ch.mode)
        os.replace(tmp, ch.path)


def write_as(uid, gid, changes):
    """Write each changed Change (host.Change) as uid:gid, atomically, with its mode from the
    start; directories are made as needed, theirs too."""
    as_user(uid, gid, _write_all, [c for c in changes if c.changed])


def _remove(paths):
    for path in paths:
        if os.path.lexists(path) and not os.path.isdir(path):
            os.unlink(path)
        elif os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)


def remove_as(uid, gid, paths):
    """Remove files, and directories left empty, as uid:gid (in the order given)."""
    as_user(uid, gid, _remove, list(paths))
