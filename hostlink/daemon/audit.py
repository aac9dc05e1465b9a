"""The audit trail: one JSON line per request, accepted, refused or failed, never the token.

The file is opened 0600 in append mode and reopened on SIGHUP (logrotate's create/move). If it
cannot be opened at start, hostlinkd refuses to start; if a write fails later, the failure is
logged and counted and requests are still served (references/security.md says why).
"""

import json
import logging
import os
import re
import time

log = logging.getLogger("hostlinkd")
_CONTAINER_ID = re.compile(rb"([0-9a-f]{64})")


def peer_container(pid):
    """The container id in the peer's cgroup path, or "" when it runs outside one."""
    if not pid:
        return ""
    # Read on every connection: raw bytes, three syscalls (open() would add fstat, ioctl, lseek).
    try:
        fd = os.open("/proc/%d/cgroup" % pid, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        data = os.read(fd, 65536)
    except OSError:
        data = b""
    finally:
        os.close(fd)
    m = _CONTAINER_ID.search(data)
    return m.group(1).decode() if m else ""


class AuditLog:
    """Appends JSON lines to a file; a no-op when no path is configured."""

    def __init__(self, path):
        self.path = path
        self.failures = 0
        self._fd = -1
        if path:
            self.reopen()

    def reopen(self):
        """(Re)open the file; OSError if it cannot be."""
        if not self.path:
            return
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        old, self._fd = self._fd, fd
        if old >= 0:
            os.close(old)

    def write(self, **record):
        """Append one record with the current time."""
        if self._fd < 0:
            return
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            os.write(self._fd, line.encode("utf-8", "surrogateescape"))
        except OSError as exc:
            self.failures += 1
            log.error("audit log %s cannot be written: %s", self.path, exc.strerror)

    def close(self):
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
