"""The one owner of hostlinkd's limited resources (ServerState.limits).

Connection slots (unauthenticated ones per peer and in total), running commands, detached jobs
and pending approvals are counted here and nowhere else. Each is taken as a ticket whose
release() is idempotent and runs on every path: the listener releases a connection's slot from
its task's done callback (which runs even when the task was cancelled before it started), and
a connection that is going away (its linger) holds none. Past a limit the taker gets Busy.
"""

from .errors import Busy

# A connection's states; "closing" holds no slot (its descriptor is bounded apart: see linger_ok).
UNAUTH, AUTHED, CLOSING = "unauthenticated", "authenticated", "closing"
# Connections accepted ahead of their sessions running; the rest wait in the listen backlog.
ACCEPT_AHEAD = 16


class Conn:
    """One connection's slot: unauthenticated until its token matched, then authenticated."""

    __slots__ = ("limits", "peer", "state", "evict", "waiting")

    def __init__(self, limits, peer, evict):
        self.limits = limits
        self.peer = peer  # its limit key: uid or container on a Unix socket, address on TCP
        self.state = UNAUTH
        self.evict = evict  # called when the slot is taken back: ends the connection
        self.waiting = True  # accepted, its session not yet run
        limits.unstarted += 1

    def started(self):
        if self.waiting:
            self.waiting = False
            self.limits.unstarted -= 1

    def authenticated(self):
        if self.state == UNAUTH:
            self.limits._leave(self)
            self.state = AUTHED
            self.limits.authed += 1

    def closing(self):
        """The connection only says goodbye now: its slot goes to the next one."""
        if self.state in (UNAUTH, AUTHED):
            self.limits._leave(self)
            self.state = CLOSING
            self.limits.closing += 1

    def release(self):
        self.started()
        if self.state == CLOSING:
            self.limits.closing -= 1
        else:
            self.limits._leave(self)
        self.state = None


class Ticket:
    """A counted unit (a running command, a job, a pending approval) of ``owner``'s."""

    __slots__ = ("counts", "owner", "size", "on_release")

    def __init__(self, counts, owner, size=1, on_release=None):
        self.counts, self.owner, self.size = counts, owner, size
        self.on_release = on_release  # told once the unit is free again (slots.py hands it on)
        for key in ("", owner):
            counts[key] = counts.get(key, 0) + size

    def release(self):
        if self.counts is not None:
            for key in ("", self.owner):
                self.counts[key] -= self.size
                if not self.counts[key] and key:
                    del self.counts[key]
            self.counts = None
            if self.on_release is not None:
                self.on_release()


