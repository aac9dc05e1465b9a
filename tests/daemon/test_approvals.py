"""Approvals with a real daemon: ask rules approved, denied, timed out, --always, watch, notify."""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, wait_for

TOKEN = "asker-token-0123456789abcdef"


@pytest.fixture
def d(make_daemon, tmp_path):
    notify = tmp_path / "notified"
    return make_daemon(
        "approval_timeout_ms = 4000\n"
        "approval_notify = env | grep ^HOSTLINK_ >> %s\n"
        "[client asker]\ntoken = %s\nask = /usr/bin/touch **\nask = /usr/bin/echo **\n"
        "allow = /usr/bin/true\nask_shell = true\n" % (notify, TOKEN))


def approve(d, *args):
    return subprocess.run([sys.executable, "-m", "hostlink.daemon.admin_client", "--socket",
                           str(d.base / "admin" / "admin.sock"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=30)


def start(d, *args):
    return d.popen("-k", TOKEN, *args)


def waiting_id(d):
    def find():
        r = approve(d, "list", "--json")
        lines = [json.loads(l) for l in r.stdout.splitlines()]
        return lines[0]["id"] if lines else None
    return wait_for(find, 10, "a waiting request")


def test_approved_request_runs(d, tmp_path):
    target = tmp_path / "made"
    proc = start(d, "exec", "--argv", "touch", str(target))
    ident = waiting_id(d)
    assert not target.exists()
    r = approve(d, "approve", ident)
    assert r.returncode == 0, r.stderr
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and target.exists()
    assert ("waiting for approval %s on " % ident).encode() in err and b"touch" in err


def test_denied_request_names_reason(d, tmp_path):
    proc = start(d, "exec", "--argv", "touch", str(tmp_path / "never"))
    r = approve(d, "deny", waiting_id(d), "--reason", "not today")
    assert r.returncode == 0
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 6 and b"not today" in err and not (tmp_path / "never").exists()


def test_timeout_is_a_denial(d):
    start_t = time.monotonic()
    proc = start(d, "exec", "echo shell string")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 6 and b"no decision within 4000 ms" in err
    assert 3.5 < time.monotonic() - start_t < 15


def test_allowed_rule_needs_no_person(d):
    assert d.run("-k", TOKEN, "exec", "--argv", "true").returncode == 0


def test_always_stores_an_exact_rule(d, tmp_path):
    proc = start(d, "exec", "--argv", "echo", "exactly", "this")
    r = approve(d, "approve", waiting_id(d), "--always")
    assert r.returncode == 0 and '"exe": {"dev": ' in r.stdout and "policy.d" in r.stdout
    assert proc.communicate(timeout=20)[0] == b"exactly this\n"
    again = d.run("-k", TOKEN, "exec", "--argv", "echo", "exactly", "this", timeout=10)
    assert again.stdout == b"exactly this\n" and b"waiting" not in again.stderr
    other = start(d, "exec", "--argv", "echo", "something", "else")
    approve(d, "deny", waiting_id(d))
    assert other.wait(20) == 6
    rule_file = d.base / "policy.d" / "asker.json"
    assert json.loads(rule_file.read_text())["always"][0]["exe"]["path"] == "/usr/bin/echo"
    assert oct(rule_file.stat().st_mode & 0o777) == "0o600"
    d.signal(__import__("signal").SIGHUP)  # the drop-in is read back on reload
    time.sleep(0.3)
    assert d.run("-k", TOKEN, "exec", "--argv", "echo", "exactly", "this", timeout=10).returncode == 0


def test_always_refused_for_a_changeable_script(d, tmp_path):
    script = tmp_path / "s.sh"
    script.write_text("echo hi\n")
    os.chmod(script, 0o666)
    proc = start(d, "exec", "--argv", "echo", str(script))
    ident = waiting_id(d)
    r = approve(d, "approve", ident, "--always")
    assert r.returncode == 1 and "can be changed by someone other than root" in r.stderr
    approve(d, "deny", ident)
    proc.wait(20)


def test_watch_json_shows_new_requests_and_notify_env(d, tmp_path):
    watch = subprocess.Popen([sys.executable, "-m", "hostlink.daemon.admin_client", "--socket",
                              str(d.base / "admin" / "admin.sock"), "list", "--watch", "--json"],
                             stdout=subprocess.PIPE, cwd=ROOT, text=True)
    time.sleep(0.5)
    proc = start(d, "exec", "--argv", "echo", "watched")
    line = json.loads(watch.stdout.readline())
    assert line["client"] == "asker" and "echo watched" in line["text"]
    watch.kill()
    approve(d, "approve", line["id"])
    assert proc.communicate(timeout=20)[0] == b"watched\n"
    notified = wait_for(lambda: (tmp_path / "notified").exists() and (tmp_path / "notified").read_text(),
                        10, "notify command")
    assert "HOSTLINK_APPROVAL_ID=%s" % line["id"] in notified and "HOSTLINK_CLIENT=asker" in notified
    assert TOKEN not in notified
    lines = d.audit_lines(until=lambda ls: any(l.get("result") == "approved" for l in ls))
    events = [l.get("result") for l in lines if l.get("event") == "approval"]
    assert "waiting" in events and "approved" in events


def test_admin_socket_is_root_only(d):
    st = os.stat(d.base / "admin" / "admin.sock")
    assert st.st_mode & 0o777 == 0o600 and os.stat(d.base / "admin").st_mode & 0o777 == 0o700
