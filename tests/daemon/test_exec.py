"""The seed's examples and exit codes, with a real hostlinkd and the real client zipapp.

Behaviour tests run on both paths: descriptors passed to the command ("fds") and framed relay.
"""

import json
import os
import socket
import subprocess
import time

import pytest

PATHS = {"fds": (), "relay": ("--relay",)}


@pytest.fixture(params=sorted(PATHS))
def path_flags(request):
    return PATHS[request.param]


def test_ping_prints_node_and_uptime(daemon):
    r = daemon.run("ping")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "[%s] pong - uptime 0s\n" % socket.gethostname()


def test_ping_json(daemon):
    d = json.loads(daemon.run("-j", "ping").stdout)
    assert d["status"] == "ok" and d["node"] == socket.gethostname() and d["uptime_s"] >= 0


def test_exec_runs_on_host_with_its_shell(daemon, path_flags, tmp_path):
    marker = tmp_path / "marker"
    marker.write_text("on the host\n")
    r = daemon.run("exec", *path_flags, "cat %s; echo $0" % marker)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"on the host\n/bin/bash\n"


def test_exec_with_explicit_socket_and_token(daemon, path_flags):
    env = daemon.env(HOSTLINK_SOCKET=None, HOSTLINK_TOKEN=None)
    r = daemon.run("-s", daemon.socket, "-k", daemon.token, "exec", *path_flags, "echo hello",
                   env=env)
    assert (r.returncode, r.stdout) == (0, b"hello\n"), r.stderr


def test_flags_win_over_environment(daemon):
    env = daemon.env(HOSTLINK_SOCKET="/nonexistent/sock", HOSTLINK_TOKEN="wrong")
    r = daemon.run("-s", daemon.socket, "-k", daemon.token, "exec", "true", env=env)
    assert r.returncode == 0, r.stderr


def test_workdir(daemon, path_flags):
    r = daemon.run("-w", "/tmp", "exec", *path_flags, "pwd")
    assert r.stdout == b"/tmp\n"
    r = daemon.run("exec", "-w", "/usr", *path_flags, "pwd")
    assert r.stdout == b"/usr\n"


def test_missing_workdir_names_it(daemon, path_flags):
    r = daemon.run("-w", "/no/such/dir", "exec", *path_flags, "pwd")
    assert r.returncode == 1
    assert b"/no/such/dir does not exist on the host" in r.stderr


def test_env_repeats(daemon, path_flags):
    r = daemon.run("-e", "MY_VAR=value", "-e", "B=two words", "exec", *path_flags,
                   'echo "$MY_VAR $B"')
    assert r.stdout == b"value two words\n"


def test_bad_env_is_client_error(daemon):
    r = daemon.run("-e", "NOEQUALS", "exec", "true")
    assert r.returncode == 7 and b"-e wants NAME=VALUE" in r.stderr


def test_denied_env_name(daemon):
    r = daemon.run("-e", "LD_PRELOAD=/x.so", "exec", "true")
    assert r.returncode == 6 and b"LD_PRELOAD" in r.stderr


def test_command_env_is_clean(daemon, path_flags):
    env = daemon.env(SECRET_OF_CLIENT="x")
    r = daemon.run("exec", *path_flags, "env", env=env)
    names = {line.split("=", 1)[0] for line in r.stdout.decode().splitlines()}
    assert "SECRET_OF_CLIENT" not in names and "HOSTLINK_TOKEN" not in names
    assert "HOSTLINK_COMMAND" not in names and {"PATH", "HOME", "USER"} <= names


def test_json_shape(daemon):
    r = daemon.run("-j", "exec", "ls -la /")
    d = json.loads(r.stdout)
    for key in ("version", "id", "node", "status", "exit_code", "stdout", "stderr",
                "stdout_truncated", "stderr_truncated", "duration_ms"):
        assert key in d
    assert d["status"] == "ok" and d["exit_code"] == 0 and "etc" in d["stdout"]


