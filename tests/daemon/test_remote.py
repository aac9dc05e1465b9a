"""TCP targets with TLS pinning, fan-out, targets --ping, and the first hostlink's HLNK frames."""

import json
import os
import socket
import struct
import subprocess
import sys

import pytest

from hostlink.daemon import tls
from tests.conftest import ROOT


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tcp_daemon(make_daemon, tls_mode=None, name="d"):
    port = free_port()
    extra = "tcp_enabled = yes\ntcp_bind = 127.0.0.1\ntcp_port = %d\n" % port
    if tls_mode:
        extra += "tls = %s\n" % tls_mode
    d = make_daemon(extra, name=name)
    d.port = port
    d.fingerprint = tls.fingerprint(str(d.base / "hostlink.crt")) if tls_mode != "off" else ""
    return d


def write_targets(path, daemons, extra=""):
    lines = []
    for name, d in daemons.items():
        lines += ["[%s]" % name, "transport = tcp", "address = 127.0.0.1", "port = %d" % d.port,
                  "token = %s" % d.token]
        lines.append("tls_fingerprint = %s" % d.fingerprint if d.fingerprint else "tls = off")
    path.write_text("\n".join(lines) + "\n" + extra)
    os.chmod(path, 0o600)
    return str(path)


@pytest.fixture
def remote(make_daemon, tmp_path):
    d = tcp_daemon(make_daemon, "required")
    d.targets = write_targets(tmp_path / "targets.conf", {"box": d})
    d.tenv = d.env(HOSTLINK_SOCKET=None, HOSTLINK_TOKEN=None, HOSTLINK_TARGETS=d.targets,
                   HOSTLINK_TARGET="box")
    return d


def test_seed_examples_over_tcp_tls(remote, tmp_path):
    d, env = remote, remote.tenv
    assert d.run("ping", env=env).stdout.startswith(b"[%s] pong - uptime" % socket.gethostname().encode())
    assert d.run("exec", "echo hello", env=env).stdout == b"hello\n"
    assert d.run("-w", "/tmp", "exec", "pwd", env=env).stdout == b"/tmp\n"
    assert d.run("-e", "MY_VAR=value", "exec", "echo $MY_VAR", env=env).stdout == b"value\n"
    assert d.run("-T", "300", "exec", "sleep 5", env=env).returncode == 5
    assert d.run("exec", "exit 3", env=env).returncode == 1
    out = json.loads(d.run("-j", "exec", "ls -la /", env=env).stdout)
    assert out["status"] == "ok" and "etc" in out["stdout"]
    target = tmp_path / "f"
    assert d.run("exec", "cat > %s" % target, input=b"data\n", env=env).returncode == 0
    assert target.read_bytes() == b"data\n"
    blob = os.urandom(10 << 20)
    assert d.run("exec", "cat", input=blob, env=env).stdout == blob
    audit = [l for l in d.audit_lines(until=lambda ls: any(l.get("command") == "echo hello" for l in ls))
             if l.get("command") == "echo hello"][0]
    assert audit["peer_addr"].startswith("127.0.0.1:")


