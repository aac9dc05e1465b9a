"""The audit trail: one JSON line per request, accepted, refused or failed, never the token.

The file is opened 0600 in append mode and reopened on SIGHUP (logrotate's create/move). If it
cannot be opened at start, hostlinkd refuses to start; if a write fails later, the failure is
logged and counted and, with audit_failure = closed (the default), new commands are refused
until a record can be written again.
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


# Characters a reader may take as a line break: JSON leaves them raw with ensure_ascii=False.
_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}
# A text field from a client is kept up to this many characters (its length is recorded).
MAX_FIELD = 4096
# Unauthenticated events recorded per peer per window; the rest are counted, not written.
UNAUTH_PER_WINDOW, UNAUTH_WINDOW_S = 100, 10.0


def bounded(value, limit=MAX_FIELD):
    """``value`` with every string in it cut to ``limit`` characters, noting the original length."""
    if isinstance(value, str):
        return value if len(value) <= limit else "%s...[%d chars]" % (value[:limit], len(value))
    if isinstance(value, (list, tuple)):
        items = [bounded(v, limit) for v in value[:256]]
        return items + ["...[%d items]" % len(value)] if len(value) > 256 else items
    if isinstance(value, dict):
        return {bounded(k, 256): bounded(v, limit) for k, v in list(value.items())[:256]}
    return value


class AuditLog:
    """Appends JSON lines to a file; a no-op when no path is configured. ``broken`` holds the
    error of the last write that failed, until one succeeds (audit_failure = closed refuses new
    commands meanwhile)."""

    def __init__(self, path):
        self.path = path
        self.failures = 0
        self.suppressed = 0
        self.broken = ""
        self._fd = -1
        self._unauth = {}  # peer key -> (window start, events in it)
        self._swept = time.monotonic()
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

    def unauthenticated(self, key):
        """Whether an unauthenticated event of peer ``key`` may be written (per-peer rate)."""
        now = time.monotonic()
        self._sweep(now)
        since, count = self._unauth.get(key, (now, 0))
        self._unauth[key] = (since, count + 1)
        if count < UNAUTH_PER_WINDOW:
            return True
        self.suppressed += 1
        return False

    def _sweep(self, now):
        """Once a window: the summary of each peer whose window ended with events not written,
        then forget it (else a flood that stopped would never be summed up)."""
        if now - self._swept < UNAUTH_WINDOW_S and len(self._unauth) <= 4096:
            return
        self._swept = now
        crowded = len(self._unauth) > 4096  # then all go: the table stays bounded
        due = []
        for key, (since, count) in list(self._unauth.items()):
            if crowded or now - since > UNAUTH_WINDOW_S:
                del self._unauth[key]
                if count > UNAUTH_PER_WINDOW:
                    due.append((key, count - UNAUTH_PER_WINDOW))
        for key, count in due:
            self.write(event="audit", result="suppressed", peer=key, count=count,
                       window_s=UNAUTH_WINDOW_S)

    def write(self, **record):
        """Append one record with the current time: one write of one whole line, or nothing
        (a short write is cut back off the file); whether it was written."""
        if self._fd < 0:
            return True  # no audit log configured
        if self._unauth:
            self._sweep(time.monotonic())  # a summary due goes before this record
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **bounded(record)}
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        text = text.translate(_BREAKS) + "\n"
        try:
            line = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate from JSON (HLNK): written as its escape
            line = text.encode("utf-8", "backslashreplace")
        try:
            end = os.lseek(self._fd, 0, os.SEEK_END)
            n = os.write(self._fd, line)
            if n != len(line):
                os.ftruncate(self._fd, end)
                raise OSError(28, "short write: %d of %d bytes" % (n, len(line)))
            self.broken = ""
            return True
        except OSError as exc:
            self.failures += 1
            self.broken = exc.strerror or str(exc)
            log.error("audit log %s cannot be written: %s", self.path, self.broken)
            return False

    def close(self):
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