def test_json_pipeline_from_seed(daemon):
    sh = ("%s -j exec 'ls -la' | python3 -c \"import sys,json; d=json.load(sys.stdin); "
          "print(d['stdout'])\"" % daemon.client_app)
    import subprocess
    r = subprocess.run(sh, shell=True, env=daemon.env(), capture_output=True)
    assert r.returncode == 0 and b"total" in r.stdout, r.stderr


def test_json_does_not_wait_for_a_background_childs_output(daemon, path_flags):
    # -j keeps what the command wrote before it exited (the socket path reads pipes of its own,
    # --relay has the daemon relay them); a child left running does not hold the answer back.
    start = time.monotonic()
    r = daemon.run("-j", *path_flags, "exec", "(sleep 20; echo late) & echo early; echo warn >&2")
    out = json.loads(r.stdout)
    assert (out["stdout"], out["stderr"], out["exit_code"]) == ("early\n", "warn\n", 0)
    assert time.monotonic() - start < 15


def test_json_failure_and_binary(daemon):
    r = daemon.run("-j", "exec", "printf 'a\\0b\\377'; echo oops >&2; exit 3")
    assert r.returncode == 1
    d = json.loads(r.stdout)
    assert d["exit_code"] == 3 and d["stderr"] == "oops\n"
    import base64
    assert base64.b64decode(d["stdout_base64"]) == b"a\0b\xff"


def test_json_on_connect_failure(daemon):
    r = daemon.run("-j", "-s", "/nonexistent/x.sock", "exec", "true")
    assert r.returncode == 2
    d = json.loads(r.stdout)
    assert d["status"] == "connect_failed" and "/nonexistent/x.sock" in d["error_msg"]


def test_stdin_reaches_command(daemon, path_flags, tmp_path):
    out = tmp_path / "f"
    r = daemon.run("exec", *path_flags, "cat > %s" % out, input=b"data\n")
    assert r.returncode == 0 and out.read_bytes() == b"data\n"


def test_stdin_with_json(daemon):
    d = json.loads(daemon.run("-j", "exec", "tr a-z A-Z", input=b"shout\n").stdout)
    assert d["stdout"] == "SHOUT\n"


def test_ten_megabytes_byte_exact(daemon, path_flags, tmp_path):
    blob = os.urandom(10 * 1024 * 1024)
    src = tmp_path / "blob"
    src.write_bytes(blob)
    r = daemon.run("exec", *path_flags, "cat %s" % src)
    assert r.returncode == 0 and r.stdout == blob
    r = daemon.run("exec", *path_flags, "cat", input=blob)
    assert r.stdout == blob


def test_stdout_and_stderr_at_once_to_a_slow_reader(daemon, tmp_path):
    # Both relay pumps block on a full socket while the client waits on its reader: a frame
    # must go out whole before the other stream's next frame (they once interleaved).
    err = tmp_path / "err"
    size = 40 * 1024 * 1024
    with open(err, "wb") as e:
        proc = daemon.popen("--relay", "exec", "head -c %d /dev/zero & head -c %d /dev/zero >&2; wait"
                            % (size, size), stderr=e)
        time.sleep(1)  # the reader is slow to start: everything between fills up
        got = len(proc.stdout.read())
        assert proc.wait(30) == 0
    assert (got, err.stat().st_size) == (size, size)


def test_a_client_that_waits_for_ok_gets_it(daemon):
    # Our client sends its request with the token and gets Ok with the answer; a client that
    # sends the token alone and waits must not wait for nothing.
    from hostlink.wire import protocol as p
    conn = p.Connection(p.CLIENT)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(daemon.socket)
        s.sendall(conn.send(p.Auth(daemon.token, "patient")))
        conn.receive_data(s.recv(65536))
        assert isinstance(conn.next_event(), p.Ok)
        s.sendall(conn.send(p.Exec(command="echo after-ok", mode="relay")))
        events = []
        while not events or not isinstance(events[-1], (p.Exit, p.Error)):
            event = conn.next_event()
            if event is p.NEED_DATA:
                conn.receive_data(s.recv(65536))
            else:
                events.append(event)
    assert b"".join(bytes(e.data) for e in events if isinstance(e, p.Stdout)) == b"after-ok\n"
    assert events[-1].exit_code == 0


