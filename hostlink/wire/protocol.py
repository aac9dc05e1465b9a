"""The hostlink wire protocol, version 2, without any I/O (in the manner of h11).

A connection opens with the 4-byte preface ``HLK2`` from the client, then both sides exchange frames:
``type (u8) | length (u32, big endian) | payload``. Control payloads are a list of fields,
``key_len (u8) | key | value_len (u32) | value``; a key may repeat (argv, env). Data frames
(stdin, stdout, stderr) carry raw bytes. ``Connection`` turns bytes into events and events into
bytes, and checks every event against the state table below. references/protocol.md documents it.

Only ``_struct`` is imported (``struct`` is a module around it that costs an import): the client
loads this module on its hot path.
"""

from _struct import Struct

PREFACE = b"HLK2"
VERSION = 2

# Limits, each with its reason.
# A data frame holds at most this much; 1 MiB frames keep syscalls few at GB/s and memory small.
MAX_FRAME = 1 << 20
# A control frame (everything but data) is far smaller: argv, env and a command fit in 512 KiB.
MAX_CONTROL_FRAME = 512 << 10
# Linux refuses any single argv or environment string over MAX_ARG_STRLEN (128 KiB).
MAX_STRING = 128 << 10
# Fields in one control frame: an argv of 4096 words or env of that many names is already absurd.
MAX_FIELDS = 4096
# A reader stops reading its socket while this much is buffered and unparsed (backpressure).
MAX_BUFFER = MAX_FRAME + 5

_HEADER = Struct(">BI")
_U8 = Struct(">B")
_U32 = Struct(">I")


class ProtocolError(Exception):
    """The protocol was broken; the connection cannot go on. Catch one of the two below."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol: what it sent is malformed or not allowed now (h11's split)."""


class LocalProtocolError(ProtocolError):
    """We tried to send what the protocol does not allow: a bug on our side, not the peer's."""


# ---- events -------------------------------------------------------------------------------------


