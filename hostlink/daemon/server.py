"""hostlinkd's server: it owns the listening sockets, the connections and the running commands.

One coroutine serves one connection: preface and token under a deadline, then one request
(ping, exec, a job or a signal). Nothing is spawned before the token matched. An exec runs on the
descriptors the client passed (fds mode) or on pipes relayed as frames (running.py does that).
"""

import asyncio
import hmac
import json
import logging
import os
import socket
import stat
import struct
import sys
import time

from .. import __version__
from ..wire import hlnk as hlnk_wire, protocol as p
from . import config, hlnk, policy, running, spawn, tls
from .approvals import Approvals, describe, signature
from .jobs import Jobs
from .audit import AuditLog, peer_container
from .channel import Channel, TooManyFds, close_all, within

log = logging.getLogger("hostlinkd")

_PEERCRED = struct.Struct("3i")
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Failed tokens from one peer (uid, or IP for TCP) before answers slow down, and the longest delay:
# guessing a 256-bit token is hopeless anyway; the delay keeps a loop from burning CPU and log.
AUTH_FREE_FAILURES = 3
AUTH_MAX_DELAY = 0.5


class Peer:
    """Who is on the other end: SO_PEERCRED for Unix sockets, the address for TCP."""

    __slots__ = ("pid", "uid", "gid", "addr", "container")

    def __init__(self, sock):
        self.pid = self.uid = self.gid = -1
        self.addr = ""
        if sock.family == socket.AF_UNIX:
            self.pid, self.uid, self.gid = _PEERCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        else:
            self.addr = "%s:%d" % sock.getpeername()[:2]
        self.container = peer_container(self.pid) if self.pid > 0 else ""

    def fields(self):
        out = {"peer_pid": self.pid, "peer_uid": self.uid, "peer_gid": self.gid}
        if self.addr:
            out["peer_addr"] = self.addr
        if self.container:
            out["container"] = self.container
        return out