def test_nul_bytes_survive(daemon, path_flags):
    assert daemon.run("exec", *path_flags, "printf 'a\\0b'").stdout == b"a\0b"


def test_words_after_exec_are_joined(daemon, path_flags):
    assert daemon.run("exec", *path_flags, "echo", "a", "b").stdout == b"a b\n"


def test_argv_form_has_no_shell(daemon, path_flags):
    r = daemon.run("exec", "--argv", *path_flags, "printf", "%s|", "$HOME", "a b", "*")
    assert r.stdout == b"$HOME|a b|*|"


def test_exit_codes(daemon, path_flags):
    assert daemon.run("exec", *path_flags, "exit 0").returncode == 0
    assert daemon.run("exec", *path_flags, "exit 42").returncode == 1
    assert daemon.run("-x", "exec", *path_flags, "exit 42").returncode == 42
    assert daemon.run("exec", "-x", *path_flags, "kill -9 $$").returncode == 137


def test_hostlink_cli_name_passes_status(daemon, tmp_path):
    link = tmp_path / "hostlink-cli"
    link.symlink_to(daemon.client_app)
    import subprocess
    r = subprocess.run([str(link), "exec", "exit 42"], env=daemon.env())
    assert r.returncode == 42
    r = subprocess.run([str(link), "-T", "300", "exec", "sleep 5"], env=daemon.env())
    assert r.returncode == 124
    r = subprocess.run([str(link), "-k", "wrong", "exec", "true"], env=daemon.env())
    assert r.returncode == 125


def test_wrong_token_is_exit_3(daemon):
    r = daemon.run("-k", "wrong", "exec", "true")
    assert r.returncode == 3 and b"auth_token in hostlink.conf" in r.stderr


def test_missing_token_is_exit_3(daemon):
    r = daemon.run("exec", "true", env=daemon.env(HOSTLINK_TOKEN=None))
    assert r.returncode == 3 and b"HOSTLINK_TOKEN" in r.stderr


def test_no_socket_is_exit_2_with_hint(daemon, tmp_path):
    r = daemon.run("-s", str(tmp_path / "none.sock"), "exec", "true")
    assert r.returncode == 2
    assert str(tmp_path / "none.sock").encode() in r.stderr and b"hostlinkd" in r.stderr


def test_stale_socket_is_exit_2(daemon, tmp_path):
    path = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()
    r = daemon.run("-s", path, "exec", "true")
    assert r.returncode == 2 and b"refuses connections" in r.stderr


def test_bad_arguments_are_exit_7(daemon):
    assert daemon.run("--bogus", "exec", "true").returncode == 7
    assert daemon.run("exec").returncode == 7
    assert daemon.run("frobnicate").returncode == 7
    assert daemon.run("-T", "soon", "exec", "true").returncode == 7
    r = daemon.run("exec", "  ")
    assert r.returncode == 7 and b"empty" in r.stderr


def test_errors_are_one_line_without_traceback(daemon):
    for args in (("exec", "true"), ("-s", "/x", "ping"), ("--nope",), ("-T", "x", "exec", "t")):
        err = daemon.run(*args, env=daemon.env(HOSTLINK_TOKEN="x")).stderr.decode()
        assert err.count("\n") == 1 and "Traceback" not in err, err


def test_command_not_found(daemon, path_flags):
    r = daemon.run("exec", *path_flags, "no-such-program-xyz")
    assert r.returncode == 1 and b"no-such-program-xyz" in r.stderr
    r = daemon.run("exec", "--argv", *path_flags, "no-such-program-xyz")
    assert r.returncode == 1 and b"not found on the host" in r.stderr


