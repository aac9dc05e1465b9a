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


def encode(obj):
    data = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogateescape")
    return _HEADER.pack(MAGIC, len(data)) + data


class Reader:
    """Sans-IO reader of HLNK frames: feed(bytes), then next() -> dict, or None for more data."""

    def __init__(self, limit):
        self.limit = limit
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data

    def next(self):
        if len(self.buf) < 8:
            return None
        magic, length = _HEADER.unpack_from(self.buf)
        if magic != MAGIC:
            raise p.RemoteProtocolError("bad HLNK magic")
        if length > self.limit:
            raise p.RemoteProtocolError("HLNK frame of %d bytes is over the limit of %d" % (length, self.limit))
        if len(self.buf) < 8 + length:
            return None
        payload = bytes(self.buf[8:8 + length])
        del self.buf[:8 + length]
        try:
            obj = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise p.RemoteProtocolError("HLNK payload is not JSON") from None
        if not isinstance(obj, dict):
            raise p.RemoteProtocolError("HLNK payload is not a JSON object")
        return obj