class Event:
    """Base of all events: compared and printed by their fields."""

    __slots__ = ()
    TYPE = 0

    def __init__(self, *args, **kw):
        names = self.__slots__
        for name, value in zip(names, args):
            object.__setattr__(self, name, value)
        for name in names[len(args):]:
            object.__setattr__(self, name, kw.pop(name, self._DEFAULTS.get(name)))
        if kw:
            raise TypeError("unknown fields: %s" % ", ".join(kw))

    _DEFAULTS = {}

    def __setattr__(self, name, value):
        raise AttributeError("events are immutable")

    def __eq__(self, other):
        return type(self) is type(other) and all(
            getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%r" % (n, getattr(self, n)) for n in self.__slots__))


class Auth(Event):
    """Client: the token, and who the client is (for logs)."""
    __slots__ = ("token", "client")
    TYPE = 1
    _DEFAULTS = {"client": ""}


class Exec(Event):
    """Client: run a command. Exactly one of command (a shell string) or argv is set.

    mode "fds": the client's stdin/stdout/stderr ride with this frame (SCM_RIGHTS).
    mode "relay": output comes back in Stdout/Stderr frames, input goes in Stdin frames.
    no_timeout: run without the daemon's default timeout (its max_timeout_ms still caps it).
    queue: past max_concurrent, wait for a free slot (Waiting kind "slot") instead of Error busy.
    Both are new in 0.2: an older daemon ignores them, an older client leaves them false.
    """
    __slots__ = ("command", "argv", "cwd", "env", "timeout_ms", "mode", "tty", "rows", "cols",
                 "detach", "xfer", "no_timeout", "queue")
    TYPE = 2
    _DEFAULTS = {"argv": None, "command": None, "cwd": "", "env": (), "timeout_ms": 0,
                 "mode": "relay", "tty": False, "rows": 0, "cols": 0, "detach": False, "xfer": "",
                 "no_timeout": False, "queue": False}


class JobRequest(Event):
    """Client: act on a detached job: list, status, tail, wait, cancel, rm."""
    __slots__ = ("action", "id", "stream", "follow", "kill")
    TYPE = 8
    _DEFAULTS = {"id": "", "stream": "stdout", "follow": False, "kill": False}


class Kill(Event):
    """Client, on a connection of its own: deliver ``signum`` to the process group of its running
    command ``pid``, when the command's connection is stuck behind stdin it does not read."""
    __slots__ = ("pid", "signum")
    TYPE = 9


class Ping(Event):
    """Client: is the daemon there?"""
    __slots__ = ()
    TYPE = 3


class Stdin(Event):
    """Client: bytes for the command's standard input (relay mode)."""
    __slots__ = ("data",)
    TYPE = 4


class StdinEof(Event):
    """Client: no more standard input."""
    __slots__ = ()
    TYPE = 5


class Signal(Event):
    """Client: deliver this signal number to the command's process group."""
    __slots__ = ("signum",)
    TYPE = 6


class Resize(Event):
    """Client: the terminal changed size (relay mode with a pseudo-terminal)."""
    __slots__ = ("rows", "cols")
    TYPE = 7


class Ok(Event):
    """Daemon: authenticated."""
    __slots__ = ("node", "version")
    TYPE = 16


class Started(Event):
    """Daemon: the command runs; timeout_ms is the one in force (0: none). The conf's output caps
    for captured results (-j): default_max_output_bytes when none is asked, max_output_bytes
    at most (0: none; a daemon before them sends neither)."""
    __slots__ = ("pid", "timeout_ms", "default_max_output_bytes", "max_output_bytes")
    TYPE = 17
    _DEFAULTS = {"default_max_output_bytes": 0, "max_output_bytes": 0}


class Stdout(Event):
    """Daemon: bytes the command wrote to standard output (relay mode). Received data events
    hold bytes or a memoryview of the received bytes (references/protocol.md)."""
    __slots__ = ("data",)
    TYPE = 18


class Stderr(Event):
    """Daemon: bytes the command wrote to standard error (relay mode)."""
    __slots__ = ("data",)
    TYPE = 19


class Exit(Event):
    """Daemon: the command ended. signal is set when a signal ended it (exit_code is 128+signal)."""
    __slots__ = ("exit_code", "signal", "timed_out", "duration_ms")
    TYPE = 20
    _DEFAULTS = {"signal": 0, "timed_out": False, "duration_ms": 0}


class Error(Event):
    """Daemon: the request failed before or instead of running; code is one of ERROR_CODES.
    status: what a shell would have exited with instead (127 not found, 126 not executable), or 0."""
    __slots__ = ("code", "message", "status")
    TYPE = 21
    _DEFAULTS = {"status": 0}


class Pong(Event):
    """Daemon: answer to Ping."""
    __slots__ = ("node", "uptime_s", "version")
    TYPE = 22


class Reply(Event):
    """Daemon: the answer to a JobRequest or a detached Exec, as JSON text."""
    __slots__ = ("text",)
    TYPE = 24


class Waiting(Event):
    """Daemon: the request waits, for how long at most: kind "approval", for a person on the host
    to approve it (id); kind "slot", for a free slot under max_concurrent (only when it asked to
    queue, so an older client, which reads every Waiting as an approval, never gets one)."""
    __slots__ = ("id", "node", "text", "timeout_ms", "kind")
    TYPE = 23
    _DEFAULTS = {"kind": "approval"}


# Error codes the daemon sends, documented in references/protocol.md.
ERROR_CODES = ("auth_failed", "busy", "bad_request", "denied", "bad_cwd", "spawn_failed", "not_found",
               "auth_timeout", "shutting_down", "internal")

_DATA = (Stdin, Stdout, Stderr)
_BY_TYPE = {cls.TYPE: cls for cls in (Auth, Exec, Ping, Stdin, StdinEof, Signal, Resize,
                                      Ok, Started, Stdout, Stderr, Exit, Error, Pong, Waiting,
                                      JobRequest, Reply, Kill)}

# ---- field encoding ----------------------------------------------------------------------------

# How each event's fields travel: name -> kind. "s" str, "i" int, "b" bool, "l" list of str,
# "e" list of (name, value) pairs, "o" optional str.
_SCHEMA = {
    Auth: {"token": "s", "client": "s"},
    Exec: {"command": "o", "argv": "l", "cwd": "s", "env": "e", "timeout_ms": "i", "mode": "s",
           "tty": "b", "rows": "i", "cols": "i", "detach": "b", "xfer": "s", "no_timeout": "b",
           "queue": "b"},
    JobRequest: {"action": "s", "id": "s", "stream": "s", "follow": "b", "kill": "b"},
    Reply: {"text": "s"},
    Signal: {"signum": "i"},
    Kill: {"pid": "i", "signum": "i"},
    Resize: {"rows": "i", "cols": "i"},
    Ok: {"node": "s", "version": "i"},
    Started: {"pid": "i", "timeout_ms": "i", "default_max_output_bytes": "i", "max_output_bytes": "i"},
    Exit: {"exit_code": "i", "signal": "i", "timed_out": "b", "duration_ms": "i"},
    Error: {"code": "s", "message": "s", "status": "i"},
    Pong: {"node": "s", "uptime_s": "i", "version": "i"},
    Waiting: {"id": "s", "node": "s", "text": "s", "timeout_ms": "i", "kind": "s"},
    Ping: {}, StdinEof: {},
}


def _field(key, value):
    k = key.encode()
    return _U8.pack(len(k)) + k + _U32.pack(len(value)) + value


def encode(event):
    """The bytes of one frame for ``event``."""
    cls = type(event)
    if cls in _DATA:
        data = event.data
        return _HEADER.pack(cls.TYPE, len(data)) + data
    parts = []
    for name, kind in _SCHEMA[cls].items():
        value = getattr(event, name)
        if kind == "s":
            parts.append(_field(name, value.encode("utf-8", "surrogateescape")))
        elif kind == "o":
            if value is not None:
                parts.append(_field(name, value.encode("utf-8", "surrogateescape")))
        elif kind == "i":
            parts.append(_field(name, b"%d" % value))
        elif kind == "b":
            parts.append(_field(name, b"1" if value else b"0"))
        elif kind == "l":
            if value is not None:
                parts.append(_field(name, b""))  # marks "argv given", even if empty
                for item in value:
                    parts.append(_field(name + "[]", item.encode("utf-8", "surrogateescape")))
        elif kind == "e":
            for k, v in value:
                parts.append(_field("env[]", ("%s=%s" % (k, v)).encode("utf-8", "surrogateescape")))
    payload = b"".join(parts)
    return _HEADER.pack(cls.TYPE, len(payload)) + payload


def _text(raw, name):
    if len(raw) > MAX_STRING:
        raise RemoteProtocolError("%s too long: %d bytes (max %d)" % (name, len(raw), MAX_STRING))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("field %r is not valid UTF-8" % name) from None


def _int(raw, name):
    digits = raw[1:] if raw[:1] == b"-" else raw  # one sign at most: int() refuses "--5"
    if not digits or len(raw) > 20 or not digits.isdigit():
        raise RemoteProtocolError("field %r is not an integer" % name)
    return int(raw)


def decode_fields(cls, payload):
    """The event of class ``cls`` whose control payload is ``payload``; ProtocolError if malformed."""
    schema = _SCHEMA[cls]
    values = {}
    lists = {}
    pos, end, count = 0, len(payload), 0
    view = memoryview(payload)
    while pos < end:
        count += 1
        if count > MAX_FIELDS:
            raise RemoteProtocolError("more than %d fields in one frame" % MAX_FIELDS)
        if pos + 1 > end:
            raise RemoteProtocolError("truncated field")
        klen = payload[pos]
        if pos + 1 + klen + 4 > end:
            raise RemoteProtocolError("truncated field")
        key = bytes(view[pos + 1:pos + 1 + klen]).decode("ascii", "replace")
        (vlen,) = _U32.unpack_from(payload, pos + 1 + klen)
        start = pos + 5 + klen
        if start + vlen > end:
            raise RemoteProtocolError("field %r runs past the end of its frame" % key)
        raw = bytes(view[start:start + vlen])
        pos = start + vlen
        if key.endswith("[]"):
            base = key[:-2]
            if schema.get(base) not in ("l", "e"):
                raise RemoteProtocolError("unknown field %r" % key)
            lists.setdefault(base, []).append(raw)
            continue
        kind = schema.get(key)
        if kind is None:
            continue  # unknown scalar fields are ignored, so later versions can add fields
        if key in values:
            raise RemoteProtocolError("field %r given twice" % key)
        values[key] = raw
    kw = {}
    for name, kind in schema.items():
        raw = values.get(name)
        if kind == "l":
            items = lists.get(name)
            if raw is None and items is None:
                continue
            kw[name] = tuple(_nul_free(_text(r, name), name) for r in items or ())
        elif kind == "e":
            pairs = []
            for r in lists.get(name, ()):
                text = _nul_free(_text(r, name), name)
                k, sep, v = text.partition("=")
                if not sep or not k:
                    raise RemoteProtocolError("environment entry %r is not NAME=VALUE" % text[:60])
                pairs.append((k, v))
            kw[name] = tuple(pairs)
        elif raw is None:
            if kind in ("s", "i", "b") and name not in cls._DEFAULTS:
                raise RemoteProtocolError("%s frame lacks field %r" % (cls.__name__, name))
        elif kind in ("s", "o"):
            kw[name] = _text(raw, name)
        elif kind == "i":
            kw[name] = _int(raw, name)
        elif kind == "b":
            if raw not in (b"0", b"1"):
                raise RemoteProtocolError("field %r is not 0 or 1" % name)
            kw[name] = raw == b"1"
    return cls(**kw)


def _nul_free(text, name):
    if "\0" in text:
        raise RemoteProtocolError("field %r holds a NUL byte" % name)
    return text


# ---- the connection state machine --------------------------------------------------------------

CLIENT, SERVER = "client", "server"

# Which event each side may receive in each state, and the state it leads to. A state in PAUSED
# waits for our own answer before the next incoming event is parsed (pipelined requests stay queued).
# States: PREFACE (server only), AUTH, AUTHING, READY, STARTING, RUNNING, CLOSED.
_RECEIVE = {
    SERVER: {
        "AUTH": {Auth: "AUTHING"},
        "READY": {Exec: "STARTING", Ping: "PINGING", JobRequest: "STARTING", Kill: "STARTING"},
        "RUNNING": {Stdin: "RUNNING", StdinEof: "RUNNING", Signal: "RUNNING", Resize: "RUNNING"},
    },
    CLIENT: {
        "AUTH": {Ok: "READY", Error: "CLOSED"},
        "READY": {Started: "RUNNING", Pong: "CLOSED", Error: "CLOSED", Waiting: "READY",
                  Reply: "CLOSED"},
        "RUNNING": {Stdout: "RUNNING", Stderr: "RUNNING", Exit: "CLOSED", Error: "CLOSED"},
    },
}
# What each side may send in each state, and the state it leads to.
_SEND = {
    SERVER: {
        "AUTH": {Error: "CLOSED"},
        "AUTHING": {Ok: "READY", Error: "CLOSED"},
        "READY": {Error: "CLOSED"},
        "STARTING": {Started: "RUNNING", Error: "CLOSED", Waiting: "STARTING", Reply: "CLOSED"},
        "PINGING": {Pong: "CLOSED", Error: "CLOSED"},
        "RUNNING": {Stdout: "RUNNING", Stderr: "RUNNING", Exit: "CLOSED", Error: "CLOSED"},
    },
    CLIENT: {
        "AUTH": {Auth: "AUTH"},
        "READY": {},
        "RUNNING": {},
    },
}
_CLIENT_ANYTIME = (Exec, Ping, Stdin, StdinEof, Signal, Resize, JobRequest, Kill)
PAUSED = ("AUTHING", "STARTING", "PINGING")


class NeedData:
    """next_event() has no whole event yet: feed more bytes."""

    def __repr__(self):
        return "NEED_DATA"


class Paused:
    """next_event() waits for this side to answer the last request first."""

    def __repr__(self):
        return "PAUSED"


NEED_DATA = NeedData()
PAUSED_EVENT = Paused()


class Connection:
    """One side of one hostlink connection: bytes in, events out; events in, bytes out."""

    def __init__(self, role):
        self.role = role
        self.state = "PREFACE" if role == SERVER else "AUTH"
        self._buf = bytearray()
        self._pos = 0
        self._eof = False

    def receive_data(self, data):
        """Feed bytes from the peer; ``b""`` means the peer closed its end."""
        if not data:
            self._eof = True
            return
        if self._pos >= len(self._buf) and type(data) is bytes:
            # Nothing left over: parse the caller's bytes where they are. They cannot change,
            # so data events can be views into them (no copy at GB/s).
            self._buf, self._pos = data, 0
            return
        if type(self._buf) is bytes:
            self._buf = bytearray(memoryview(self._buf)[self._pos:])
        elif self._pos:
            del self._buf[:self._pos]
        self._pos = 0
        self._buf += data

    @property
    def buffered(self):
        """Bytes received but not yet turned into events."""
        return len(self._buf) - self._pos

    def next_event(self):
        """The next event, NEED_DATA, PAUSED_EVENT, or None once the peer closed cleanly."""
        if self.state in PAUSED and self.role == SERVER:
            return PAUSED_EVENT
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if self.state == "PREFACE":
            if avail < 4:
                if self._eof:
                    return self._closed(avail)
                if bytes(buf[pos:pos + avail]) != PREFACE[:avail]:
                    raise RemoteProtocolError("not a hostlink connection (bad preface)")
                return NEED_DATA
            if bytes(buf[pos:pos + 4]) != PREFACE:
                raise RemoteProtocolError("not a hostlink connection (bad preface)")
            self._pos += 4
            self.state = "AUTH"
            return self.next_event()
        if avail < 5:
            return self._closed(avail) if self._eof else NEED_DATA
        ftype, length = _HEADER.unpack_from(buf, pos)
        cls = _BY_TYPE.get(ftype)
        if cls is None:
            raise RemoteProtocolError("unknown frame type %d" % ftype)
        limit = MAX_FRAME if cls in _DATA else MAX_CONTROL_FRAME
        if length > limit:
            raise RemoteProtocolError("%s frame of %d bytes is over the limit of %d"
                                % (cls.__name__, length, limit))
        table = _RECEIVE[self.role].get(self.state, {})
        if cls not in table:
            raise RemoteProtocolError("%s frame not allowed now (state %s)" % (cls.__name__, self.state))
        if avail < 5 + length:
            return self._closed(avail) if self._eof else NEED_DATA
        if cls in _DATA and type(buf) is bytes:
            event = cls(memoryview(buf)[pos + 5:pos + 5 + length])
        else:
            with memoryview(buf) as view:
                payload = bytes(view[pos + 5:pos + 5 + length])  # one copy, not two
            event = cls(payload) if cls in _DATA else decode_fields(cls, payload)
        self._pos = pos + 5 + length
        self.state = table[cls]
        return event

    def _closed(self, avail):
        if avail:
            raise RemoteProtocolError("connection closed in the middle of a frame")
        return None

    def send_header(self, cls, length):
        """The header of a data frame of ``length`` bytes, for a payload sent without copying."""
        if self._legal(cls) is None:
            raise LocalProtocolError("cannot send %s in state %s" % (cls.__name__, self.state))
        return _HEADER.pack(cls.TYPE, length)

    def _legal(self, cls):
        if self.role == CLIENT and cls in _CLIENT_ANYTIME:
            return self.state
        if self.role == SERVER and cls is Error and self.state != "CLOSED":
            return "CLOSED"  # the daemon may always give up with a reason, even before the preface
        return _SEND[self.role].get(self.state, {}).get(cls)

    def send(self, event):
        """The bytes that carry ``event`` to the peer; raises if it is not legal now."""
        cls = type(event)
        nxt = self._legal(cls)
        if nxt is None:
            raise LocalProtocolError("cannot send %s in state %s" % (cls.__name__, self.state))
        self.state = nxt
        data = encode(event)
        if self.role == CLIENT and cls is Auth:
            data = PREFACE + data
        return data