def test_sigpipe_default_disposition(daemon, path_flags):
    r = daemon.run("-x", "exec", *path_flags, "yes | head -1; echo ${PIPESTATUS[0]}")
    assert r.stdout == b"y\n141\n"


def test_command_text_not_in_shell_argv(daemon, path_flags):
    # pgrep -f finds only the client itself (it runs on this same host), never the daemon's shell.
    proc = daemon.popen("exec", *path_flags,
                        "tr '\\0' ' ' < /proc/$$/cmdline; echo; pgrep -f unique-marker-4711")
    out, err = proc.communicate(timeout=20)
    lines = out.decode().splitlines()
    assert "unique-marker" not in lines[0], lines
    assert lines[1:] == [str(proc.pid)], (lines, err)


def test_tty_stays_a_tty(daemon):
    import pty
    import subprocess
    leader, follower = pty.openpty()
    proc = subprocess.Popen(daemon.cmd("exec", "test -t 0 && test -t 1 && echo tty-ok"),
                            stdin=follower, stdout=follower, stderr=follower, env=daemon.env())
    os.close(follower)
    proc.wait(20)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.returncode == 0 and b"tty-ok" in out


def test_audit_records_request(daemon):
    daemon.run("exec", "echo audited")
    daemon.run("-k", "bad", "exec", "true")
    lines = daemon.audit_lines(until=lambda ls: any(l.get("command") == "echo audited" and
                                                    l["event"] == "exec" for l in ls)
                               and any(l.get("result") == "auth_failed" for l in ls))
    ok = [l for l in lines if l.get("command") == "echo audited" and l["event"] == "exec"][0]
    assert ok["client"] == "default" and ok["exit_code"] == 0 and ok["peer_uid"] == os.getuid()
    # Its start was recorded before it ran: a running command is visible (issue 16).
    start = [l for l in lines if l.get("command") == "echo audited" and l["event"] == "exec_start"]
    assert [s["request"] for s in start] == [ok["request"]] and start[0]["result"] == "started"
    assert ok["peer_pid"] > 0 and "duration_ms" in ok
    bad = [l for l in lines if l.get("result") == "auth_failed"]
    assert bad and all(daemon.token not in json.dumps(l) for l in lines)
    assert oct(daemon.audit.stat().st_mode & 0o777) == "0o600"


def test_shell_missing_on_the_host_is_named(make_daemon):
    d = make_daemon(start=False)
    d.write_conf("shell = /nonexistent/bash-xyz")
    d.conf.write_text(d.conf.read_text().replace("shell = /bin/bash\n", ""))
    d.start()
    r = d.run("exec", "true")
    assert r.returncode == 1 and b"/nonexistent/bash-xyz: command not found on the host" in r.stderr


@pytest.mark.parametrize("flags", [(), ("--relay",)])
def test_closed_stdin_is_not_confused_with_the_socket(daemon, flags):
    # With fd 0 closed, the connection must not take its number and be read as stdin.
    r = subprocess.run(daemon.cmd("exec", *flags, "cat; echo done"), env=daemon.env(),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=20,
                       preexec_fn=lambda: os.close(0))
    assert (r.returncode, r.stdout) == (0, b"done\n"), r.stderr


def test_fanout_with_closed_stdin(make_daemon, tmp_path):
    from tests.daemon.test_remote import tcp_daemon, write_targets
    ds = {n: tcp_daemon(make_daemon, "required", name=n) for n in ("a", "b", "c")}
    targets = write_targets(tmp_path / "t.conf", ds)
    env = ds["a"].env(HOSTLINK_SOCKET=None, HOSTLINK_TOKEN=None, HOSTLINK_TARGETS=targets)
    for _ in range(5):
        r = subprocess.run(ds["a"].cmd("-t", "a,b,c", "exec", "echo one"), env=env, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=30, preexec_fn=lambda: os.close(0))
        assert r.returncode == 0 and sorted(r.stdout.split(b"\n")[:3]) == [b"[a] one", b"[b] one", b"[c] one"], r.stderr
