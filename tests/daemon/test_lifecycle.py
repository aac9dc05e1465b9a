"""Daemon life: signals, reload, shutdown, limits, timeouts and hang-ups, against a real hostlinkd."""

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import ROOT, pid_alive, wait_for


def _hostlinkd(*args):
    return subprocess.run([sys.executable, "-m", "hostlink.daemon", *args], cwd=ROOT,
                          capture_output=True, timeout=30)


def test_timeout_kills_grandchildren(daemon, tmp_path):
    pids = tmp_path / "pids"
    start = time.monotonic()
    r = daemon.run("-T", "700", "exec",
                   "(trap '' TERM; sleep 60) & echo $! > %s; sleep 60 & echo $! >> %s; wait" % (pids, pids))
    assert r.returncode == 5, r.stderr
    assert b"timed out" in r.stderr
    assert time.monotonic() - start < 10
    for pid in map(int, pids.read_text().split()):
        wait_for(lambda: not pid_alive(pid), 10, "grandchild %d to die" % pid)


def test_timeout_on_term_is_not_held_for_grace(make_daemon):
    d = make_daemon("kill_grace_ms = 8000")
    start = time.monotonic()
    r = d.run("-T", "500", "exec", "echo before; sleep 30")
    assert r.returncode == 5 and r.stdout == b"before\n"
    assert time.monotonic() - start < 5


def test_client_sigkill_kills_remote_command(daemon, tmp_path):
    pidfile = tmp_path / "pid"
    proc = daemon.popen("exec", "echo $$ > %s; sleep 60" % pidfile)
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "pid file"))
    assert pid_alive(pid)
    proc.kill()
    proc.wait()
    wait_for(lambda: not pid_alive(pid), 10, "remote command to die after client SIGKILL")


@pytest.mark.parametrize("flags", [(), ("--relay",)])
def test_sigint_is_forwarded(daemon, tmp_path, flags):
    ready = tmp_path / "ready"
    proc = daemon.popen("-x", "exec", *flags,
                        "trap 'echo got-int; exit 7' INT; touch %s; sleep 30" % ready)
    wait_for(ready.exists, 10, "command to start")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 7 and b"got-int" in out


def _not_reading_stdin(daemon, tmp_path, command="sleep 60"):
    """(client, command pid): a relayed command that leaves its stdin unread while the client
    is fed without end, once the pipe, the socket and the client's buffer are full."""
    pidfile = tmp_path / "pid"
    proc = daemon.popen("-x", "--relay", "exec",
                        "echo $$ > %s; %s; cat > /dev/null" % (pidfile, command),
                        stdin=subprocess.PIPE)

    def feed():
        try:
            while True:
                proc.stdin.write(b"\0" * (1 << 20))
        except (OSError, ValueError):
            pass  # the client is gone
    threading.Thread(target=feed, daemon=True).start()
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "pid file"))
    time.sleep(0.5)
    return proc, pid


def test_hang_up_seen_while_the_command_does_not_read_its_stdin(daemon, tmp_path):
    # Stdin waits in the socket behind a full pipe: the end of the connection must not.
    proc, pid = _not_reading_stdin(daemon, tmp_path)
    proc.kill()
    proc.wait()
    wait_for(lambda: not pid_alive(pid), 10, "the command to end after its client hung up")


def test_sigint_reaches_a_command_that_does_not_read_its_stdin(daemon, tmp_path):
    # The command's connection is stuck behind its stdin: the signal goes on a connection of its own.
    proc, pid = _not_reading_stdin(daemon, tmp_path, "trap 'echo got-int >&2; exit 7' INT; sleep 60")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 7
    assert b"got-int" in proc.stderr.read()
    record = daemon.audit_lines(until=lambda ls: any(l.get("event") == "signal" for l in ls))
    assert [(l["pid"], l["signal"], l["result"]) for l in record if l.get("event") == "signal"] \
        == [(pid, signal.SIGINT, "ok")]


