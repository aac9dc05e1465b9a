"""Issue 16, seen afresh: malformed numbers, hang-ups and stalls on paths the first round did not
cover. Attackers run as uid 65534 against a real root daemon where it is a client's doing, and
the daemon's admin ``status`` returns to its baseline.
"""

import json
import os
import signal
import socket

from tests.conftest import wait_for
from tests.daemon.test_availability import baseline, nobody, public, settled, status

RAW = """
import struct
def frame(cls, *fields):
    payload = b"".join(p._field(k, v) for k, v in fields)
    return struct.pack(">BI", cls.TYPE, len(payload)) + payload
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
print(b"bad_request" in read_all(s))
""")
    assert out.split() == ["True"], out
    settled(d, base)
    records = d.audit_lines(until=lambda ls: any(l.get("result") == "bad_request" for l in ls))
    assert all("event" in r and "result" in r for r in records), records
    assert "Traceback" not in d.log.read_text()


HLNK = """
def hlnk(obj, raw=None):
    body = raw if raw is not None else json.dumps(obj).encode()
    s = conn()
    s.sendall(b"HLNK" + len(body).to_bytes(4, "big") + body)
    r = hw.Reader(128 << 20)
    s.settimeout(20)
    while True:
        data = s.recv(1 << 20)
        r.feed(data)
        resp = r.next() if data else None
        if resp is not None or not data:
            s.close()
            return resp
def req(**kw):
    return dict({"version": 1, "token": TOKEN, "id": "r1"}, **kw)
"""


def test_hlnk_numbers_and_nesting_are_refused_or_bounded_not_a_crash(make_daemon, tmp_path):
    # Old code: Infinity (which Python's JSON reads) or 1e19 where HLNK takes a count raised
    # OverflowError: no answer, no audit record of an authenticated request; "[[[[..." nested
    # past the stack raised RecursionError from an unauthenticated peer.
    spool = tmp_path / "jobs"
    d, base = public(make_daemon, "job_spool_dir = %s\n" % spool)
    os.chmod(tmp_path, 0o755)
    out = nobody(d, HLNK + """
print(hlnk(None, raw=b"[" * 100000)["status"])
print(hlnk(req(type="exec", command="echo hi", max_stdout_bytes=float("inf")))["stdout"].strip())
job = hlnk(req(type="exec", command="echo out", detach=True, job_timeout_ms=float("inf")))
print(job["status"])
time.sleep(1)
for offset in (1e19, float("inf")):
    print(hlnk(req(type="job", action="tail", job_id=job["job_id"], offset=offset))["status"])
print(hlnk(req(type="put", path="/tmp/hostlink-robustness-put", content="", mode=float("inf")))["status"])
""")
    assert out.split() == ["bad_request", "hi", "ok", "ok", "ok", "ok"], out
    os.unlink("/tmp/hostlink-robustness-put")
    records = d.audit_lines(until=lambda ls: sum(l.get("event") == "job_tail" for l in ls) == 2)
    assert sum(r.get("event") == "exec" and r.get("protocol") == "hlnk" for r in records) == 1
    assert "Traceback" not in d.log.read_text()
    settled(d, base)


def test_an_hlnk_command_never_ends_without_its_record(make_daemon):
    # Old code: the HLNK record was the handler's return value: an OSError after the command
    # ran (its client gone before the answer was sent, or the command removing its own
    # output_to_file file) lost it: exec_start, then only an unauthenticated "disconnected".
    d, base = public(make_daemon)
    out = nobody(d, HLNK + """
resp = hlnk(req(type="exec", id="gone1", output_to_file=True,
                command="echo hi; rm -f /run/hostlink/output/hl_gone1_stdout"))
print(resp["status"], resp["exit_code"])
s = conn()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
body = json.dumps(req(type="exec", id="gone2", command="head -c 4194304 /dev/zero | tr '\\\\0' '\\\\1'; "
                      "head -c 4194304 /dev/zero | tr '\\\\0' '\\\\1' >&2")).encode()
s.sendall(b"HLNK" + len(body).to_bytes(4, "big") + body)
time.sleep(3)  # it ran; its answer (48 MB of JSON) waits for us to read
s.close()
""")
    assert out.split() == ["ok", "0"], out
    records = d.audit_lines(until=lambda ls: sum(l.get("event") == "exec" for l in ls) >= 3)
    ends = [r for r in records if r.get("event") == "exec" and r.get("protocol") == "hlnk"]
    assert [(r["client"], r["exit_code"]) for r in ends] == [("default", 0)] * 2, records
    assert not [r for r in records if r.get("result") == "disconnected" and "client" not in r]
    settled(d, base)


