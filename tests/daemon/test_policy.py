"""Per-client tokens and policy, with a real daemon: rules, directories, users, env, limits."""

import os
import signal
import time

import pytest

from tests.conftest import pid_alive, wait_for

CLIENTS = """
[client ci]
token = ci-token-0123456789abcdef
allow = /usr/bin/git **
allow = /usr/bin/echo hello *
cwd_allow = /tmp /var/tmp

[client ops]
token = ops-token-0123456789abcdef
deny = /usr/bin/rm **
allow_shell = true
run_as = nobody
env_allow = FOO* LD_PRELOAD
max_timeout_ms = 800

[client watcher]
token = watch-token-0123456789abcdef
ping_only = true
"""


@pytest.fixture
def d(make_daemon):
    return make_daemon(CLIENTS)


def as_client(d, token, *args, **kw):
    return d.run("-k", token, *args, **kw)


def test_each_client_has_its_own_token(d):
    assert as_client(d, "ci-token-0123456789abcdef", "exec", "--argv", "git", "--version").returncode == 0
    assert as_client(d, d.token, "exec", "true").returncode == 0  # auth_token stays the default client
    names = lambda ls: {l.get("client") for l in ls}  # noqa: E731
    assert {"ci", "default"} <= names(d.audit_lines(until=lambda ls: {"ci", "default"} <= names(ls)))


def test_revoking_one_client_keeps_the_others(d):
    d.conf.write_text(d.conf.read_text().replace("token = ops-token-0123456789abcdef",
                                                 "token = ops-rotated-0123456789abcdef"))
    d.signal(signal.SIGHUP)
    time.sleep(0.3)
    assert as_client(d, "ops-token-0123456789abcdef", "exec", "true").returncode == 3
    assert as_client(d, "ci-token-0123456789abcdef", "exec", "--argv", "git", "--version").returncode == 0


def test_allow_rules_match_resolved_argv(d):
    tok = "ci-token-0123456789abcdef"
    assert as_client(d, tok, "exec", "--argv", "echo", "hello", "world").stdout == b"hello world\n"
    r = as_client(d, tok, "exec", "--argv", "echo", "hello", "a", "b")
    assert r.returncode == 6 and b"no allow rule matches /usr/bin/echo hello a b" in r.stderr
    r = as_client(d, tok, "exec", "--argv", "ls", "/")
    assert r.returncode == 6 and b"client ci" in r.stderr


def test_allowlisted_client_may_not_send_shell_strings(d):
    r = as_client(d, "ci-token-0123456789abcdef", "exec", "git --version")
    assert r.returncode == 6 and b"shell strings cannot be matched safely" in r.stderr


def test_deny_rule_names_itself(d):
    r = as_client(d, "ops-token-0123456789abcdef", "exec", "--argv", "rm", "-rf", "/tmp/x")
    assert r.returncode == 6
    assert b"refused by rule deny = /usr/bin/rm ** (" in r.stderr and b".conf:" in r.stderr


def test_cwd_allow(d):
    tok = "ci-token-0123456789abcdef"
    r = as_client(d, tok, "-w", "/etc", "exec", "--argv", "git", "--version")
    assert r.returncode == 6 and b"may not run in /etc" in r.stderr
    assert as_client(d, tok, "-w", "/tmp", "exec", "--argv", "git", "--version").returncode == 0


def test_run_as_user_gets_login_environment(d):
    r = as_client(d, "ops-token-0123456789abcdef", "exec", 'id -u; echo "$USER $LOGNAME $HOME"')
    assert r.stdout.decode().splitlines() == ["65534", "nobody nobody /nonexistent"]


def test_env_allow(d):
    tok = "ops-token-0123456789abcdef"
    assert as_client(d, tok, "-e", "FOO_X=1", "exec", "echo $FOO_X").stdout == b"1\n"
    r = as_client(d, tok, "-e", "BAR=1", "exec", "true")
    assert r.returncode == 6 and b"may not set BAR" in r.stderr
    assert as_client(d, tok, "-e", "LD_PRELOAD=", "exec", "true").returncode == 0
    r = d.run("-e", "LD_PRELOAD=/x.so", "exec", "true")  # the default client: never
    assert r.returncode == 6


def test_client_max_timeout(d):
    start = time.monotonic()
    r = as_client(d, "ops-token-0123456789abcdef", "-T", "60000", "exec", "sleep 10")
    assert r.returncode == 5 and time.monotonic() - start < 5
    assert b"-T 60000 exceeds this daemon's max_timeout_ms; it runs with 800 ms" in r.stderr


def test_ping_only(d):
    tok = "watch-token-0123456789abcdef"
    assert as_client(d, tok, "ping").returncode == 0
    r = as_client(d, tok, "exec", "true")
    assert r.returncode == 6 and b"ping_only" in r.stderr


def test_client_token_file_must_be_private(make_daemon, tmp_path):
    tf = tmp_path / "tok"
    tf.write_text("file-token-0123456789abcdef\n")
    os.chmod(tf, 0o644)
    d = make_daemon("[client f]\ntoken_file = %s\n" % tf, start=False)
    import subprocess, sys
    from tests.conftest import ROOT
    r = subprocess.run([sys.executable, "-m", "hostlink.daemon", "-c", str(d.conf), "--check-config"],
                       capture_output=True, cwd=ROOT)
    assert r.returncode == 2 and b"chmod 600" in r.stderr
    os.chmod(tf, 0o600)
    d.start()
    assert as_client(d, "file-token-0123456789abcdef", "exec", "true").returncode == 0


def test_only_its_own_client_may_signal_a_command(d, tmp_path):
    import socket
    from hostlink.wire import protocol as p
    pidfile = tmp_path / "pid"
    proc = d.popen("exec", "echo $$ > %s; sleep 30" % pidfile)
    other = "ops-token-0123456789abcdef"
    try:
        pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "pid"))

        def kill(token, target, signum=15):
            conn = p.Connection(p.CLIENT)
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(d.socket)
                s.sendall(conn.send(p.Auth(token, "t")) + conn.send(p.Kill(target, signum)))
                while True:
                    ev = conn.next_event()
                    if ev is p.NEED_DATA:
                        conn.receive_data(s.recv(65536))
                    elif not isinstance(ev, p.Ok):
                        return ev
        assert kill(other, pid).code == "not_found"  # another client's command
        assert kill(d.token, pid, 99).code == "not_found"  # no such signal
        assert kill(d.token, 1).code == "not_found"  # not a command of this daemon's
        assert pid_alive(pid)
        assert isinstance(kill(d.token, pid), p.Reply)
        wait_for(lambda: not pid_alive(pid), 10, "the command to end")
    finally:
        proc.kill()
        proc.wait()
