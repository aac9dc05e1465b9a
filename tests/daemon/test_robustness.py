"""Issue 16, seen afresh: malformed numbers, hang-ups and stalls on paths the first round did not
cover. Attackers run as uid 65534 against a real root daemon where it is a client's doing, and
the daemon's admin ``status`` returns to its baseline.
"""

import json
import os
import signal
import socket
import time

from tests.conftest import wait_for
from tests.daemon.test_availability import baseline, good, nobody, public, settled, status

RAW = """
import struct
def frame(cls, *fields):
    payload = b"".join(p._field(k, v) for k, v in fields)
    return struct.pack(">BI", cls.TYPE, len(payload)) + payload
def answer(s):
    s.settimeout(20)
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return got
        got += chunk
"""


def test_a_number_with_two_signs_is_refused_not_a_crash(make_daemon):
    # Old code: "--9" passed the integer check and int() raised ValueError: a Signal frame with
    # it ended the relay's input task, so the client's hang-up was never seen and its command
    # ran on (no_timeout: for max_timeout_ms) in its slot; an Exec with it got no answer and a
    # record without event or result.
    d, base = public(make_daemon)
    out = nobody(d, RAW + """
s = conn()
s.sendall(p.PREFACE + p.encode(p.Auth(TOKEN, "x")) +
          p.encode(p.Exec(command="sleep 60", mode="relay", no_timeout=True)))
time.sleep(0.5)
s.sendall(frame(p.Signal, ("signum", b"--9")))
time.sleep(0.3)
s.close()
s = conn()
s.sendall(p.PREFACE + p.encode(p.Auth(TOKEN, "x")) +
          frame(p.Exec, ("command", b"true"), ("timeout_ms", b"--5")))
print(b"bad_request" in answer(s))
""")
    assert out.split() == ["True"], out
    settled(d, base)
    records = d.audit_lines(until=lambda ls: any(l.get("result") == "bad_request" for l in ls))
    assert all("event" in r and "result" in r for r in records), records
    assert "Traceback" not in d.log.read_text()