class Limits:
    """Counts and caps; ``cfg()`` is the configuration as it is now (a reload applies at once)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.unauth = {}  # Conn -> None, oldest first
        self.per_peer = {}  # limit key -> [Conn, ...], oldest first
        self.authed = 0
        self.closing = 0
        self.unstarted = 0  # accepted connections whose session has not run yet
        self.evicted = 0
        self.refused = 0  # connections told busy at once (max_connections)
        self.commands = {}  # "" (all) or client name -> running commands
        self.jobs = {}
        self.spool = {}  # reserved spool bytes of running jobs
        self.approvals = {}
        self.hlnk_buffer = {}  # bytes of large HLNK frames being read or handled

    # ---- connections ---------------------------------------------------------------------------

    @property
    def connections(self):
        return len(self.unauth) + self.authed

    def admit(self, peer, evict):
        """A slot for a new connection from ``peer``: the oldest unauthenticated connection of
        the peer (at its cap), or of anyone (at the total cap), makes room. Busy when every slot
        is held by an authenticated connection."""
        cfg = self.cfg()
        mine = self.per_peer.get(peer, ())
        if len(mine) >= cfg.max_unauthenticated_per_peer:
            self._evict(mine[0])
        if len(self.unauth) >= cfg.max_unauthenticated:
            self._evict(next(iter(self.unauth)))
        if self.connections >= cfg.max_connections:
            if not self.unauth:
                raise Busy("server busy: %d connections open (max_connections = %d): try again "
                           "later" % (self.connections, cfg.max_connections))
            self._evict(next(iter(self.unauth)))
        conn = Conn(self, peer, evict)
        self.unauth[conn] = None
        self.per_peer.setdefault(peer, []).append(conn)
        return conn

    def accept_more(self):
        """Whether to accept more now: a burst is taken in rounds, each served before the next,
        so that eviction (oldest first) only meets connections that had their chance."""
        return self.unstarted < ACCEPT_AHEAD

    def linger_ok(self):
        """Whether a closing connection may linger (bounded: each holds a descriptor)."""
        return self.closing < self.cfg().max_connections

    def _evict(self, conn):
        self.evicted += 1
        conn.closing()
        conn.evict()

    def _leave(self, conn):
        if conn.state == UNAUTH:
            self.unauth.pop(conn, None)
            mine = self.per_peer.get(conn.peer)
            if mine is not None:
                mine.remove(conn)
                if not mine:
                    del self.per_peer[conn.peer]
        elif conn.state == AUTHED:
            self.authed -= 1

    # ---- commands, jobs, approvals -------------------------------------------------------------

    def commands_busy(self):
        """Busy's message when max_concurrent commands run, else ""."""
        cfg = self.cfg()
        running = self.commands.get("", 0)
        if running < cfg.max_concurrent:
            return ""
        return "server busy: %d commands running (max_concurrent = %d): try again later" % (
            running, cfg.max_concurrent)

    def command(self, client, on_release=None):
        """A running command's ticket; Busy past max_concurrent (slots.py waits in front of it)."""
        busy = self.commands_busy()
        if busy:
            raise Busy(busy)
        return Ticket(self.commands, client, on_release=on_release)

    def job(self, client, spool_bytes):
        """A running job's tickets (count, reserved spool bytes); Busy past the job quotas."""
        cfg = self.cfg()
        if self.jobs.get("", 0) >= cfg.max_jobs:
            raise Busy("server busy: %d jobs running (max_jobs = %d): wait for one to end"
                       % (self.jobs[""], cfg.max_jobs))
        if self.jobs.get(client, 0) >= cfg.max_jobs_per_client:
            raise Busy("client %s has %d jobs running (max_jobs_per_client = %d): wait for one "
                       "or cancel it" % (client, self.jobs[client], cfg.max_jobs_per_client))
        if self.spool.get("", 0) + spool_bytes > cfg.job_spool_total_bytes:
            raise Busy("server busy: running jobs may already spool %d bytes "
                       "(job_spool_total_bytes = %d): wait for one to end"
                       % (self.spool.get("", 0), cfg.job_spool_total_bytes))
        return self.job_running(client, spool_bytes)

    def job_running(self, client, spool_bytes):
        """The tickets of a job that already runs (a previous daemon started it): counted
        whatever the quotas say now, so that new jobs are measured against it."""
        return Ticket(self.jobs, client), Ticket(self.spool, client, spool_bytes)

    def approval(self, client):
        cfg = self.cfg()
        if self.approvals.get(client, 0) >= cfg.max_pending_approvals:
            raise Busy("client %s has %d requests waiting for approval "
                       "(max_pending_approvals = %d): wait for a person to answer them"
                       % (client, self.approvals[client], cfg.max_pending_approvals))
        return Ticket(self.approvals, client)

    def hlnk_frame(self, client, size):
        """The ticket of an HLNK frame over 1 MiB, for its bytes; Busy past hlnk_buffer_bytes."""
        held, cap = self.hlnk_buffer.get("", 0), self.cfg().hlnk_buffer_bytes
        if held + size > cap:
            raise Busy("server busy: %d bytes of large HLNK requests held, one of %d more is over "
                       "hlnk_buffer_bytes = %d: try again later" % (held, size, cap))
        return Ticket(self.hlnk_buffer, client, size)

    def status(self):
        """What is held, for the admin socket's status."""
        return {"connections": {"unauthenticated": len(self.unauth), "authenticated": self.authed,
                                "closing": self.closing, "evicted_total": self.evicted,
                                "refused_total": self.refused},
                "commands": self.commands.get("", 0), "jobs": self.jobs.get("", 0),
                "job_spool_reserved_bytes": self.spool.get("", 0),
                "approvals": self.approvals.get("", 0),
                "hlnk_buffer_bytes": self.hlnk_buffer.get("", 0)}
