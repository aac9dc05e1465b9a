"""Why a connection to a daemon failed, said with the fix (references/setup.md, troubleshooting)."""

import errno
import os


def connect_hint(ep, exc):
    """The message for ``exc`` raised connecting to ``ep``."""
    where = ep.where
    if not ep.socket:
        return "cannot connect to %s: %s" % (where, exc.strerror or exc or "timed out")
    if exc.errno == errno.ENOENT:
        return ("no socket at %s: %s; start it on the host with 'hostlinkd' or "
                "'hostlink-install host', or set HOSTLINK_SOCKET" % (where, _missing(where)))
    if exc.errno == errno.ECONNREFUSED:
        return ("%s refuses connections: hostlinkd is not running (stale socket); start it on the "
                "host with 'hostlinkd'" % where)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ("permission denied on %s: this user (uid %d) needs the socket's group; add it "
                "with group_add (compose), --group-add (docker run), or as the primary group in "
                "OpenClaw's sandbox.docker.user \"UID:GID\" (hostlink-install openclaw does it)"
                % (where, os.getuid()))
    return "cannot connect to %s: %s" % (where, exc.strerror or exc)


def _missing(path):
    folder = os.path.dirname(path)
    if os.path.isdir(folder) and os.listdir(folder) == []:
        return "the directory %s is there but empty: hostlinkd is not running on the host" % folder
    if os.path.isdir(folder):
        return "hostlinkd is not running, or listens elsewhere"
    return "%s is not mounted into this container (mount the socket's directory)" % folder
