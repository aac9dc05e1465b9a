"""Agent ergonomics: shims that run host programs by their own names, and the path map."""

import os
import pty
import subprocess

import pytest


@pytest.fixture
def shimdir(daemon, tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    app = d / "hostlink"
    app.write_bytes(open(daemon.client_app, "rb").read())
    os.chmod(app, 0o755)
    r = subprocess.run([str(app), "shim", "install", "cat", "awk", "tty"], capture_output=True,
                       env=daemon.env())
    assert r.returncode == 0, r.stderr
    return d


def test_shim_runs_host_program_with_exact_args_and_status(daemon, shimdir):
    env = daemon.env()
    program = 'BEGIN { for (i = 1; i < ARGC; i++) printf "%s|", ARGV[i]; exit 3 }'
    r = subprocess.run([str(shimdir / "awk"), program, "a b", "$HOME"], capture_output=True, env=env)
    assert (r.returncode, r.stdout) == (3, b"a b|$HOME|")
    r = subprocess.run([str(shimdir / "cat")], input=b"through stdin\n", capture_output=True, env=env)
    assert r.stdout == b"through stdin\n"


def test_shim_gets_a_terminal(daemon, shimdir):
    leader, follower = pty.openpty()
    proc = subprocess.Popen([str(shimdir / "tty")], stdin=follower, stdout=follower, stderr=follower,
                            env=daemon.env())
    os.close(follower)
    assert proc.wait(20) == 0
    out = os.read(leader, 1000)
    os.close(leader)
    assert out.startswith(b"/dev/pts/")


def test_shim_list_and_remove(daemon, shimdir):
    app = str(shimdir / "hostlink")
    listed = subprocess.run([app, "shim", "list"], capture_output=True).stdout.decode()
    assert [line.split()[:2] for line in listed.splitlines()] == [
        ["awk", str(shimdir / "awk")], ["cat", str(shimdir / "cat")], ["tty", str(shimdir / "tty")]]
    subprocess.run([app, "shim", "remove", "cat"], check=True)
    assert not (shimdir / "cat").exists()
    r = subprocess.run([app, "shim", "remove", "hostlink"], capture_output=True)
    assert r.returncode == 7


def test_shim_never_calls_back_into_hostlink(daemon, shimdir):
    r = daemon.run("exec", "--argv", str(shimdir / "hostlink"), "--version")
    assert r.returncode == 1 and b"would call back into hostlink" in r.stderr


def test_path_map_translates_cwd_and_w(daemon, tmp_path):
    inside, outside = tmp_path / "container-ws", tmp_path / "host-ws"
    (inside / "sub").mkdir(parents=True)
    (outside / "sub").mkdir(parents=True)
    env = daemon.env(HOSTLINK_PATH_MAP="%s=%s" % (inside, outside))
    r = subprocess.run(daemon.cmd("exec", "pwd"), cwd=str(inside / "sub"), env=env, capture_output=True)
    assert r.stdout.decode().strip() == str(outside / "sub"), r.stderr
    r = subprocess.run(daemon.cmd("-w", str(inside / "sub"), "exec", "pwd"), env=env, capture_output=True)
    assert r.stdout.decode().strip() == str(outside / "sub")
    r = subprocess.run(daemon.cmd("exec", "pwd"), cwd="/", env=env, capture_output=True)
    assert r.stdout.decode().strip() != str(outside)  # outside the map: the daemon's default


def test_path_map_missing_dir_names_both(daemon, tmp_path):
    inside, outside = tmp_path / "c", tmp_path / "h"
    (inside / "only-here").mkdir(parents=True)
    outside.mkdir()
    env = daemon.env(HOSTLINK_PATH_MAP="%s=%s" % (inside, outside))
    r = subprocess.run(daemon.cmd("exec", "pwd"), cwd=str(inside / "only-here"), env=env,
                       capture_output=True)
    assert r.returncode == 1
    assert str(outside / "only-here").encode() in r.stderr and str(inside / "only-here").encode() in r.stderr


def test_bad_path_map_is_client_error(daemon):
    r = daemon.run("exec", "true", env=daemon.env(HOSTLINK_PATH_MAP="relative=/x"))
    assert r.returncode == 7 and b"HOSTLINK_PATH_MAP" in r.stderr
