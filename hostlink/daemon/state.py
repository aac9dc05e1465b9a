"""What the parts of hostlinkd share while it runs (uvicorn's ServerState): never the listener itself.

The listener makes one ServerState and swaps ``cfg`` and ``audit`` on reload; everyone else reads
them here at the time of use, so a reload applies to the next request.
"""

import time

from . import spawn
from .approvals import Approvals
from .audit import AuditLog
from .auth import Penalties
from .jobs import JobSpool
from .limits import Limits
from .slots import Slots


class ServerState:
    """The current configuration and audit log, the loop and reaper, and the work in hand."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.audit = AuditLog(cfg.audit_log)
        self.loop = None  # set when the server runs
        self.reaper = spawn.Reaper()
        self.started = time.monotonic()
        self.tls_context = None  # set when a TCP listener offers TLS
        self.commands = set()  # running.Command: commands running on a connection
        self.limits = Limits(lambda: self.cfg)  # every counted resource: connections to approvals
        self.slots = Slots(self)  # the requests waiting for a running-command slot
        self.penalties = Penalties()
        self.jobs = JobSpool(self)
        self.approvals = Approvals(self)

    def audit_refusal(self, written=True):
        """Why a new command is refused while the audit log cannot be written, or "". After a
        failure, a record that marks the gap is tried first: once it is written, all goes on.
        ``written``: whether the request's own start record was written."""
        if self.cfg.audit_failure != "closed":
            return ""
        if written and self.audit.broken:
            failures = self.audit.failures
            self.audit.write(event="audit", result="resumed", failures_total=failures)
        if written and not self.audit.broken:
            return ""
        return ("hostlinkd refuses new commands: its audit log %s cannot be written (%s; "
                "audit_failure = closed); the operator must free it"
                % (self.cfg.audit_log, self.audit.broken or "no space"))

    @property
    def uptime_s(self):
        return int(time.monotonic() - self.started)
