"""Tokens between -k, targets.conf and HOSTLINK_TOKEN; and what the client answers under the
name hostlink-cli, where the first hostlink's scripts read its words."""

import json
import os
import shutil
import subprocess

import pytest

from tests.daemon.test_remote import tcp_daemon


@pytest.fixture
def cli(client_app, tmp_path):
    """The client file under the name hostlink-cli."""
    path = tmp_path / "bin" / "hostlink-cli"
    path.parent.mkdir()
    shutil.copy(client_app, str(path))
    return str(path)


def targets(tmp_path, d, token=True):
    path = tmp_path / "targets.conf"
    path.write_text("[box]\ntransport = unix\nsocket = %s\n%s\n[bare]\ntransport = unix\nsocket = %s\n"
                    % (d.socket, "token = %s" % d.token if token else "", d.socket))
    os.chmod(path, 0o600)
    return str(path)


def test_a_targets_token_beats_the_environments_for_hostlink(daemon, tmp_path, cli):
    env = daemon.env(HOSTLINK_TARGETS=targets(tmp_path, daemon), HOSTLINK_TOKEN="the-local-token")
    r = daemon.run("-t", "box", "exec", "echo remote", env=env)
    assert r.stdout == b"remote\n", r.stderr
    assert daemon.run("-t", "bare", "exec", "true", env=env).returncode == 3  # env serves tokenless
    assert daemon.run("-t", "bare", "exec", "true", env=dict(env, HOSTLINK_TOKEN=daemon.token)).returncode == 0
    assert daemon.run("-k", "wrong", "-t", "box", "exec", "true", env=env).returncode == 3  # -k first
    assert daemon.run("-k", daemon.token, "exec", "true", env=env).returncode == 0
    # Under the name hostlink-cli, the first hostlink's order: HOSTLINK_TOKEN beats the target's.
    r = subprocess.run([cli, "-t", "box", "exec", "true"], env=env, capture_output=True)
    assert r.returncode == 125 and b"authentication failed" in r.stderr


def test_its_answers_under_its_name(daemon, tmp_path, cli):
    env = daemon.env(HOSTLINK_TARGETS=targets(tmp_path, daemon))
    run = lambda *a: subprocess.run([cli, *a], env=env, capture_output=True)  # noqa: E731
    assert json.loads(run("-j", "targets").stdout) == [
        {"name": "box", "transport": "unix", "socket": daemon.socket},
        {"name": "bare", "transport": "unix", "socket": daemon.socket}]  # no local entry
    r = run("-j", "exec", "exit 3")  # its -j exec: the JSON says how it went, the exit is 0
    assert (r.returncode, json.loads(r.stdout)["exit_code"]) == (0, 3)
    assert run("exec", "exit 3").returncode == 3
    src = tmp_path / "src.txt"
    src.write_text("hello")
    r = run("-j", "put", str(src), str(tmp_path / "put.txt"))
    assert json.loads(r.stdout) == dict(json.loads(r.stdout), status="ok", bytes_written=5)
    r = run("-j", "get", str(tmp_path / "put.txt"), str(tmp_path / "got.txt"))
    got = json.loads(r.stdout)
    assert (got["status"], got["size"], got["content"]) == ("ok", 5, "aGVsbG8=") and r.stderr == b""
    df = json.loads(run("-j", "df", str(tmp_path / "not/yet")).stdout)
    assert df["resolved"] == str(tmp_path) and df["status"] == "ok" and df["free_bytes"] > 0
    r = run("get-stream", str(tmp_path / "nope"), str(tmp_path / "nope2"))
    assert r.returncode == 1 and b"cannot open %s on the host: No such file or directory" % \
        str(tmp_path / "nope").encode() in r.stderr and b"Errno" not in r.stderr


def test_its_client_name_reaches_a_plain_tcp_daemon_with_a_warning(make_daemon, cli):
    d = tcp_daemon(make_daemon, "optional")
    env = d.env(HOSTLINK_SOCKET=None)
    r = subprocess.run([cli, "-a", "127.0.0.1:%d" % d.port, "exec", "echo plain"], env=env,
                       capture_output=True)
    assert r.stdout == b"plain\n" and b"the token travels in clear" in r.stderr, r.stderr
    r = d.run("-a", "127.0.0.1:%d" % d.port, "exec", "true", env=env)  # hostlink itself: TLS or nothing
    assert r.returncode == 2 and b"fingerprint" in r.stderr