class Server:
    """Listens, authenticates, runs commands; reload() on SIGHUP, stop() on SIGTERM."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.loop = None
        self.audit = AuditLog(cfg.audit_log)
        self.reaper = spawn.Reaper()
        self.started = time.monotonic()
        self.connections = 0
        self.unauthenticated = 0
        self.jobs = set()
        self._tasks = set()
        self._unauthenticated = {}  # task -> None, oldest first: evicted when the cap is reached
        self._listeners = []
        self._stopping = None
        self._failures = {}
        self.tls_context = None
        self.approvals = Approvals(self)
        self.detached = Jobs(self)

    # ---- lifecycle -----------------------------------------------------------------------------

    async def run(self):
        """Serve until stop() is called, then shut down within the grace period."""
        self.loop = asyncio.get_running_loop()
        self._stopping = self.loop.create_future()
        try:
            if self.cfg.unix_enabled:
                self._listen(bind_unix(self.cfg))
            if self.cfg.tcp_enabled:
                self._listen_tcp()
            await self.approvals.start()
            log.info("hostlinkd %s serving %s as node %s (max_concurrent %d)", __version__,
                     self.cfg.socket, self.cfg.node, self.cfg.max_concurrent)
            await self._stopping
        finally:
            await self._shutdown()

    def _listen(self, sock):
        sock.setblocking(False)
        self._listeners.append(sock)
        self.loop.add_reader(sock.fileno(), self._accept, sock)

    def _listen_tcp(self):
        cfg = self.cfg
        if cfg.tls != "off":
            self.tls_context = tls.server_context(cfg.tls_cert, cfg.tls_key, cfg.node)
        family = socket.AF_INET6 if ":" in cfg.tcp_bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((cfg.tcp_bind, cfg.tcp_port))
        sock.listen(512)
        self._listen(sock)
        log.info("TCP on %s:%d, tls = %s%s", cfg.tcp_bind, cfg.tcp_port, cfg.tls,
                 "" if cfg.tls == "off" else " (fingerprint %s)" % tls.fingerprint(cfg.tls_cert))
        if cfg.tls != "required":
            log.warning("TCP on %s:%d also serves plain text (tls = %s): tokens cross the network "
                        "in clear; set tls = required unless only WireGuard reaches this address",
                        cfg.tcp_bind, cfg.tcp_port, cfg.tls)

    def stop(self):
        if self._stopping and not self._stopping.done():
            log.info("stopping: no new connections")
            self._stopping.set_result(None)

    def reload(self, cfg):
        """Take a new configuration: tokens, limits and timeouts apply to the next request."""
        if (cfg.socket, cfg.unix_enabled) != (self.cfg.socket, self.cfg.unix_enabled):
            log.warning("socket changes need a restart; keeping %s", self.cfg.socket)
            cfg.socket, cfg.unix_enabled = self.cfg.socket, self.cfg.unix_enabled
        old_audit = self.cfg.audit_log
        self.cfg = cfg
        if cfg.audit_log != old_audit:
            self.audit.close()
            self.audit = AuditLog(cfg.audit_log)
        else:
            try:
                self.audit.reopen()
            except OSError as exc:
                log.error("cannot reopen audit log %s: %s", cfg.audit_log, exc.strerror)
        self.audit.write(event="reload", config=cfg.path)
        log.info("configuration reloaded from %s", cfg.path)

    async def _shutdown(self):
        await self.approvals.stop()
        for sock in self._listeners:
            self.loop.remove_reader(sock.fileno())
            sock.close()
        if self.cfg.unix_enabled:
            _unlink_socket(self.cfg.socket)
        if self.jobs:
            log.info("waiting up to %d ms for %d running command(s)",
                     self.cfg.shutdown_grace_ms, len(self.jobs))
            await asyncio.wait([j.exited for j in self.jobs], timeout=self.cfg.shutdown_grace_ms / 1000)
        for job in list(self.jobs):
            job.terminate()
        if self.jobs:
            await asyncio.wait([j.exited for j in self.jobs], timeout=self.cfg.kill_grace_ms / 1000 + 1)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        self.audit.close()

    # ---- connections ---------------------------------------------------------------------------

    def _accept(self, listener):
        for _ in range(64):  # a bounded batch, so one busy listener cannot starve the loop
            try:
                sock, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc.strerror)
                return
            if self.connections >= self.cfg.max_connections:
                _refuse(sock, "server busy: %d connections open (max_connections)" % self.connections)
                continue
            if self.unauthenticated >= self.cfg.max_unauthenticated:
                # Drop the oldest connection still without a token: a good client authenticates
                # within a millisecond, so connections that never do cannot lock it out.
                oldest = next(iter(self._unauthenticated), None)
                if oldest is not None:
                    self._unauthenticated.pop(oldest)
                    oldest.cancel()
            self.connections += 1
            self.unauthenticated += 1
            task = self.loop.create_task(self._serve(sock))
            self._tasks.add(task)
            self._unauthenticated[task] = None
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(lambda t: self._unauthenticated.pop(t, None))

    async def _serve(self, sock):
        fds = []
        authed = False
        chan = conn = peer = None
        record = {}
        try:
            peer = Peer(sock)
            chan = Channel(sock, can_pass_fds=sock.family == socket.AF_UNIX)
            conn = p.Connection(p.SERVER)
            deadline = self.cfg.auth_timeout_ms / 1000
            try:
                event = await within(self._open(chan, conn, fds), deadline)
            except asyncio.TimeoutError:
                await _answer(chan, conn, p.Error("auth_timeout", "no token within %d ms"
                                                  % self.cfg.auth_timeout_ms))
                record = {"event": "auth", "result": "auth_timeout"}
                return
            if event is None:
                return
            if event is hlnk.HLNK:
                record = await hlnk.serve(self, chan, peer)
                return
            client = self._client_for(event.token)
            if client is None:
                record = {"event": "auth", "result": "auth_failed", "client_info": event.client}
                await self._penalty(peer)
                await _answer(chan, conn, p.Error(
                    "auth_failed", "authentication failed: the token must match auth_token in "
                                   "hostlink.conf"))
                return
            self._failures.pop(_peer_key(peer), None)
            self._unauthenticated.pop(asyncio.current_task(), None)
            authed = True
            self.unauthenticated -= 1
            record = {"client": client.name}
            ok = conn.send(p.Ok(self.cfg.node, p.VERSION))
            if conn.buffered:  # the request came with the token: Ok goes out with the answer
                chan.hold(ok)
            else:
                await chan.send(ok)
            event = await within(running.next_event(chan, conn, fds), deadline)
            if event is None:
                return
            if isinstance(event, p.Ping):
                record["event"] = "ping"
                record["result"] = "ok"
                await chan.send(conn.send(p.Pong(self.cfg.node, int(time.monotonic() - self.started),
                                                 p.VERSION)))
                return
            if isinstance(event, p.Kill):
                await self._kill(chan, conn, client, event, record)
                return
            if isinstance(event, p.JobRequest):
                try:
                    if client.ping_only:
                        raise spawn.SpawnError("denied", "client %s may only ping" % client.name)
                    await self.detached.handle(chan, conn, client, event, record)
                except spawn.SpawnError as exc:
                    record.update(result=exc.code, error=exc.message)
                    await _answer(chan, conn, p.Error(exc.code, exc.message))
                return
            if event.detach:
                await self._detach(chan, conn, event, record, client)
                return
            await self._exec(chan, conn, fds, event, record, client)
        except (p.ProtocolError, TooManyFds) as exc:
            record.setdefault("event", "request")
            record.update(result="bad_request", error=str(exc))
            if conn is not None:
                await _answer(chan, conn, p.Error("bad_request", str(exc)))
        except asyncio.TimeoutError:
            record.update(event="request", result="timeout", error="no request after the token")
        except asyncio.CancelledError:
            record.setdefault("event", "auth")
            record.setdefault("result", "evicted")  # never authenticated; the cap made room
        except (ConnectionError, OSError) as exc:
            record.setdefault("event", "request")
            record.setdefault("result", "disconnected")
            log.debug("connection error: %s", exc)
        finally:
            close_all(fds)
            if chan is not None:
                await chan.linger()
                chan.close()
            else:
                sock.close()
            self.connections -= 1
            if not authed:
                self.unauthenticated -= 1
            if record.get("result") == "evicted":
                record = {}  # a flood of these would only flood the log
            if record and peer is not None:
                self.audit.write(**record, **peer.fields())

    async def _open(self, chan, conn, fds):
        """Tell the protocol from the first bytes (HLK2, the first hostlink's HLNK, or TLS), do the
        TLS handshake where there is one, and return the first event (or hlnk.HLNK)."""
        head = await chan.peek(4)
        tcp = chan.sock.family != socket.AF_UNIX
        if head == hlnk_wire.MAGIC:
            if tcp and self.cfg.tls == "required":
                raise p.ProtocolError("this daemon requires TLS (tls = required); the first "
                                      "hostlink's clients cannot speak it")
            return hlnk.HLNK
        if tcp and head[:1] == b"\x16":
            if self.tls_context is None:
                raise p.ProtocolError("TLS is off on this daemon (tls = off)")
            await chan.handshake(self.tls_context)
        elif tcp and self.cfg.tls == "required" and head:
            raise p.ProtocolError("this daemon requires TLS (tls = required): set tls_fingerprint "
                                  "in the target (hostlink-install show-target prints it)")
        return await running.next_event(chan, conn, fds)

    def _client_for(self, token):
        """The Client whose token this is, or None; compares every token in full (constant time)."""
        found = None
        given = token.encode("utf-8", "surrogateescape")
        for client in config.clients(self.cfg):
            if hmac.compare_digest(given, client.token.encode()) and found is None:
                found = client
        return found

    async def _penalty(self, peer):
        """Wait longer after each failed token from the same peer (OpenSSH's PerSourcePenalties)."""
        key = _peer_key(peer)
        count, last = self._failures.get(key, (0, 0.0))
        now = time.monotonic()
        if now - last > 60:
            count = 0
        count += 1
        self._failures[key] = (count, now)
        if len(self._failures) > 4096:  # bounded memory under a flood of distinct peers
            self._failures.clear()
        if count > AUTH_FREE_FAILURES:
            await asyncio.sleep(min(0.01 * 2 ** (count - AUTH_FREE_FAILURES), AUTH_MAX_DELAY))

    # ---- exec ----------------------------------------------------------------------------------

    async def _exec(self, chan, conn, fds, req, record, client):
        cfg = self.cfg
        record.update(event="exec", cwd=req.cwd, mode=req.mode)
        if req.argv is not None:
            record["argv"] = list(req.argv)
        else:
            record["command"] = req.command
        if len(self.jobs) >= cfg.max_concurrent:
            record["result"] = "busy"
            await _answer(chan, conn, p.Error(
                "busy", "server busy: %d commands running (max_concurrent = %d)"
                % (len(self.jobs), cfg.max_concurrent)))
            return
        if req.timeout_ms < 0:
            raise p.ProtocolError("timeout_ms must not be negative")
        timeout = policy.timeout_for(cfg, client, req.timeout_ms,  # transfers: as long as they take
                                     0 if req.xfer else cfg.default_timeout_ms, cfg.max_timeout_ms)
        if req.mode == "fds":
            if len(fds) != 3:
                raise p.ProtocolError("fds mode needs exactly 3 descriptors, got %d" % len(fds))
            stdio, ours = fds[:], []
            del fds[:]  # now owned by stdio: closed once, below
        elif req.mode == "relay":
            if fds:
                raise p.ProtocolError("relay mode takes no descriptors")
            stdio, ours = running.pty(req) if req.tty else running.relay_pipes()
            running.grow_send_buffer(chan.sock)
        else:
            raise p.ProtocolError("unknown mode %r" % req.mode)
        try:
            req, user, cwd = await self._authorize(chan, conn, fds, client, req, record)
            proc = spawn.spawn(cfg, req, user, cwd, *stdio, tty=req.tty and req.mode == "relay")
        except spawn.SpawnError as exc:
            close_all(ours)
            record.update(result=exc.code, error=exc.message)
            await _answer(chan, conn, p.Error(exc.code, exc.message))
            return
        finally:
            close_all(stdio)  # the child has its copies; ours would hold pipes open
        job = running.Job(self, proc, timeout, client.name)
        job.tty = req.tty and req.mode == "relay"
        self.jobs.add(job)
        record.update(pid=proc.pid, timeout_ms=timeout)
        try:
            await running.run(job, chan, conn, fds, ours, timeout)
        finally:
            self.jobs.discard(job)
            close_all(ours)
            status = job.exited.result() if job.exited.done() else None
            if status is not None:
                code, sig = spawn.exit_code(status)
                record.update(exit_code=code, signal=sig)
            record.update(result="timeout" if job.timed_out else "hangup" if job.hung_up else
                          "ok" if status is not None else "disconnected",
                          timed_out=job.timed_out, duration_ms=job.duration_ms)

    async def _authorize(self, chan, conn, fds, client, req, record):
        """(request, user, cwd) once policy, and a person where a rule asks one, let it run;
        SpawnError otherwise. A transfer becomes the request that runs its host-side helper."""
        cfg = self.cfg
        user = policy.user_for(cfg, client)
        cwd = spawn.working_dir(cfg, req, user, client.cwd_allow[0] if client.cwd_allow else "")
        if req.xfer:
            return _transfer_request(cfg, client, req), user, cwd
        if policy.check(cfg, client, req, cwd) == "ask":
            approved, reason = await self._approve(chan, conn, fds, client, req, cwd)
            if not approved:
                raise spawn.SpawnError("denied", "not approved on %s: %s" % (cfg.node, reason))
            record["approved"] = True
        return req, user, cwd

    async def _kill(self, chan, conn, client, req, record):
        """A signal for a running command of this client's, from a connection of its own (the
        command's own connection can be stuck behind stdin the command does not read)."""
        record.update(event="signal", pid=req.pid, signal=req.signum)
        job = next((j for j in self.jobs if j.proc.pid == req.pid and j.client == client.name
                    and not j.exited.done()), None)
        if not spawn.is_signal(req.signum) or job is None:
            record["result"] = "not_found"
            await _answer(chan, conn, p.Error("not_found", "no running command %d of client %s "
                                                           "to signal" % (req.pid, client.name)))
            return
        spawn.kill_group(job.pgid, req.signum)
        record["result"] = "ok"
        await chan.send(conn.send(p.Reply(json.dumps({"pid": req.pid, "signal": req.signum,
                                                      "node": self.cfg.node}))))

    async def _detach(self, chan, conn, req, record, client):
        """exec -D: check as for exec, start a job runner, answer its id at once."""
        cfg = self.cfg
        record.update(event="job_start", cwd=req.cwd)
        record["argv" if req.argv is not None else "command"] = list(req.argv) if req.argv is not None else req.command
        try:
            req, user, cwd = await self._authorize(chan, conn, [], client, req, record)
            timeout = policy.timeout_for(cfg, client, req.timeout_ms, cfg.job_default_timeout_ms,
                                         cfg.job_max_timeout_ms)
            ident = self.detached.start(client, req, cwd, user, timeout)
        except spawn.SpawnError as exc:
            record.update(result=exc.code, error=exc.message)
            await _answer(chan, conn, p.Error(exc.code, exc.message))
            return
        record.update(result="ok", job=ident, timeout_ms=timeout)
        await chan.send(conn.send(p.Reply(json.dumps({"id": ident, "node": cfg.node,
                                                      "timeout_ms": timeout}))))

    async def _approve(self, chan, conn, fds, client, req, cwd):
        """Wait for a person to approve the request; (approved, reason). A hang-up withdraws it."""
        sig = signature(req, cwd)
        timeout = self.cfg.approval_timeout_ms

        async def announce(ident):
            await chan.send(conn.send(p.Waiting(ident, self.cfg.node, describe(sig), timeout)))
        ask = self.loop.create_task(self.approvals.ask(client, sig, timeout, announce))
        gone = self.loop.create_task(_until_closed(chan, conn, fds))
        done, _ = await asyncio.wait({ask, gone}, return_when=asyncio.FIRST_COMPLETED)
        if ask in done:
            gone.cancel()
            return ask.result()
        ask.cancel()
        raise ConnectionResetError("the client went away while waiting for approval")

def _transfer_request(cfg, client, req):
    """hostlink cp/put/get/df: the host-side helper, as the client's user, on allowed paths only."""
    if req.xfer not in ("send", "receive", "df", "stat") or not req.argv:
        raise spawn.SpawnError("bad_request", "unknown transfer %r" % req.xfer)
    if cfg.namespace_pid:
        raise spawn.SpawnError("bad_request", "transfers are not available in sidecar mode yet")
    if client.ping_only:
        raise spawn.SpawnError("denied", "client %s may only ping" % client.name)
    path = req.argv[0]
    if not path.startswith("/"):
        raise spawn.SpawnError("bad_request", "transfer paths on the host are absolute, got %r" % path)
    if client.restricted and not client.cwd_allow:
        raise spawn.SpawnError("denied", "client %s has rules but no cwd_allow, so it may not "
                                         "transfer files" % client.name)
    if client.cwd_allow:
        real = os.path.realpath(path)
        if not any(real == d or real.startswith(d.rstrip("/") + "/")
                   for d in (os.path.realpath(a) for a in client.cwd_allow)):
            raise spawn.SpawnError("denied", "client %s may not transfer %s (cwd_allow = %s)"
                                   % (client.name, path, " ".join(client.cwd_allow)))
    fields = {n: getattr(req, n) for n in req.__slots__}
    # -S: no site (PYTHONPATH names the package), as for job runners: 30 ms less a transfer.
    fields.update(argv=(sys.executable, "-S", "-m", "hostlink.daemon.transfer_helper", req.xfer) + tuple(req.argv),
                  command=None, env=(("PYTHONPATH", _PKG_PARENT),), xfer="")
    return p.Exec(**fields)


async def _until_closed(chan, conn, fds):
    """Read (and keep) what the client sends until it closes; returns then."""
    while conn.buffered <= p.MAX_BUFFER:
        data, new_fds = await chan.recv()
        fds.extend(new_fds)
        if not data:
            return
        conn.receive_data(data)
    await asyncio.Event().wait()  # too much sent ahead: stop reading, wait for the decision


async def _answer(chan, conn, event):
    """Send a final answer if the peer is still there."""
    try:
        await chan.send(conn.send(event))
    except (ConnectionError, OSError, p.ProtocolError):
        pass


def _refuse(sock, message):
    try:
        sock.setblocking(False)
        sock.send(p.encode(p.Error("busy", message)))
    except OSError:
        pass
    sock.close()


def _peer_key(peer):
    return peer.addr.rsplit(":", 1)[0] if peer.addr else "uid:%d" % peer.uid


def bind_unix(cfg):
    """The listening Unix socket: a stale file replaced, mode and group set before anyone connects."""
    path = cfg.socket
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if os.path.lexists(path):
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError("%s exists and is not a socket; remove it or choose another socket path"
                          % path)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            raise OSError("another hostlinkd is already listening on %s" % path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # stale: left by a daemon that died
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # nobody but us until the mode below is set
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    gid = cfg.socket_gid
    if gid >= 0:
        os.chown(path, -1, gid)
    os.chmod(path, cfg.socket_mode)
    sock.listen(512)
    return sock


def _unlink_socket(path):
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass
