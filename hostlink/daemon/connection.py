"""One connection to hostlinkd, as sshd-session serves one for sshd (server.py is the listener).

The first bytes tell HLK2, TLS (then HLK2) and the first hostlink's HLNK (hlnk.py) apart. An HLK2
connection authenticates under the auth deadline, then makes one request, which REQUESTS hands to
its handler by event type. Nothing is spawned before the token matched. The connection owns its
audit line: its steps add what they learn, and it is written once, when the request is done.
"""

import asyncio
import json
import logging
import socket

from ..wire import hlnk as hlnk_wire, protocol as p
from . import execute, hlnk, running, spawn
from .auth import client_for
from .channel import Channel, TooManyFds, close_all, next_event, within
from .errors import Denied, Refused

log = logging.getLogger("hostlinkd")


class Session:
    """One accepted socket: who is there, its token, its one request, and the audit line of it all."""

    def __init__(self, state, sock, peer, slot=None):
        self.state = state
        self.sock = sock
        self.peer = peer
        self.slot = slot  # its limits.Conn: authenticated once the token matched
        self.fds = []  # descriptors the client passed: closed at the end unless a command took them
        self.chan = self.conn = None
        self.hlnk = False
        self.task = None  # set by the listener: cancelled on eviction
        self.record = {}

    def authenticated(self):
        self.slot.authenticated()

    def evict(self):
        """The limits took this unauthenticated connection's slot back: say so, if what was
        said so far lets a frame follow (no TLS, no HLNK), then end it."""
        if not self.hlnk and (self.chan is None or self.chan.sock is self.sock):
            _say_now(self.sock, p.encode(p.Error(
                "busy", "server busy: too many connections still authenticating "
                        "(max_unauthenticated); this one waited longest: try again")))
        self.task.cancel()

    async def serve(self):
        """Serve the connection to its end, then write its audit line."""
        self.slot.started()
        try:
            self.chan = Channel(self.sock, can_pass_fds=self.sock.family == socket.AF_UNIX)
            self.conn = p.Connection(p.SERVER)
            await self._converse()
        except (p.RemoteProtocolError, TooManyFds) as exc:
            await self._failed("bad_request", str(exc))
        except p.LocalProtocolError as exc:
            log.error("bug: hostlinkd broke its own protocol: %s", exc)
            await self._failed("internal", "hostlinkd broke its own protocol: %s" % exc)
        except asyncio.TimeoutError:
            self.record.update(event="request", result="timeout", error="no request after the token")
        except asyncio.CancelledError:
            if self.slot.state is not None and self.slot.state != "closing":
                raise  # the daemon stops
            self.record.setdefault("event", "auth")
            self.record.setdefault("result", "evicted")  # never authenticated; the cap made room
        except (ConnectionError, OSError) as exc:
            self.record.setdefault("event", "request")
            self.record.setdefault("result", "disconnected")
            log.debug("connection error: %s", exc)
        finally:
            await self._close()

    async def _converse(self):
        deadline = self.state.cfg.auth_timeout_ms / 1000
        try:
            event = await within(self._open(), deadline)
        except asyncio.TimeoutError:
            self.record = {"event": "auth", "result": "auth_timeout"}
            if not self.chan.handshaking:  # mid-handshake, a send waits for the peer: forever
                await _answer(self.chan, self.conn, p.Error(
                    "auth_timeout", "no token within %d ms" % self.state.cfg.auth_timeout_ms))
            return
        if event is None:
            return
        if event is hlnk.HLNK:
            self.hlnk = True
            await hlnk.serve(self.state, self.chan, self.peer, self.fds, deadline,
                             self.authenticated, self.record)
            return
        client = await self._authenticate(event)
        if client is None:
            return
        event = await within(next_event(self.chan, self.conn, self.fds), deadline)
        if event is not None:
            await self._request(client, event)

    async def _open(self):
        """Tell the protocol from the first bytes (HLK2, the first hostlink's HLNK, or TLS), do the
        TLS handshake where there is one, and return the first event (or hlnk.HLNK)."""
        chan, cfg = self.chan, self.state.cfg
        head = await chan.peek(4)
        tcp = chan.sock.family != socket.AF_UNIX
        if head == hlnk_wire.MAGIC:
            if tcp and cfg.tls == "required":
                raise p.RemoteProtocolError("this daemon requires TLS (tls = required); the first "
                                            "hostlink's clients cannot speak it")
            return hlnk.HLNK
        if tcp and head[:1] == b"\x16":
            if self.state.tls_context is None:
                raise p.RemoteProtocolError("TLS is off on this daemon (tls = off)")
            await chan.handshake(self.state.tls_context)
        elif tcp and cfg.tls == "required" and head:
            raise p.RemoteProtocolError("this daemon requires TLS (tls = required): set "
                                        "tls_fingerprint in the target (hostlink-install "
                                        "show-target prints it)")
        return await next_event(chan, self.conn, self.fds)

    async def _authenticate(self, auth):
        """The client whose token ``auth`` carries, Ok on its way; None once refused."""
        client = client_for(self.state.cfg, auth.token)
        if client is None:
            self.record = {"event": "auth", "result": "auth_failed", "client_info": auth.client}
            await self.state.penalties.failed(self.peer)
            await _answer(self.chan, self.conn, p.Error(
                "auth_failed", "authentication failed: the token must match auth_token in "
                               "hostlink.conf"))
            return None
        self.state.penalties.forget(self.peer)
        self.authenticated()
        self.record = {"client": client.name}
        ok = self.conn.send(p.Ok(self.state.cfg.node, p.VERSION))
        if self.conn.buffered:  # the request came with the token: Ok goes out with the answer
            self.chan.hold(ok)
        else:
            await self.chan.send(ok)
        return client

    async def _request(self, client, event):
        """Hand the request to its handler; send the answer it returns."""
        key = (p.Exec, event.detach) if type(event) is p.Exec else type(event)
        try:
            answer = await REQUESTS[key](self, client, event)
        except Refused as exc:
            self.record.update(result=exc.code, error=exc.message)
            await _answer(self.chan, self.conn, p.Error(exc.code, exc.message, exc.status))
            return
        if answer is not None:
            await self._send(answer)

    # ---- the requests: each notes what was asked and how it went, and returns its answer -------

    async def _ping(self, client, ping):
        self.record.update(event="ping", result="ok")
        return p.Pong(self.state.cfg.node, self.state.uptime_s, p.VERSION)

    async def _kill(self, client, kill):
        """A signal for a running command of this client's, from a connection of its own (the
        command's own connection can be stuck behind stdin the command does not read)."""
        self.record.update(event="signal", pid=kill.pid, signal=kill.signum)
        command = next((c for c in self.state.commands if c.proc.pid == kill.pid
                        and c.client == client.name and not c.exited.done()), None)
        if not spawn.is_signal(kill.signum) or command is None:
            self.record["result"] = "not_found"
            await _answer(self.chan, self.conn, p.Error(
                "not_found", "no running command %d of client %s to signal" % (kill.pid, client.name)))
            return None
        command.signal(kill.signum)  # found by client and pid, signalled only while it runs
        self.record["result"] = "ok"
        return p.Reply(json.dumps({"pid": kill.pid, "signal": kill.signum,
                                   "node": self.state.cfg.node}))

    async def _job(self, client, req):
        if client.ping_only:
            raise Denied("client %s may only ping" % client.name)
        self.record.update(event="job_" + req.action, job=req.id)
        self.record["result"], last = await self.state.jobs.answer(client, req, self._send,
                                                                   self.chan.peer_closed)
        return last

    async def _detach(self, client, req):
        """exec -D: authorized as for exec, started as a job, its id answered at once."""
        self.record.update(event="job_start", cwd=req.cwd, **execute.asked(req))
        outcome, reply = await execute.start_job(self.state, client, req, self._exchange())
        self.record.update(outcome.audit())
        return reply

    async def _exec(self, client, req):
        self.record.update(event="exec", cwd=req.cwd, mode=req.mode, **execute.asked(req))
        outcome = await execute.run_exec(self.state, client, req, self._exchange(),
                                         self.audit_start)
        self.record.update(outcome.audit())
        return None

    # ---- helpers -------------------------------------------------------------------------------

    def audit_start(self, fields):
        """The record of a command about to start (its end is the connection's record); whether
        it was written."""
        start = dict(self.record, event=self.record["event"] + "_start", **fields)
        return self.state.audit.write(**start, **self.peer.fields())

    def _exchange(self):
        return Exchange(self.chan, self.conn, self.fds, self.state.cfg)

    async def _send(self, event):
        await self.chan.send(self.conn.send(event))

    async def _failed(self, code, message):
        self.record.setdefault("event", "request")
        self.record.update(result=code, error=message)
        if self.conn is not None:
            await _answer(self.chan, self.conn, p.Error(code, message))

    async def _close(self):
        close_all(self.fds)
        evicted = self.slot.state == "closing"
        self.slot.closing()  # saying goodbye holds no slot
        self._write_record()  # before the goodbye: a daemon stopping meanwhile loses no line
        if self.chan is None:
            self.sock.close()
            return
        if evicted or not self.state.limits.linger_ok():
            self.chan.close_now()
            return
        try:
            await self.chan.linger()
        finally:
            self.chan.close()

    def _write_record(self):
        if not self.record or self.record.get("result") == "evicted":
            return  # a flood of evictions would only flood the log
        if "client" not in self.record and not self.state.audit.unauthenticated(self.peer.limit_key):
            return  # counted in status (audit_suppressed), not written
        self.state.audit.write(**self.record, **self.peer.fields())


