"""The first hostlink's requests (HLNK frames, built from its documented format) against a real
hostlinkd: its transfers and jobs through our policy and audit, its output caps, its refusals."""

import base64
import hashlib
import json
import os
import socket
import struct

import pytest

from tests.conftest import wait_for


class Hlnk:
    """One connection speaking HLNK: frames out, frames in."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(30)
        self.s.connect(path)
        self.buf = b""

    def send(self, obj=None, raw=None):
        data = raw if raw is not None else json.dumps(obj).encode()
        self.s.sendall(b"HLNK" + struct.pack(">I", len(data)) + data)

    def frame(self):
        while len(self.buf) < 8 or len(self.buf) < 8 + struct.unpack(">I", self.buf[4:8])[0]:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                return None
            self.buf += chunk
        n = struct.unpack(">I", self.buf[4:8])[0]
        data, self.buf = self.buf[8:8 + n], self.buf[8 + n:]
        return data

    def answer(self):
        data = self.frame()
        return None if data is None else json.loads(data)


def ask(d, **obj):
    c = Hlnk(d.socket)
    c.send(dict({"version": 1, "id": "t1", "token": d.token}, **obj))
    return c.answer()


@pytest.fixture
def d(make_daemon, tmp_path):
    return make_daemon("default_max_output_bytes = 100\nmax_output_bytes = 1000\noutput_tmpdir = %s\n"
                       "job_spool_dir = %s\n" % (tmp_path / "out", tmp_path / "jobs"))


def test_put_get_stat_df_round_trip(d, tmp_path):
    blob = os.urandom(200000)
    r = ask(d, type="put", path=str(tmp_path / "a/b/f"), content=base64.b64encode(blob).decode(),
            mode=0o600, mkdir=True)
    assert (r["status"], r["bytes_written"]) == ("ok", 200000), r
    assert (tmp_path / "a/b/f").read_bytes() == blob and (tmp_path / "a/b/f").stat().st_mode & 0o777 == 0o600
    r = ask(d, type="get", path=str(tmp_path / "a/b/f"))
    assert base64.b64decode(r["content"]) == blob and r["size"] == 200000
    os.symlink("f", str(tmp_path / "a/b/link"))
    (tmp_path / "a/top").write_text("x")
    r = ask(d, type="get_stat", path=str(tmp_path / "a"))
    assert r["isdir"] and r["size"] == 200001
    assert sorted((f["path"], f["size"]) for f in r["files"]) == [("b/f", 200000), ("top", 1)]
    # Listed by the helper, not by a reader thread: hostlinkd forks with preexec hooks, which is
    # only safe while it has one thread.
    with open("/proc/%d/status" % d.proc.pid) as f:
        assert "Threads:\t1\n" in f.read()
    assert ask(d, type="get_stat", path=str(tmp_path / "a/top")) == dict(
        version=1, id="t1", node=r["node"], status="ok", path=str(tmp_path / "a/top"), isdir=False, size=1)
    r = ask(d, type="stat_fs", path=str(tmp_path / "no/such/dir"))
    assert r["resolved"] == str(tmp_path) and r["free_bytes"] > 0 and r["total_bytes"] >= r["free_bytes"]
    r = ask(d, type="get", path=str(tmp_path / "missing"))
    assert (r["status"], r["error_msg"]) == ("error", "get: cannot open %s: No such file or directory"
                                             % (tmp_path / "missing"))
    audit = d.audit_lines(until=lambda ls: sum(l.get("protocol") == "hlnk" for l in ls) >= 6)
    assert {l.get("xfer") for l in audit if l.get("protocol") == "hlnk"} >= {"receive", "send", "stat", "df"}


def test_streams_verified_and_a_bad_digest_leaves_nothing(d, tmp_path):
    tmp_path = tmp_path / "files"
    tmp_path.mkdir()
    data = os.urandom(5 << 20)
    c = Hlnk(d.socket)
    c.send({"version": 1, "id": "s", "token": d.token, "type": "put_stream",
            "path": str(tmp_path / "big"), "size": len(data)})
    assert c.answer()["ready"] is True
    for i in range(0, len(data), 4 << 20):
        c.send(raw=data[i:i + (4 << 20)])
    c.send({"sha256": hashlib.sha256(data).hexdigest(), "stream_end": True})
    r = c.answer()
    assert (r["status"], r["size"], r["sha256"]) == ("ok", len(data), hashlib.sha256(data).hexdigest())
    assert (tmp_path / "big").read_bytes() == data
    c = Hlnk(d.socket)
    c.send({"version": 1, "id": "g", "token": d.token, "type": "get_stream", "path": str(tmp_path / "big")})
    head, got = c.answer(), b""
    while len(got) < head["size"]:
        got += c.frame()
    assert got == data and c.answer()["sha256"] == hashlib.sha256(data).hexdigest()
    c = Hlnk(d.socket)
    c.send({"version": 1, "id": "bad", "token": d.token, "type": "put_stream",
            "path": str(tmp_path / "bad"), "size": 3})
    c.answer()
    c.send(raw=b"abc")
    c.send({"sha256": "0" * 64, "stream_end": True})
    r = c.answer()
    assert r["status"] == "error" and "sha256 mismatch" in r["error_msg"]
    assert sorted(os.listdir(str(tmp_path))) == ["big"]  # no file, no partial file


def test_a_big_frame_is_taken_only_from_a_known_token(d, tmp_path):
    blob = os.urandom(2 << 20)  # over the 1 MiB a request may be before its token is known
    content = base64.b64encode(blob).decode()
    r = ask(d, type="put", token="wrong", path=str(tmp_path / "f"), content=content)
    assert r["status"] == "bad_request" and "over the limit" in r["error_msg"]
    assert not (tmp_path / "f").exists()
    r = ask(d, type="put", path=str(tmp_path / "f"), content=content)
    assert r["status"] == "ok" and (tmp_path / "f").read_bytes() == blob


def test_output_caps_of_the_conf(d):
    r = ask(d, type="exec", command="seq 1000")
    assert (len(r["stdout"]), r["stdout_truncated"], r["stdout_original_bytes"]) == (100, True, 3893)
    r = ask(d, type="exec", command="seq 1000", max_stdout_bytes=5000)  # clamped to max_output_bytes
    assert len(r["stdout"]) == 1000
    for mode in ((), ("--relay",)):  # our client keeps what it caps too, from pipes or frames
        out = json.loads(d.run(*mode, "-j", "exec", "seq 1000").stdout)
        assert (len(out["stdout"]), out["stdout_truncated"], out["stdout_original_bytes"]) == \
            (100, True, 3893)
    out = json.loads(d.run("-j", "-m", "5000", "exec", "seq 1000").stdout)
    assert len(out["stdout"]) == 1000 and out["stdout_truncated"]
    assert d.run("exec", "seq 1000").stdout.count(b"\n") == 1000  # a terminal's output is not capped


def test_its_jobs_answered_in_its_shapes(d):
    r = ask(d, type="exec", command="echo one; sleep 30", detach=True)
    assert r["status"] == "ok" and r["detached"] and len(r["job_id"]) == 12
    ident = r["job_id"]
    assert ask(d, type="job", action="status", job_id=ident)["state"] == "running"
    wait_for(lambda: ask(d, type="job", action="tail", job_id=ident)["data"] == "one\n", 10, "output")
    t = ask(d, type="job", action="tail", job_id=ident, offset=2)
    assert (t["data"], t["offset"], t["next_offset"], t["binary"]) == ("e\n", 2, 4, False)
    r = ask(d, type="job", action="cancel", job_id=ident)
    assert r["signalled"] is True
    st = wait_for(lambda: (lambda s: s["done"] and s)(ask(d, type="job", action="status", job_id=ident)),
                  10, "the job to end")
    assert (st["state"], st["exit_code"]) == ("exited", 143)  # its word for a cancelled job
    r = ask(d, type="job", action="cancel", job_id=ident)
    assert (r["signalled"], r["error_msg"]) == (False, "job already finished")
    assert ident in [j["job_id"] for j in ask(d, type="job", action="list")["jobs"]]
    assert ask(d, type="job", action="status", job_id="../../etc")["status"] == "bad_request"
    assert ask(d, type="job", action="status", job_id="0123456789ab")["status"] == "not_found"


def test_its_refusals(d, tmp_path):
    assert ask(d, type="ping", token="bad") == {"version": 1, "id": "", "node": ask(d, type="ping")["node"],
                                               "status": "auth_failed", "error_msg": "authentication failed"}
    assert ask(d, type="frobnicate")["error_msg"] == "unknown message type"
    assert ask(d, type="put", content="")["error_msg"] == "put: path is required"
    r = ask(d, type="exec", command="echo out; echo err >&2", output_to_file=True)
    assert r["stdout_file"] == str(tmp_path / "out/hl_t1_stdout")
    assert open(r["stdout_file"]).read() == "out\n" and open(r["stderr_file"]).read() == "err\n"
    assert os.stat(r["stdout_file"]).st_mode & 0o777 == 0o600 and "stdout" not in r
    for path in (r["stdout_file"], r["stderr_file"]):
        os.unlink(path)


def test_its_transfers_under_a_clients_policy(make_daemon, tmp_path):
    d = make_daemon("[client ci]\ntoken = ci-token-0123456789abcdef\nallow = /usr/bin/true\n"
                    "cwd_allow = %s\n" % (tmp_path / "ok"))
    (tmp_path / "ok").mkdir()
    (tmp_path / "secret").write_text("s")
    d.token = "ci-token-0123456789abcdef"
    r = ask(d, type="get", path=str(tmp_path / "secret"))
    assert r["status"] == "error" and "cwd_allow" in r["error_msg"]
    r = ask(d, type="put", path=str(tmp_path / "ok/f"), content=base64.b64encode(b"hi").decode())
    assert r["status"] == "ok" and (tmp_path / "ok/f").read_bytes() == b"hi"
    assert ask(d, type="exec", command="id")["status"] == "error"  # rules: no shell strings