def test_second_sigint_gives_up_when_the_signal_cannot_go_aside(make_daemon, tmp_path):
    # No room for a second connection: the signal waits behind stdin in the command's own; the
    # client says so, a second SIGINT makes it leave, and the daemon ends the command.
    d = make_daemon("max_connections = 1")
    proc, pid = _not_reading_stdin(d, tmp_path)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.5)  # past the client's patience: it says why nothing happens
    assert proc.poll() is None  # one SIGINT is forwarded, not taken as the client's own
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 130
    assert b"press Ctrl-C again to leave" in proc.stderr.read()
    wait_for(lambda: not pid_alive(pid), 10, "the command to end after its client left")


def test_server_busy_at_max_concurrent(make_daemon, tmp_path):
    d = make_daemon("max_concurrent = 2")
    running = [d.popen("exec", "sleep 30") for _ in range(2)]
    wait_for(lambda: _running() == 2, 10, "two commands running")
    r = d.run("--no-wait", "exec", "true")  # without it, it would wait (test_slots.py)
    assert r.returncode == 4 and b"server busy" in r.stderr
    for p in running:
        p.kill()
        p.wait()
    wait_for(lambda: d.run("exec", "true").returncode == 0, 10, "a free slot")


def _running():
    out = subprocess.run(["pgrep", "-f", "-c", "^sleep 30$"], capture_output=True).stdout
    return int(out or 0)


def test_sighup_rotates_token_without_dropping_commands(daemon):
    old = daemon.token
    long = daemon.popen("exec", "sleep 1; echo survived")
    time.sleep(0.3)
    daemon.write_conf(token="new-token-after-rotation")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.run("exec", "true").returncode == 0, 10, "new token to work")
    assert daemon.run("-k", old, "exec", "true").returncode == 3
    out, _ = long.communicate(timeout=20)
    assert long.returncode == 0 and out == b"survived\n"


def test_sighup_with_broken_config_keeps_running(daemon):
    daemon.conf.write_text(daemon.conf.read_text() + "bogus_key = 1\n")
    daemon.signal(signal.SIGHUP)
    time.sleep(0.3)
    assert daemon.run("exec", "true").returncode == 0
    assert "reload refused" in daemon.log.read_text()


def test_sigterm_lets_running_command_finish(make_daemon):
    d = make_daemon("shutdown_grace_ms = 5000")
    proc = d.popen("exec", "sleep 1; echo finished")
    time.sleep(0.3)
    d.signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert out == b"finished\n" and proc.returncode == 0
    assert d.proc.wait(20) == 0
    assert not os.path.exists(d.socket)


def test_sigterm_kills_commands_past_grace(make_daemon, tmp_path):
    d = make_daemon("shutdown_grace_ms = 300\nkill_grace_ms = 300")
    pidfile = tmp_path / "pid"
    d.popen("exec", "echo $$ > %s; exec sleep 60" % pidfile)
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "pid"))
    d.signal(signal.SIGTERM)
    assert d.proc.wait(20) == 0
    wait_for(lambda: not pid_alive(pid), 10, "command killed at shutdown")


def test_stale_socket_replaced_at_start(make_daemon):
    d = make_daemon(start=False)
    os.makedirs(os.path.dirname(d.socket))
    s = socket.socket(socket.AF_UNIX)
    s.bind(d.socket)
    s.close()
    d.start()
    assert d.run("exec", "true").returncode == 0


def test_second_daemon_on_same_socket_refused(daemon, tmp_path):
    r = _hostlinkd("-c", str(daemon.conf))
    assert r.returncode == 2 and b"already listening" in r.stderr
    # The refused one leaves the first one's socket where it is.
    assert daemon.run("ping").returncode == 0


def test_world_readable_config_refused(make_daemon):
    d = make_daemon(start=False)
    os.chmod(d.conf, 0o644)
    r = _hostlinkd("-c", str(d.conf))
    assert r.returncode == 2
    assert b"chmod 600" in r.stderr and str(d.conf).encode() in r.stderr


