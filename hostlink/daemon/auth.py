"""Who is on the other end of a connection, and whether its token is one of ours."""

import asyncio
import hmac
import socket
import struct
import time

from . import config
from .audit import peer_container

_PEERCRED = struct.Struct("3i")
# Failed tokens from one peer (uid, or IP for TCP) before answers slow down, and the longest delay:
# guessing a 256-bit token is hopeless anyway; the delay keeps a loop from burning CPU and log.
AUTH_FREE_FAILURES = 3
AUTH_MAX_DELAY = 0.5
# Peers whose failures are remembered: bounded memory under a flood of distinct peers.
MAX_REMEMBERED = 4096


def peer_credentials(sock):
    """(pid, uid, gid) of the process on the other end of a Unix socket (SO_PEERCRED)."""
    return _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))


class Peer:
    """Who is on the other end: SO_PEERCRED for Unix sockets, the address for TCP."""

    __slots__ = ("pid", "uid", "gid", "addr", "container")

    def __init__(self, sock):
        self.pid = self.uid = self.gid = -1
        self.addr = ""
        if sock.family == socket.AF_UNIX:
            self.pid, self.uid, self.gid = peer_credentials(sock)
        else:
            self.addr = "%s:%d" % sock.getpeername()[:2]
        self.container = peer_container(self.pid) if self.pid > 0 else ""

    @property
    def key(self):
        """What failures are counted by: the IP for TCP, the uid for a Unix socket."""
        return self.addr.rsplit(":", 1)[0] if self.addr else "uid:%d" % self.uid

    @property
    def limit_key(self):
        """Whose unauthenticated connections are counted together: the container, else the uid
        (Unix socket), or the address (TCP)."""
        if self.container:
            return "container:" + self.container
        return self.key

    def fields(self):
        out = {"peer_pid": self.pid, "peer_uid": self.uid, "peer_gid": self.gid}
        if self.addr:
            out["peer_addr"] = self.addr
        if self.container:
            out["container"] = self.container
        return out


def client_for(cfg, token):
    """The Client whose token this is, or None; compares every token in full (constant time)."""
    found = None
    given = token.encode("utf-8", "surrogateescape")
    for client in config.clients(cfg):
        if hmac.compare_digest(given, client.token.encode()) and found is None:
            found = client
    return found


class Penalties:
    """Failed tokens per peer: each one past the free few waits longer (OpenSSH's PerSourcePenalties)."""

    def __init__(self):
        self._failures = {}  # peer key -> (count, time of the last)

    async def failed(self, peer):
        """Count a failed token from ``peer`` and wait its penalty."""
        key = peer.key
        count, last = self._failures.get(key, (0, 0.0))
        now = time.monotonic()
        if now - last > 60:
            count = 0
        count += 1
        self._failures[key] = (count, now)
        if len(self._failures) > MAX_REMEMBERED:
            self._failures.clear()
        if count > AUTH_FREE_FAILURES:
            await asyncio.sleep(min(0.01 * 2 ** (count - AUTH_FREE_FAILURES), AUTH_MAX_DELAY))

    def forget(self, peer):
        """A good token: the peer starts afresh."""
        self._failures.pop(peer.key, None)
