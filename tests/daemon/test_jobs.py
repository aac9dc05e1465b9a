"""Detached jobs with a real daemon: ids, tail -f, wait codes, cancel, spool cap, retention,
isolation between clients, and jobs that outlive a daemon restart."""

import json
import os
import signal
import time

import pytest

from tests.conftest import pid_alive, wait_for


@pytest.fixture
def d(make_daemon, tmp_path):
    return make_daemon("job_spool_dir = %s\n" % (tmp_path / "jobs"))


def start(d, command, *flags, **kw):
    r = d.run(*flags, "exec", "-D", command, **kw)
    assert r.returncode == 0, r.stderr
    ident = r.stdout.decode().strip()
    assert "\n" not in ident and b"started job " + ident.encode() in r.stderr
    return ident


def status(d, ident, **kw):
    return json.loads(d.run("-j", "job", "status", ident, **kw).stdout)


def test_detach_returns_at_once_and_wait_exits_as_exec(d):
    t = time.monotonic()
    ident = start(d, "sleep 1; echo done; exit 3")
    assert time.monotonic() - t < 1
    assert status(d, ident)["state"] in ("starting", "running")
    assert d.run("job", "wait", ident).returncode == 1
    assert d.run("-x", "job", "wait", ident).returncode == 3
    st = status(d, ident)
    assert (st["state"], st["exit_code"]) == ("exited", 3)
    assert d.run("job", "tail", ident).stdout == b"done\n"


def test_tail_follow_sees_lines_as_written(d):
    ident = start(d, "echo first; sleep 2; echo second")
    proc = d.popen("job", "tail", "-f", ident)
    t = time.monotonic()
    first = proc.stdout.readline()
    assert first == b"first\n" and time.monotonic() - t < 1.5
    rest, _ = proc.communicate(timeout=20)
    assert rest == b"second\n" and proc.returncode == 0


def test_tail_stderr(d):
    ident = start(d, "echo out; echo err >&2")
    d.run("job", "wait", ident)
    assert d.run("job", "tail", "--stderr", ident).stdout == b"err\n"  # a log view, on stdout


def test_job_timeout(d):
    ident = start(d, "echo before; sleep 30", "-T", "500")
    r = d.run("job", "wait", ident, timeout=30)
    assert r.returncode == 5
    assert status(d, ident)["state"] == "timeout"
    assert d.run("job", "tail", ident).stdout == b"before\n"


def test_cancel_kills_the_process_group(d, tmp_path):
    pids = tmp_path / "pids"
    ident = start(d, "sleep 60 & echo $! > %s; echo $$ >> %s; wait" % (pids, pids))
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2, 10, "job to start")
    assert d.run("job", "cancel", ident).returncode == 0
    for pid in map(int, pids.read_text().split()):
        wait_for(lambda: not pid_alive(pid), 10, "process %d to die" % pid)
    wait_for(lambda: status(d, ident)["state"] == "cancelled", 10, "cancelled state")
    r = d.run("job", "cancel", ident)
    assert r.returncode == 1 and b"already ended" in r.stderr


def test_cancel_reaches_what_left_the_process_group(d, tmp_path):
    pidfile = tmp_path / "escaped"
    ident = start(d, "setsid sh -c 'echo $$ > %s; exec sleep 60' & wait" % pidfile)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the escaped child")
    escaped = int(pidfile.read_text())
    assert d.run("job", "cancel", "--kill", ident).returncode == 0
    wait_for(lambda: not pid_alive(escaped), 10, "the child that left the group to die")


def test_spool_cap_drains_without_blocking(make_daemon, tmp_path):
    d = make_daemon("job_spool_dir = %s\njob_max_spool_bytes = 1000\n" % (tmp_path / "jobs"))
    ident = start(d, "head -c 5000000 /dev/zero; echo finished >&2")
    assert d.run("job", "wait", ident, timeout=30).returncode == 0
    st = status(d, ident)
    assert st["stdout_spooled"] + st["stderr_spooled"] == 1000 and st["spool_truncated"]
    assert st["stdout_bytes"] == 5000000


def test_retention_sweeps_finished_jobs(make_daemon, tmp_path):
    d = make_daemon("job_spool_dir = %s\njob_retention_s = 0\n" % (tmp_path / "jobs"))
    ident = start(d, "true")
    d.run("job", "wait", ident)
    time.sleep(1.1)
    assert json.loads(d.run("-j", "job", "list").stdout)["jobs"] == []
    assert not (tmp_path / "jobs" / ident).exists()


def test_another_client_cannot_see_a_job(make_daemon, tmp_path):
    d = make_daemon("job_spool_dir = %s\n[client other]\ntoken = other-token-0123456789\nallow_shell = true\n"
                    % (tmp_path / "jobs"))
    ident = start(d, "sleep 5")
    r = d.run("-k", "other-token-0123456789", "job", "status", ident)
    assert r.returncode == 1 and b"no job" in r.stderr
    assert json.loads(d.run("-k", "other-token-0123456789", "-j", "job", "list").stdout)["jobs"] == []
    assert d.run("-k", "other-token-0123456789", "job", "cancel", ident).returncode == 1
    d.run("job", "cancel", ident)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_job_survives_daemon_restart(d, how):
    ident = start(d, "sleep 2; echo survived")
    d.signal(how)
    d.proc.wait(20)
    d.start()
    assert status(d, ident)["state"] in ("running", "exited")
    assert d.run("job", "wait", ident, timeout=30).returncode == 0
    assert d.run("job", "tail", ident).stdout == b"survived\n"


def test_cancel_after_restart_and_lost(d, tmp_path):
    ident = start(d, "sleep 60")
    d.signal(signal.SIGTERM)
    d.proc.wait(20)
    d.start()
    assert d.run("job", "cancel", ident).returncode == 0
    wait_for(lambda: status(d, ident)["state"] == "cancelled", 10, "cancel after restart")
    lost = start(d, "sleep 60")
    runner = json.loads((tmp_path / "jobs" / lost / "state.json").read_text()) if wait_for(
        lambda: (tmp_path / "jobs" / lost / "state.json").exists(), 10, "state") else None
    os.kill(runner["runner_pid"], signal.SIGKILL)
    wait_for(lambda: status(d, lost)["state"] == "lost", 10, "lost state")
    os.kill(runner["pid"], signal.SIGKILL)


def test_audit_records_job_start_and_end(d):
    ident = start(d, "true")
    d.run("job", "wait", ident)
    events = [(l.get("event"), l.get("job")) for l in d.audit_lines()]
    assert ("job_start", ident) in events
    wait_for(lambda: ("job_end", ident) in [(l.get("event"), l.get("job")) for l in d.audit_lines()],
             10, "job_end audit line")