def test_world_readable_token_file_refused(tmp_path):
    token = tmp_path / "token"
    token.write_text("file-token-0123456789abcdef\n")
    os.chmod(token, 0o640)
    conf = tmp_path / "h.conf"
    conf.write_text("auth_token_file = %s\nsocket = %s/s.sock\n" % (token, tmp_path))
    r = _hostlinkd("-c", str(conf), "--check-config")
    assert r.returncode == 2 and b"chmod 600 " + str(token).encode() in r.stderr
    os.chmod(token, 0o600)
    assert _hostlinkd("-c", str(conf), "--check-config").returncode == 0


def test_check_config_names_line(tmp_path):
    conf = tmp_path / "h.conf"
    conf.write_text("auth_token = x\nshell = /bin/bash\nmax_concurrent = lots\n")
    os.chmod(conf, 0o600)
    r = _hostlinkd("-c", str(conf), "--check-config")
    assert r.returncode == 2
    assert r.stderr.decode().strip() == (
        "hostlinkd: %s:3: bad value for 'max_concurrent': expected a whole number" % conf)
    conf.write_text("auth_token = x\nfrobnicate = 1\n")
    r = _hostlinkd("-c", str(conf), "--check-config")
    assert b":2: unknown key 'frobnicate'" in r.stderr


def test_socket_mode(daemon):
    assert os.stat(daemon.socket).st_mode & 0o777 == 0o660


def test_no_zombies_from_orphans(daemon):
    # The command's child outlives it; the daemon (a subreaper) must reap it when it exits.
    r = daemon.run("exec", "sleep 0.3 & disown; echo $!")
    orphan = int(r.stdout)
    # Gone entirely: a zombie would keep its /proc entry (this machine's PID 1 reaps nothing).
    wait_for(lambda: not os.path.exists("/proc/%d" % orphan), 10, "orphan %d reaped" % orphan)


def test_daemon_version_and_compat_flags(daemon):
    r = _hostlinkd("-V")
    assert r.returncode == 0 and r.stdout.startswith(b"hostlinkd ")
    r = _hostlinkd("-f", "-c", str(daemon.conf), "--check-config")
    assert r.returncode == 0


def test_many_concurrent_commands_each_get_their_own_output(make_daemon):
    d = make_daemon("max_concurrent = 200")
    procs = [d.popen("exec", *(("--relay",) if i % 2 else ()), "sleep 0.2; echo %d" % i)
             for i in range(80)]
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=60)
        assert (p.returncode, out) == (0, b"%d\n" % i), err
    assert "Traceback" not in d.log.read_text()


def test_extra_socket_at_start_on_reload_and_gone_at_stop(make_daemon, tmp_path):
    # OpenClaw's sandbox refuses to mount anything under /run: the daemon also listens elsewhere.
    first, second = tmp_path / "sandbox-a" / "hostlink.sock", tmp_path / "sandbox-b" / "hostlink.sock"
    d = make_daemon("extra_socket = %s" % first)
    for path in (first, d.socket):
        assert d.run("-s", str(path), "exec", "echo hi").stdout == b"hi\n"
    assert stat.S_IMODE(os.stat(first).st_mode) == 0o660
    d.write_conf("extra_socket = %s" % second)
    d.signal(signal.SIGHUP)
    wait_for(lambda: d.run("-s", str(second), "ping").returncode == 0, 10, "the moved extra socket")
    assert not first.exists() and d.run("-s", str(first), "ping").returncode == 2
    d.write_conf("extra_socket = /proc/cannot-bind-here/hostlink.sock")
    d.signal(signal.SIGHUP)
    wait_for(lambda: "cannot listen on /proc/cannot-bind-here" in d.log.read_text(), 10, "the refusal")
    assert d.run("-s", str(second), "ping").returncode == 0
    d.signal(signal.SIGTERM)
    assert d.proc.wait(20) == 0
    assert not second.exists() and not os.path.exists(d.socket)
