"""The first hostlink's frames without I/O: whole frames byte by byte, raw chunks, and the token
read from the start of a frame too big to take before it."""

import json
import struct

import pytest

from hostlink.wire import protocol as p
from hostlink.wire.hlnk import Reader, encode, header, leading_fields


def test_frames_byte_by_byte_json_and_raw():
    data = encode({"type": "ping", "id": "a"}) + header(3) + b"\0\1\2"
    r = Reader(1 << 20)
    got = []
    for i in range(len(data)):
        r.feed(data[i:i + 1])
        obj = r.next() if not got else r.next_frame()
        if obj is not None:
            got.append(obj)
    assert got == [{"type": "ping", "id": "a"}, b"\0\1\2"]


def test_bad_magic_and_over_the_limit_refused():
    r = Reader(10)
    r.feed(b"HLNX" + struct.pack(">I", 1) + b"x")
    with pytest.raises(p.RemoteProtocolError, match="magic"):
        r.next()
    r = Reader(10)
    r.feed(header(11))
    assert r.head() == 11
    with pytest.raises(p.RemoteProtocolError, match="over the limit"):
        r.next()


def test_leading_fields_of_a_prefix():
    text = json.dumps({"version": 1, "type": "put", "id": "c-1", "token": 't"k', "content": "A" * 99})
    assert leading_fields(text[:60].encode(), ("type", "token")) == {"type": "put", "token": 't"k'}
    nested = json.dumps({"env": {"token": "inner"}, "token": "outer"})
    assert leading_fields(nested.encode(), ("token",)) == {}  # a nested object stops the reading
    assert leading_fields(b"\xff garbage", ("token",)) == {}
