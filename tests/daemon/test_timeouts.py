"""Timeouts that fit the work: -T 0 and HOSTLINK_TIMEOUT_MS=0 for none, the variable as the default
-T, no default timeout for --tty and shims, a shim's own --timeout; max_timeout_ms caps them all.

The daemon's default_timeout_ms is 300 ms here, so a command of 2 s outlives it only without it.
"""

import os
import subprocess

import pytest

CONF = "default_timeout_ms = 300\nmax_timeout_ms = 60000"


@pytest.fixture
def d(make_daemon):
    return make_daemon(CONF)


def _granted(d, command):
    """The timeout_ms the daemon ran ``command`` with, from its audit line."""
    records = d.audit_lines(until=lambda rs: any(r.get("command") == command for r in rs))
    return next(r for r in records if r.get("command") == command)["timeout_ms"]


def test_the_daemon_default_still_applies_when_nothing_is_asked(d):
    assert d.run("exec", "sleep 2").returncode == 5
    assert _granted(d, "sleep 2") == 300


def test_environment_sets_the_default_and_minus_t_wins(d):
    assert d.run("exec", "sleep 2 # a", env=d.env(HOSTLINK_TIMEOUT_MS="0")).returncode == 0
    assert d.run("exec", "sleep 2 # b", env=d.env(HOSTLINK_TIMEOUT_MS="5000")).returncode == 0
    r = d.run("-T", "200", "exec", "sleep 2 # c", env=d.env(HOSTLINK_TIMEOUT_MS="0"))
    assert r.returncode == 5
    assert d.run("-T", "0", "exec", "sleep 2 # d").returncode == 0
    # None asked: the daemon's cap (max_timeout_ms) is what it runs with.
    assert [_granted(d, "sleep 2 # " + n) for n in "abcd"] == [60000, 5000, 200, 60000]
    r = d.run("exec", "true", env=d.env(HOSTLINK_TIMEOUT_MS="soon"))
    assert r.returncode == 7 and b"HOSTLINK_TIMEOUT_MS must be a whole number" in r.stderr


def test_a_terminal_session_has_no_default_timeout(d):
    r = d.run("--tty", "exec", "sleep 2; echo through")
    assert (r.returncode, r.stdout.strip()) == (0, b"through"), r.stderr
    assert _granted(d, "sleep 2; echo through") == 60000


def test_cap_holds_for_none(make_daemon):
    d = make_daemon("default_timeout_ms = 300\nmax_timeout_ms = 500")
    assert d.run("-T", "0", "exec", "sleep 3").returncode == 5


def test_shims_run_without_timeout_unless_given_one(d, tmp_path):
    shims = tmp_path / "bin"
    shims.mkdir()
    app = shims / "hostlink"
    app.write_bytes(open(d.client_app, "rb").read())
    os.chmod(app, 0o755)

    def shim(*args):
        return subprocess.run([str(app), "shim", *args], capture_output=True, env=d.env())
    assert shim("install", "sleep").returncode == 0
    assert subprocess.run([str(shims / "sleep"), "2"], env=d.env()).returncode == 0
    r = subprocess.run([str(shims / "sleep"), "2"], env=d.env(HOSTLINK_TIMEOUT_MS="200"))
    assert r.returncode == 124  # the shim's -x codes: 124 on timeout
    r = shim("install", "sleep", "--timeout", "200")
    assert r.returncode == 0 and b"(timeout 200 ms)" in r.stdout
    assert (shims / ".sleep.hostlink").read_text().endswith("timeout_ms = 200\n")
    assert subprocess.run([str(shims / "sleep"), "2"], env=d.env()).returncode == 124
    # Its own timeout wins over the environment's.
    assert subprocess.run([str(shims / "sleep"), "2"],
                          env=d.env(HOSTLINK_TIMEOUT_MS="0")).returncode == 124
    assert b"(timeout 200 ms)" in shim("list", "--dir", str(shims)).stdout
    assert shim("install", "sleep", "--timeout", "0").returncode == 0
    assert subprocess.run([str(shims / "sleep"), "2"], env=d.env()).returncode == 0
    assert shim("remove", "sleep", "--dir", str(shims)).returncode == 0
    assert sorted(os.listdir(shims)) == ["hostlink"]  # its settings went with it
    r = shim("install", "sleep", "--timeout", "soon")
    assert r.returncode == 7 and b"--timeout must be a whole number" in r.stderr