# The one request of a connection, by event type; an Exec with detach (exec -D) starts a job.
REQUESTS = {
    p.Ping: Session._ping,
    p.Kill: Session._kill,
    p.JobRequest: Session._job,
    (p.Exec, True): Session._detach,
    (p.Exec, False): Session._exec,
}


class Exchange:
    """An exec request's side of an HLK2 connection: answers as frames, the client's input relayed."""

    __slots__ = ("chan", "conn", "fds", "cfg")

    def __init__(self, chan, conn, fds, cfg):
        self.chan = chan
        self.conn = conn
        self.fds = fds
        self.cfg = cfg  # the output caps a captured result keeps (Started)

    @property
    def sock(self):
        return self.chan.sock

    async def refuse(self, exc):
        await _answer(self.chan, self.conn, p.Error(exc.code, exc.message, exc.status))

    async def waiting(self, ident, node, text, timeout_ms, kind="approval"):
        await self.chan.send(self.conn.send(p.Waiting(ident, node, text, timeout_ms, kind)))

    async def until_closed(self):
        """Read (and keep) what the client sends until it closes; returns then."""
        while self.conn.buffered <= p.MAX_BUFFER:
            data, new_fds = await self.chan.recv()
            self.fds.extend(new_fds)
            if not data:
                return
            self.conn.receive_data(data)
        await asyncio.Event().wait()  # too much sent ahead: stop reading, wait for the decision

    async def started(self, pid, timeout_ms):
        await self.chan.send(self.conn.send(p.Started(pid, timeout_ms, self.cfg.default_max_output_bytes,
                                                      self.cfg.max_output_bytes)))

    def input(self, command, pipes):
        return running.client_input(self.chan, self.conn, self.fds, command, pipes)

    def output(self, fd, kind, command):
        return running.pump(self.chan, self.conn, fd, kind, command)

    async def exit(self, event):
        await self.chan.send(self.conn.send(event))


async def _answer(chan, conn, event):
    """Send a final answer if the peer is still there."""
    try:
        await chan.send(conn.send(event))
    except (ConnectionError, OSError, p.ProtocolError):
        pass


def _say_now(sock, data):
    """Send a last answer only if it goes out at once (an evicted peer is not waited for)."""
    try:
        sock.send(data, socket.MSG_DONTWAIT)
    except OSError:
        pass
