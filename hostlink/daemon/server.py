"""hostlinkd's listener (sshd to connection.py's sshd-session): the listening sockets, accepting and
counting connections, reload and shutdown. Each accepted socket is served by a connection.Session;
what the parts share lives in a state.ServerState, never in this object.
"""

import asyncio
import logging
import os
import socket
import stat

from .. import __version__
from ..wire import protocol as p
from . import tls
from .admin import AdminSocket
from .audit import AuditLog
from .auth import Peer
from .connection import Session
from .errors import Busy
from .state import ServerState

log = logging.getLogger("hostlinkd")


class Server:
    """Listens and hands each connection to a Session; reload() on SIGHUP, stop() on SIGTERM."""

    def __init__(self, cfg):
        self.state = ServerState(cfg)
        self.admin = AdminSocket(self.state)
        self._tasks = set()
        self._listeners = []
        self._extra = None  # the listener on extra_socket
        self._bound = False  # the socket file is ours to remove (never another daemon's live one)
        self._stopping = None

    @property
    def cfg(self):
        return self.state.cfg

    # ---- lifecycle -----------------------------------------------------------------------------

    async def run(self):
        """Serve until stop() is called, then shut down within the grace period."""
        loop = self.state.loop = asyncio.get_running_loop()
        self._stopping = loop.create_future()
        try:
            if self.cfg.unix_enabled:
                self._listen(bind_unix(self.cfg))
                self._bound = True
            self._listen_extra(self.cfg)
            if self.cfg.tcp_enabled:
                self._listen_tcp()
            self.state.jobs.adopt()  # jobs that outlived a previous daemon count before anyone asks
            await self.admin.start()
            log.info("hostlinkd %s serving %s as node %s (max_concurrent %d)", __version__,
                     self.cfg.socket, self.cfg.node, self.cfg.max_concurrent)
            await self._stopping
        finally:
            await self._shutdown()

    def _listen(self, sock):
        sock.setblocking(False)
        self._listeners.append(sock)
        self.state.loop.add_reader(sock.fileno(), self._accept, sock)

    def _listen_extra(self, cfg):
        """Listen on cfg.extra_socket instead of the extra socket there was (none when empty)."""
        new = bind_unix(cfg, cfg.extra_socket) if cfg.extra_socket else None  # fails before the old goes
        if self._extra is not None:
            self.state.loop.remove_reader(self._extra.fileno())
            self._listeners.remove(self._extra)
            self._extra.close()
            _unlink_socket(self.cfg.extra_socket)
        self._extra = new
        if new is not None:
            self._listen(new)
            log.info("also serving %s", cfg.extra_socket)

    def _listen_tcp(self):
        cfg = self.cfg
        if cfg.tls != "off":
            self.state.tls_context = tls.server_context(cfg.tls_cert, cfg.tls_key, cfg.node)
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
        state = self.state
        if (cfg.socket, cfg.unix_enabled) != (state.cfg.socket, state.cfg.unix_enabled):
            log.warning("socket changes need a restart; keeping %s", state.cfg.socket)
            cfg.socket, cfg.unix_enabled = state.cfg.socket, state.cfg.unix_enabled
        old_audit = state.cfg.audit_log
        if cfg.extra_socket != state.cfg.extra_socket:
            try:
                self._listen_extra(cfg)
            except OSError as exc:
                log.error("cannot listen on %s: %s; keeping %s", cfg.extra_socket, exc,
                          state.cfg.extra_socket or "none")
                cfg.extra_socket = state.cfg.extra_socket
        audit = None
        if cfg.audit_log != old_audit:
            try:  # the new one open before the old goes: never a moment without one
                audit = AuditLog(cfg.audit_log)
            except OSError as exc:
                log.error("cannot open audit log %s: %s; keeping %s", cfg.audit_log,
                          exc.strerror or exc, old_audit)
                cfg.audit_log = old_audit
        state.cfg = cfg
        if audit is not None:
            state.audit.close()
            state.audit = audit
        else:
            try:
                state.audit.reopen()
            except OSError as exc:
                log.error("cannot reopen audit log %s: %s", cfg.audit_log, exc.strerror)
        state.audit.write(event="reload", config=cfg.path)
        log.info("configuration reloaded from %s", cfg.path)

    async def _shutdown(self):
        self.state.slots.close()  # who waits for a slot is told at once; nothing new starts
        await self.admin.stop()
        for sock in self._listeners:
            self.state.loop.remove_reader(sock.fileno())
            sock.close()
        if self._bound:
            _unlink_socket(self.cfg.socket)
        if self._extra is not None:
            _unlink_socket(self.cfg.extra_socket)
        commands = self.state.commands
        if commands:
            log.info("waiting up to %d ms for %d running command(s)",
                     self.cfg.shutdown_grace_ms, len(commands))
            await asyncio.wait([c.exited for c in commands], timeout=self.cfg.shutdown_grace_ms / 1000)
        for command in list(commands):
            command.terminate()
        if commands:
            await asyncio.wait([c.exited for c in commands], timeout=self.cfg.kill_grace_ms / 1000 + 1)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        self.state.audit.close()

    # ---- connections ---------------------------------------------------------------------------

    def _accept(self, listener):
        for _ in range(64):  # a bounded batch, so one busy listener cannot starve the loop
            if not self.state.limits.accept_more():
                return  # the loop serves those first; the listener stays readable
            try:
                sock, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc.strerror)
                return
            try:
                peer = Peer(sock)
            except OSError:  # gone already
                sock.close()
                continue
            session = Session(self.state, sock, peer)
            try:
                slot = session.slot = self.state.limits.admit(peer.limit_key, session.evict)
            except Busy as exc:
                _refuse(sock, exc.message)
                self.state.limits.refused += 1
                if self.state.audit.unauthenticated(peer.limit_key):  # rate-limited per peer
                    self.state.audit.write(event="connect", result="busy", error=exc.message,
                                           **peer.fields())
                continue
            task = session.task = self.state.loop.create_task(session.serve())
            self._tasks.add(task)
            # Runs even when the task was cancelled before it started: the slot and socket go.
            task.add_done_callback(lambda t, slot=slot, sock=sock: _done(self._tasks, t, slot, sock))


def _done(tasks, task, slot, sock):
    tasks.discard(task)
    slot.release()
    sock.close()


def _refuse(sock, message):
    try:
        sock.setblocking(False)
        sock.send(p.encode(p.Error("busy", message)))
    except OSError:
        pass
    sock.close()


def bind_unix(cfg, path=None):
    """The listening Unix socket (``cfg.socket`` unless ``path``): a stale file replaced, mode and
    group set before anyone connects."""
    path = path or cfg.socket
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