def test_a_job_wait_ends_with_its_client(make_daemon, tmp_path):
    # Old code: job wait (and tail -f) polled until the job ended, whoever was still there:
    # each killed client left an authenticated connection behind for as long as the job ran
    # (no cap by default), until max_connections locked everyone out.
    d = make_daemon("job_spool_dir = %s\n" % (tmp_path / "jobs"))
    base = baseline(d)
    ident = json.loads(d.run("-j", "exec", "-D", "sleep 60").stdout)["id"]
    waiters = [d.popen("job", "wait", ident) for _ in range(4)] + \
        [d.popen("job", "tail", "-f", ident) for _ in range(4)]
    wait_for(lambda: status(d)["connections"]["authenticated"] == 8, 10, "8 followers")
    for w in waiters:
        w.kill()
        w.wait()
    wait_for(lambda: status(d)["connections"]["authenticated"] == 0, 10, "the followers gone")
    assert d.run("job", "cancel", "--kill", ident).returncode == 0
    wait_for(lambda: status(d)["jobs"] == 0, 20, "the job ended")
    settled(d, base)


def test_a_stalled_tls_handshake_ends_at_the_auth_deadline(make_daemon):
    # Old code: at the deadline the daemon sent its auth_timeout Error through the unfinished
    # handshake, and that send waited for the peer to go on with it: a silent TCP peer held
    # its unauthenticated slot until it closed, whatever auth_timeout_ms said.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    d, base = public(make_daemon, "tcp_enabled = yes\ntcp_bind = 127.0.0.1\ntcp_port = %d\n"
                                  "auth_timeout_ms = 1000\n" % port)
    stall = nobody(d, """
held = []
for _ in range(3):
    s = socket.create_connection(("127.0.0.1", %d))
    s.sendall(b"\\x16\\x03\\x01\\x00")  # a TLS record header, then nothing
    held.append(s)
print("ready", flush=True)
time.sleep(60)
""" % port, wait=False)
    try:
        assert stall.stdout.readline() == b"ready\n"
        wait_for(lambda: status(d)["connections"]["unauthenticated"] == 3, 5, "3 stalled")
        wait_for(lambda: status(d)["connections"]["unauthenticated"] == 0, 5, "the deadline")
    finally:
        stall.kill()
        stall.wait()
    settled(d, base)


def test_a_reload_to_an_audit_log_that_cannot_be_opened_keeps_the_old_one(daemon):
    # Old code: the old log was closed before the new one failed to open (a traceback from the
    # SIGHUP handler): every later record went nowhere, with audit_broken empty, so commands
    # ran unaudited although audit_failure = closed.
    base = baseline(daemon)
    good_log = daemon.audit
    daemon.audit = "/proc/no-such-dir/audit.log"
    daemon.write_conf()
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "/proc/no-such-dir" in daemon.log.read_text(), 10, "the reload tried")
    daemon.audit = good_log
    r = daemon.run("exec", "echo still-audited")
    assert r.returncode == 0, r.stderr
    records = daemon.audit_lines(until=lambda ls: any(l.get("command") == "echo still-audited"
                                                      and l["event"] == "exec" for l in ls))
    assert any(r["event"] == "reload" for r in records)
    assert "Traceback" not in daemon.log.read_text()
    settled(daemon, base)
