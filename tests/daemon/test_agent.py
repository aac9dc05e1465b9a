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


def _as_agent():
    """subprocess arguments that run as uid 1000, as an agent in a container does."""
    return {"user": 1000, "group": 1000, "extra_groups": []}


def test_shim_names_that_would_shadow_a_shell_or_hostlink_are_refused(daemon, shimdir):
    app = str(shimdir / "hostlink")
    for name in ("sh", "bash", "dash", "zsh", "env", "hostlink", "hostlink-cli", "python3",
                 "python3.11", ".hidden"):
        r = subprocess.run([app, "shim", "install", name], capture_output=True)
        assert r.returncode == 7 and b"cannot be a shim" in r.stderr, (name, r.stderr)
        assert not os.path.islink(shimdir / name)


def test_shim_list_shows_every_shim_on_path_and_says_when_none(daemon, shimdir, tmp_path):
    app = str(shimdir / "hostlink")
    other = tmp_path / "other"
    other.mkdir()
    assert subprocess.run([app, "shim", "install", "head", "--dir", str(other)],
                          capture_output=True).returncode == 0
    env = {"PATH": "%s:%s" % (other, os.environ["PATH"]), "HOME": str(tmp_path)}
    listed = subprocess.run([app, "shim", "list"], capture_output=True, env=env).stdout.decode()
    assert [line.split()[0] for line in listed.splitlines()] == ["awk", "cat", "tty", "head"]
    for name in ("awk", "cat", "tty", "head"):
        assert subprocess.run([app, "shim", "remove", name], env=env).returncode == 0
    r = subprocess.run([app, "shim", "list"], capture_output=True, env=env)
    assert r.returncode == 0 and r.stdout == b""
    assert r.stderr.startswith(b"hostlink: no shims on PATH or in %s" % bytes(shimdir))


@pytest.fixture
def public_dir():
    """A directory other users may enter (pytest's own tmp root is 0700)."""
    import pathlib
    import shutil
    import tempfile
    path = pathlib.Path(tempfile.mkdtemp(prefix="hostlink-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_shims_go_where_the_agent_can_write(daemon, public_dir):
    # The client's directory belongs to root (a read-only workspace for the agent): the shims go
    # to ~/.local/bin, and without a home we may write in, the error names the way out.
    tmp_path = public_dir
    bindir = tmp_path / "root-owned"
    bindir.mkdir()
    app = bindir / "hostlink"
    app.write_bytes(open(daemon.client_app, "rb").read())
    os.chmod(app, 0o755)
    home = tmp_path / "agent-home"
    home.mkdir()
    os.chown(home, 1000, 1000)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    r = subprocess.run([str(app), "shim", "install", "cat"], capture_output=True, env=env, **_as_agent())
    link = home / ".local" / "bin" / "cat"
    assert r.returncode == 0 and os.path.realpath(link) == str(app), r.stderr
    assert b"is not on PATH; add it: export PATH=" in r.stderr
    env["PATH"] = "%s:/usr/bin:/bin" % link.parent
    r = subprocess.run([str(app), "shim", "list"], capture_output=True, env=env, **_as_agent())
    assert r.stdout.split() == [b"cat", bytes(link)]
    env["HOME"] = "/nonexistent-home"
    r = subprocess.run([str(app), "shim", "install", "tac"], capture_output=True, env=env, **_as_agent())
    assert r.returncode == 7 and str(bindir).encode() in r.stderr and b"--dir DIR" in r.stderr
    assert r.stderr.count(b"\n") == 1


def test_shim_arguments_naming_mapped_paths_become_host_paths(daemon, shimdir, tmp_path):
    inside, outside = tmp_path / "container-ws", tmp_path / "host-ws"
    for top in (inside, outside):
        (top / "sub").mkdir(parents=True)
        (top / "sub" / "f").write_text("x")
    subprocess.run([str(shimdir / "hostlink"), "shim", "install", "printf"], check=True)
    env = daemon.env(HOSTLINK_PATH_MAP="%s=%s" % (inside, outside))
    args = ["%s:/w" % (inside / "sub"), str(inside / "sub" / "f"), "--volume=%s:/x:ro" % inside,
            str(inside / "missing"), "-v", "sub:/w", "/etc/hostname", "--flag", "plain"]
    r = subprocess.run([str(shimdir / "printf"), "%s\\n", *args], cwd=str(inside / "sub"), env=env,
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "%s:/w" % (outside / "sub"), str(outside / "sub" / "f"), "--volume=%s:/x:ro" % outside,
        str(inside / "missing"), "-v", "sub:/w", "/etc/hostname", "--flag", "plain"]