def test_wrong_fingerprint_refused(remote, tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text(open(remote.targets).read().replace(remote.fingerprint, "sha256:" + "0" * 64))
    os.chmod(path, 0o600)
    r = remote.run("exec", "true", env=dict(remote.tenv, HOSTLINK_TARGETS=str(path)))
    assert r.returncode == 2
    assert b"mismatch" in r.stderr and remote.fingerprint.encode() in r.stderr and b"0" * 64 in r.stderr


def test_missing_fingerprint_refused_with_fix(remote):
    r = remote.run("-a", "127.0.0.1:%d" % remote.port, "-k", remote.token, "exec", "true", env=remote.env())
    assert r.returncode == 2 and b"hostlink-install show-target" in r.stderr


def test_tls_required_refuses_plain(remote):
    r = remote.run("-a", "127.0.0.1:%d" % remote.port, "--plain", "-k", remote.token, "exec", "true",
                   env=remote.env())
    assert r.returncode == 7 and b"requires TLS" in r.stderr


def test_tls_off_and_optional_serve_plain(make_daemon):
    for mode in ("off", "optional"):
        d = tcp_daemon(make_daemon, mode, name=mode)
        r = d.run("-a", "127.0.0.1:%d" % d.port, "--plain", "exec", "echo plain")
        assert r.stdout == b"plain\n", r.stderr
    assert "set tls = required" in d.log.read_text()
    r = d.run("-a", "127.0.0.1:%d" % d.port, "--fingerprint", tls.fingerprint(str(d.base / "hostlink.crt")),
              "exec", "echo tls")
    assert r.stdout == b"tls\n"


def test_fanout_three_daemons(make_daemon, tmp_path):
    ds = {n: tcp_daemon(make_daemon, "required", name=n) for n in ("a", "b", "c")}
    targets = write_targets(tmp_path / "t.conf", ds)
    env = ds["a"].env(HOSTLINK_SOCKET=None, HOSTLINK_TOKEN=None, HOSTLINK_TARGETS=targets)
    r = ds["a"].run("-t", "a,b,c", "exec", "echo one; echo two", env=env)
    lines = sorted(r.stdout.decode().splitlines())
    assert lines == ["[a] one", "[a] two", "[b] one", "[b] two", "[c] one", "[c] two"], r.stderr
    assert r.returncode == 0
    r = ds["a"].run("--all", "exec", 'test "$(cat /proc/sys/kernel/hostname)" && exit 0', env=env)
    assert r.returncode == 0
    r = ds["a"].run("-x", "-t", "a,b", "exec", "exit 0", env=env)
    assert r.returncode == 0
    ds["c"].stop()
    r = ds["a"].run("--all", "-j", "exec", "echo hi", env=env)
    objs = [json.loads(l) for l in r.stdout.decode().splitlines()]
    assert sorted(o["target"] for o in objs) == ["a", "b"] and r.returncode == 2
    assert b"[c]" in r.stderr


def test_fanout_keeps_each_targets_timeout(make_daemon, tmp_path):
    ds = {n: tcp_daemon(make_daemon, "required", name=n) for n in ("a", "b")}
    targets = write_targets(tmp_path / "t.conf", ds, extra="timeout_ms = 300\n")  # b's own
    env = ds["a"].env(HOSTLINK_SOCKET=None, HOSTLINK_TOKEN=None, HOSTLINK_TARGETS=targets)
    r = ds["a"].run("-t", "a,b", "exec", "sleep 1; echo done", env=env)
    assert r.stdout == b"[a] done\n" and r.returncode == 5, r.stderr
    assert b"[b] timed out after 300 ms" in r.stderr
    r = ds["a"].run("-T", "5000", "-t", "a,b", "exec", "sleep 1; echo done", env=env)
    assert sorted(r.stdout.splitlines()) == [b"[a] done", b"[b] done"] and r.returncode == 0


def test_targets_ping_with_one_down(make_daemon, tmp_path):
    ds = {n: tcp_daemon(make_daemon, "required", name=n) for n in ("up", "down")}
    targets = write_targets(tmp_path / "t.conf", ds)
    ds["down"].stop()
    env = ds["up"].env(HOSTLINK_TARGETS=targets)
    r = ds["up"].run("targets", "--ping", env=env)
    rows = {l.split()[0].lstrip("*"): l for l in r.stdout.decode().splitlines()}
    assert " ok " in rows["up"] + " " and "unreachable" in rows["down"]
    data = json.loads(ds["up"].run("-j", "targets", "--ping", env=env).stdout)
    assert {t["name"]: t["state"] for t in data} == {"(local)": "ok", "up": "ok", "down": "unreachable"}


def test_first_hostlink_targets_file_reads_unchanged(daemon, tmp_path):
    # Written from the first hostlink's documented format (its SPEC.md, section 5.2).
    path = tmp_path / "targets.conf"
    path.write_text("[desktop]\ntransport = unix\nsocket = %s\ntoken = %s\n\n"
                    "[dgx-spark]\ntransport = tcp\naddress = 10.0.0.2\nport = 9876\ntoken = x\n"
                    % (daemon.socket, daemon.token))
    os.chmod(path, 0o644)
    env = daemon.env(HOSTLINK_TARGETS=str(path), HOSTLINK_SOCKET=None, HOSTLINK_TOKEN=None)
    r = daemon.run("-t", "desktop", "exec", "echo from desktop", env=env)
    assert r.stdout == b"from desktop\n"
    assert b"readable by others; run: chmod 600" in r.stderr
    out = daemon.run("targets", env=env).stdout.decode()
    assert "dgx-spark  tcp   10.0.0.2:9876" in out


# ---- the first hostlink's HLNK frames, built from its documented format (SPEC.md section 3) ----

def hlnk(addr, obj):
    s = socket.socket(socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET)
    s.settimeout(20)
    s.connect(addr)
    payload = json.dumps(obj).encode()
    s.sendall(b"HLNK" + struct.pack(">I", len(payload)) + payload)
    buf = b""
    while len(buf) < 8 or len(buf) < 8 + struct.unpack(">I", buf[4:8])[0]:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    assert buf[:4] == b"HLNK"
    return json.loads(buf[8:])


def test_hlnk_frames_on_unix_and_tcp(make_daemon):
    d = tcp_daemon(make_daemon, "optional")
    for addr in (d.socket, ("127.0.0.1", d.port)):
        pong = hlnk(addr, {"version": 1, "type": "ping", "id": "p1", "token": d.token})
        assert pong["status"] == "ok" and pong["id"] == "p1" and "uptime_s" in pong
        r = hlnk(addr, {"version": 1, "type": "exec", "id": "e1", "token": d.token,
                        "command": "printf 'a\\0b'; echo err >&2; exit 3", "env": {"X": "1"},
                        "workdir": "/tmp"})
        for key in ("version", "id", "node", "status", "exit_code", "stdout", "stderr",
                    "stdout_truncated", "stderr_truncated", "duration_ms"):
            assert key in r
        assert (r["status"], r["exit_code"], r["stdout"], r["stderr"]) == ("ok", 3, "a\0b", "err\n")
    assert hlnk(d.socket, {"version": 1, "type": "exec", "id": "x", "token": "bad",
                           "command": "id"})["status"] == "auth_failed"
    t = hlnk(d.socket, {"version": 1, "type": "exec", "id": "t", "token": d.token,
                        "command": "sleep 5", "timeout_ms": 300})
    assert (t["status"], t["exit_code"]) == ("timeout", -2)
    cut = hlnk(d.socket, {"version": 1, "type": "exec", "id": "m", "token": d.token,
                          "command": "seq 1000", "max_stdout_bytes": 10})
    assert cut["stdout"] == "1\n2\n3\n4\n5\n" and cut["stdout_truncated"] and cut["stdout_original_bytes"] == 3893
    bad = hlnk(d.socket, {"version": 2, "type": "exec", "id": "v", "token": d.token})
    assert bad["status"] == "bad_request"
    assert d.run("exec", "true").returncode == 0


def test_client_speaks_hlnk_to_a_target(make_daemon, tmp_path):
    d = tcp_daemon(make_daemon, "optional")
    path = tmp_path / "t.conf"
    path.write_text("[old]\ntransport = tcp\naddress = 127.0.0.1\nport = %d\ntoken = %s\nprotocol = hlnk\n"
                    % (d.port, d.token))
    os.chmod(path, 0o600)
    env = d.env(HOSTLINK_TARGETS=str(path), HOSTLINK_TARGET="old", HOSTLINK_TOKEN=None)
    assert d.run("ping", env=env).stdout.startswith(b"[")
    r = d.run("-x", "exec", "echo via-hlnk; exit 4", env=env)
    assert (r.returncode, r.stdout) == (4, b"via-hlnk\n")
    assert json.loads(d.run("-j", "exec", "echo j", env=env).stdout)["stdout"] == "j\n"
    assert d.audit_lines(until=lambda ls: any(l.get("protocol") == "hlnk" for l in ls))


def test_hlnk_refused_when_tls_required(remote):
    with pytest.raises((ConnectionError, AssertionError, json.JSONDecodeError, OSError)):
        hlnk(("127.0.0.1", remote.port), {"version": 1, "type": "ping", "id": "p", "token": remote.token})
    assert remote.run("ping", env=remote.tenv).returncode == 0


def test_show_target_prints_a_working_section(tmp_path):
    root = tmp_path / "root"
    port = free_port()
    install = [sys.executable, "-c", "from hostlink.install.cli import main; main()"]
    subprocess.run(install + ["host", "--root", str(root), "--tcp", "127.0.0.1:%d" % port, "--no-start"],
                   check=True, capture_output=True, cwd=ROOT)
    r = subprocess.run(install + ["show-target", "--root", str(root), "--name", "box"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("[box]\ntransport = tcp\n")
    conf = str(root / "etc/hostlink/hostlink.conf")
    assert "tls = required" in open(conf).read()
    assert ("tls_fingerprint = %s" % tls.fingerprint(str(root / "etc/hostlink/hostlink.crt"))) in r.stdout


def test_tty_over_tcp_runs_an_interactive_program(remote):
    import fcntl
    import pty
    import select
    import termios
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(remote.cmd("--tty", "exec", "python3 -q"), stdin=follower,
                            stdout=follower, stderr=follower, env=remote.tenv)
    os.close(follower)
    seen = b""

    def expect(text, timeout=20):
        nonlocal seen
        import time
        end = time.monotonic() + timeout
        while text not in seen and time.monotonic() < end:
            if select.select([leader], [], [], 0.5)[0]:
                try:
                    seen += os.read(leader, 4096)
                except OSError:
                    break
        assert text in seen, seen
    expect(b">>> ")
    os.write(leader, b"import os; print(6*7, os.isatty(0), os.get_terminal_size().columns)\r")
    expect(b"42 True 100")
    os.write(leader, b"exit()\r")
    assert proc.wait(20) == 0
    os.close(leader)
