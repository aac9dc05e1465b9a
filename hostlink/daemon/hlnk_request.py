"""One request of the first hostlink's protocol (HLNK) on its connection: its frames in and out,
its client and its audit record; what every HLNK handler gets."""

import time

from ..wire import protocol as p
from ..wire.hlnk import MAX_FRAME, MAX_REQUEST, Reader, encode, leading_fields
from .auth import client_for

# Of a frame over MAX_REQUEST, this much is read for its type and token before the rest is taken:
# only a put with a known token may be that big (a whole file in base64).
LARGE_PREFIX = 64 << 10

class Request:
    """One HLNK request on its connection: its frames in and out, its client, its audit record."""

    def __init__(self, state, chan, fds):
        self.state = state
        self.chan = chan
        self.fds = fds
        self.reader = Reader(MAX_REQUEST)
        self.obj = {}
        self.client = None
        self.record = {}
        self.started = time.monotonic()
        self.peer = None  # the connection's Peer (its audit fields)
        self.large = None  # the limits ticket of the frame over MAX_REQUEST being read or handled

    @property
    def id(self):
        return str(self.obj.get("id", ""))[:64]

    async def recv(self, keep=True):
        """More bytes from the client, into the reader unless only its hang-up is awaited (then
        they are dropped: nothing more is read from it); False once it closed."""
        data, new_fds = await self.chan.recv()
        self.fds.extend(new_fds)
        if new_fds:
            raise p.RemoteProtocolError("HLNK requests pass no descriptors")
        if keep:
            self.reader.feed(data)
        return bool(data)

    async def first(self):
        """The request as a dict, or None when the client closed first."""
        while True:
            self._allow_large()
            obj = self.reader.next()
            if obj is not None:
                return obj
            if not await self.recv():
                return None

    def _allow_large(self):
        length = self.reader.head()
        if length is None or length <= self.reader.limit:
            return
        if len(self.reader.buf) < min(8 + length, 8 + LARGE_PREFIX):
            return  # read more of it first
        head = leading_fields(bytes(self.reader.buf[8:8 + LARGE_PREFIX]), ("type", "token"))
        client = client_for(self.state.cfg, head.get("token", ""))
        if length > MAX_FRAME or head.get("type") != "put" or client is None:
            raise p.RemoteProtocolError("an HLNK request of %d bytes is over the limit of %d"
                                        % (length, self.reader.limit))
        self.reader.limit = MAX_FRAME
        self._hold_large(client.name)

    def _hold_large(self, owner):
        """Count a frame over MAX_REQUEST against hlnk_buffer_bytes before it is read: up to
        128 MiB each, held whole, and parsed and decoded once more."""
        length = self.reader.head()
        if self.large is None and length is not None and length > MAX_REQUEST:
            self.large = self.state.limits.hlnk_frame(owner, length)

    def release(self):
        if self.large is not None:
            self.large.release()
            self.large = None

    async def frame(self):
        """The next frame's payload (a streamed chunk or its trailer), or None at the end."""
        self.reader.limit = MAX_FRAME  # authenticated: its 4 MiB chunks, or bigger
        self.release()  # the caller is done with the frame before
        while True:
            self._hold_large(self.client.name)
            payload = self.reader.next_frame()
            if payload is not None:
                return payload
            if not await self.recv():
                return None

    async def send(self, obj):
        await self.chan.send(encode(obj))

    def response(self, status="ok", **fields):
        out = {"version": 1, "id": self.id, "node": self.state.cfg.node, "status": status}
        out.update(fields)
        return out

    async def answer(self, **fields):
        await self.send(self.response("ok", **fields))

    async def fail(self, status, message, **fields):
        """Answer a request that did not run (or failed), and note it in the audit record."""
        self.record.setdefault("result", status)
        self.record.setdefault("error", message)
        await self.send(self.response(status, **fields, error_msg=message))

    def audit_start(self, fields):
        """The record of its command (or transfer helper) about to start; whether it was written
        (the end is the connection's record)."""
        start = dict(self.record, event=self.record.get("event", "hlnk") + "_start", **fields)
        return self.state.audit.write(**start, **(self.peer.fields() if self.peer else {}))

    def ms(self):
        return int((time.monotonic() - self.started) * 1000)


def count(value, cap=1 << 62):
    """A JSON number as a whole number of at most ``cap``; 0 unless it is a positive number
    (Infinity, NaN, a bool or a string are not: int() of the first raised OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return 0
    return int(min(value, cap))


def status_of(code):
    """The first hostlink's status for one of our refusal codes."""
    return code if code in ("auth_failed", "bad_request", "not_found") else "error"
