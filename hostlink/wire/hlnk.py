"""The first hostlink's frames (HLNK), without I/O: ``"HLNK" | length (u32, big endian) | JSON``.

hostlinkd answers them (daemon/hlnk.py) so its ``hostlink-cli`` binaries keep working, and the
client speaks them to a first-hostlink daemon (client/hlnk.py, ``protocol = hlnk`` targets).
"""

import json
import struct

from . import protocol as p

MAGIC = b"HLNK"
_HEADER = struct.Struct(">4sI")
# Requests are small; a response may carry a whole output (the first hostlink's cap is 128 MiB).
MAX_REQUEST = 1 << 20
MAX_RESPONSE = 128 << 20
# Output kept for one response when the request names no limit: what the first hostlink allows
# at most (64 MiB), so its clients never get more than they can take.
DEFAULT_OUTPUT_CAP = 64 << 20
# Its largest frame (HL_MAX_PAYLOAD): a put carries a whole file of up to 90 MiB in base64, and a
# streamed transfer's chunks are 4 MiB. A daemon takes frames this big only from a known token.
MAX_FRAME = 128 << 20


def encode(obj):
    data = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogateescape")
    return _HEADER.pack(MAGIC, len(data)) + data


def header(length):
    """The 8 bytes before a payload of ``length`` bytes (a raw chunk of a streamed transfer)."""
    return _HEADER.pack(MAGIC, length)


class Reader:
    """Sans-IO reader of HLNK frames: feed(bytes), then next() -> dict, or None for more data."""

    def __init__(self, limit):
        self.limit = limit
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data

    def head(self):
        """The length of the frame being received, or None before its header is whole."""
        if len(self.buf) < 8:
            return None
        magic, length = _HEADER.unpack_from(self.buf)
        if magic != MAGIC:
            raise p.RemoteProtocolError("bad HLNK magic")
        return length

    def next_frame(self):
        """The next whole frame's payload as bytes, or None for more data."""
        length = self.head()
        if length is None:
            return None
        if length > self.limit:
            raise p.RemoteProtocolError("HLNK frame of %d bytes is over the limit of %d" % (length, self.limit))
        if len(self.buf) < 8 + length:
            return None
        with memoryview(self.buf) as view:
            payload = bytes(view[8:8 + length])  # one copy, however big
        del self.buf[:8 + length]
        return payload

    def next(self):
        """The next whole frame as a JSON object, or None for more data."""
        payload = self.next_frame()
        if payload is None:
            return None
        try:
            obj = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):  # "[[[[..." nested past the stack
            raise p.RemoteProtocolError("HLNK payload is not JSON") from None
        if not isinstance(obj, dict):
            raise p.RemoteProtocolError("HLNK payload is not a JSON object")
        return obj


def leading_fields(prefix, wanted):
    """The string fields ``wanted`` among the first fields of a JSON object whose start is
    ``prefix`` (bytes): how a daemon reads the token of a frame too big to take before it."""
    from json.decoder import scanstring
    text = prefix.decode("utf-8", "replace")
    out, pos = {}, text.find("{") + 1
    try:
        while pos and len(out) < len(wanted):
            pos = text.index('"', pos)
            key, pos = scanstring(text, pos + 1)
            pos = text.index(":", pos) + 1
            while text[pos] in " \t\r\n":
                pos += 1
            if text[pos] in "{[":
                break  # nested: the fields a client writes first are behind us or not there
            if text[pos] != '"':
                pos = text.index(",", pos) + 1  # a number or a literal: not wanted, skipped
                continue
            value, pos = scanstring(text, pos + 1)
            if key in wanted:
                out[key] = value
            pos = text.index(",", pos) + 1
    except (ValueError, IndexError):
        pass  # the prefix ended, or it is not what a client writes: what was read is all
    return out
