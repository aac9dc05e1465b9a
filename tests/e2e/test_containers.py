"""From inside real containers, on the host: host mode, restart, sidecar, compose, installer, errors.

Each command proves it ran on the host: it reads a marker file that exists only on the host
(never mounted into the container) and reports the host's name, not the container's.
"""

import grp
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
from testcontainers.core.container import DockerContainer

from hostlink.install import containers
from tests.conftest import ROOT, wait_for
from tests.e2e.conftest import LABEL, SESSION

pytestmark = pytest.mark.e2e
INSTALL = [sys.executable, "-c", "from hostlink.install.cli import main; main()"]
HOSTNAME = socket.gethostname()


def install(*args):
    r = subprocess.run(INSTALL + list(args), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def sh(container, command, user=None, env=None):
    """(exit code, stdout, stderr) of ``sh -c command`` inside the container."""
    c = container.get_wrapped_container() if hasattr(container, "get_wrapped_container") else container
    kw = {"user": user} if user else {}
    code, (out, err) = c.exec_run(["sh", "-c", command], demux=True, environment=env or {}, **kw)
    return code, (out or b"").decode(), (err or b"").decode()


class HostInstall:
    """hostlink-install host under a temporary root, as a user would run it."""

    def __init__(self, base):
        self.root = base / "root"
        self.ws = base / "workspace"
        self.ws.mkdir(parents=True)
        # root, asked for: these tests read markers in pytest's root-only temporary directories
        self.args = ["host", "--root", str(self.root), "--workspace", str(self.ws), "--run-as", "root"]
        self.report = install(*self.args)
        self.socket_dir = self.root / "run/hostlink"
        self.gid = grp.getgrnam("hostlink").gr_gid
        env = dict(line.split("=", 1) for line in (self.ws / ".env").read_text().splitlines())
        self.token = env["HOSTLINK_TOKEN"]
        self.marker = base / ("host-only-marker-" + uuid.uuid4().hex)
        self.marker.write_text("written on the host\n")

    def daemon_pid(self):
        return int((self.root / "run/hostlink-install/hostlinkd.pid").read_text())

    def agent(self, image, mount_socket=True, group=True, token=None, extra_volumes=()):
        c = DockerContainer(image).with_command("sleep infinity")
        c.with_volume_mapping(str(self.ws), "/workspace", "ro")
        if mount_socket:
            c.with_volume_mapping(str(self.socket_dir), "/run/hostlink", "rw")
        for host_path, path in extra_volumes:
            c.with_volume_mapping(host_path, path, "ro")
        c.with_env("HOSTLINK_SOCKET", "/run/hostlink/hostlink.sock")
        c.with_env("HOSTLINK_TOKEN", token or self.token)
        c.with_env("PATH", "/workspace/bin:/usr/local/bin:/usr/bin:/bin")
        c.with_kwargs(user="1000", group_add=[str(self.gid)] if group else [], labels=dict(LABEL))
        return c.start()

    def uninstall(self):
        install("uninstall", "--root", str(self.root))


@pytest.fixture(scope="module")
def host(tmp_path_factory, docker_client):
    h = HostInstall(tmp_path_factory.mktemp("host-mode"))
    yield h
    h.uninstall()


@pytest.fixture(scope="module")
def agent(host, images):
    c = host.agent(images["agent"])
    yield c
    c.stop()


def test_install_started_the_daemon(host):
    assert "started hostlinkd in the background" in host.report


def test_runs_as_non_root_with_socket_group(agent, host):
    code, out, _ = sh(agent, "id -u; id -G")
    assert out.split("\n")[0] == "1000" and str(host.gid) in out.split("\n")[1].split()
    code, out, _ = sh(agent, "hostname; test -e %s || echo no-marker-here" % host.marker)
    assert out.split() != [HOSTNAME] and "no-marker-here" in out


def test_ping(agent):
    code, out, err = sh(agent, "hostlink ping")
    assert code == 0, err
    assert out.startswith("[%s] pong - uptime " % HOSTNAME) and out.endswith("s\n")


def test_exec_reads_host_marker(agent, host):
    code, out, err = sh(agent, 'hostlink exec "cat %s; hostname; id -u"' % host.marker)
    assert (code, out) == (0, "written on the host\n%s\n0\n" % HOSTNAME), err
    code, out, _ = sh(agent, 'hostlink exec "ls /home"')
    assert code == 0


def test_explicit_socket_and_token(agent, host):
    code, out, err = sh(agent, 'hostlink -s /run/hostlink/hostlink.sock -k "$HOSTLINK_TOKEN" '
                               'exec "echo hello; cat %s"' % host.marker)
    assert (code, out) == (0, "hello\nwritten on the host\n"), err


def test_workdir_env_timeout(agent, host):
    assert sh(agent, 'hostlink -w %s exec "pwd"' % host.marker.parent)[1] == "%s\n" % host.marker.parent
    assert sh(agent, "hostlink -e MY_VAR=value exec 'echo $MY_VAR'")[1] == "value\n"
    assert sh(agent, 'hostlink -T 60000 exec "sleep 0.2; echo done"')[1] == "done\n"
    code, _, err = sh(agent, 'hostlink -T 300 exec "sleep 30"')
    assert code == 5 and "timed out" in err


def test_json_pipeline(agent, host):
    code, out, err = sh(agent, "hostlink -w %s -j exec \"ls -la\" | python3 -c \"import sys,json; "
                               "d=json.load(sys.stdin); print(d['stdout'])\"" % host.marker.parent)
    assert code == 0 and host.marker.name in out, err


def test_stdin_reaches_host_file(agent, host):
    target = host.marker.parent / "from-stdin"
    code, _, err = sh(agent, 'echo data | hostlink exec "cat > %s"' % target)
    assert code == 0 and target.read_text() == "data\n", err


def test_targets_and_named_target(agent, host):
    conf = host.ws / "targets.conf"
    conf.write_text("[gpu-box]\ntransport = unix\nsocket = /run/hostlink/hostlink.sock\ntoken = %s\n"
                    % host.token)
    os.chown(conf, 1000, 1000)
    os.chmod(conf, 0o600)
    env = {"HOSTLINK_TARGETS": "/workspace/targets.conf"}
    code, out, err = sh(agent, "hostlink targets", env=env)
    assert code == 0 and "gpu-box" in out and "(local)" in out, err
    code, out, err = sh(agent, 'HOSTLINK_TARGET=gpu-box hostlink exec "cat %s"' % host.marker, env=env)
    assert (code, out) == (0, "written on the host\n"), err
    code, out, _ = sh(agent, "hostlink -j targets", env=env)
    assert [t["name"] for t in json.loads(out)] == ["(local)", "gpu-box"]


def test_cp_between_container_and_host(agent, host):
    # As uid 1000 in the container: a tree to the host and back, byte for byte.
    code, _, err = sh(agent, "mkdir -p ~/proj/sub ~/proj/empty && head -c 300000 /dev/urandom > ~/proj/sub/r.bin"
                             " && echo 'x y' > ~/proj/'a file' && ln -s sub/r.bin ~/proj/link")
    assert code == 0, err
    dest = host.marker.parent / "from-container"
    code, out, err = sh(agent, "cd ~ && hostlink cp --verify proj host:%s" % dest)
    assert code == 0 and "2 of 2 files sha256-verified" in err, err
    assert (dest / "empty").is_dir() and os.readlink(dest / "link") == "sub/r.bin"
    code, out, err = sh(agent, "cd ~ && hostlink get %s back && cmp back/sub/r.bin proj/sub/r.bin && "
                               "test -L back/link && test -d back/empty && cat 'back/a file'" % dest)
    assert code == 0 and out == "x y\n", err


def test_an_agents_day_without_friction(agent, host):
    # As uid 1000, with the workspace (and the client in it) read-only: help stays here, a near
    # miss is named, shims go to ~/.local/bin, and a mapped workspace path reaches the host as
    # the host's path (docker run -v "$PWD":/w through a shim mounts the right directory).
    code, out, err = sh(agent, "hostlink exec --help")
    assert code == 0 and out.startswith("usage: hostlink [OPTIONS] exec"), err
    code, _, err = sh(agent, "hostlink exce ls")
    assert code == 7 and "did you mean 'exec'?" in err
    code, _, err = sh(agent, "hostlink shim install sh")
    assert code == 7 and "would shadow" in err
    code, out, err = sh(agent, "hostlink shim install printf")
    assert code == 0 and out.startswith("/home/agent/.local/bin/printf -> runs printf on the host"), err
    code, out, err = sh(agent, "hostlink shim list")
    assert out.split() == ["printf", "/home/agent/.local/bin/printf"], err
    (host.ws / "project").mkdir(exist_ok=True)
    env = {"HOSTLINK_PATH_MAP": "/workspace=%s" % host.ws}
    code, out, err = sh(agent, "cd /workspace/project && ~/.local/bin/printf '%s\\n' \"$PWD\":/w "
                               "\"$PWD\" ./relative", env=env)
    assert (code, out.split()) == (0, ["%s/project:/w" % host.ws, "%s/project" % host.ws,
                                       "./relative"]), err
    code, out, err = sh(agent, "hostlink shim remove printf && hostlink shim list")
    assert code == 0 and out == "" and "no shims on PATH" in err


def test_exit_codes_inside_container(agent):
    assert sh(agent, 'hostlink exec "exit 3"')[0] == 1
    assert sh(agent, 'hostlink -x exec "exit 3"')[0] == 3
    assert sh(agent, "hostlink --bogus")[0] == 7


def test_wrong_token_exit_3(host, agent):
    code, _, err = sh(agent, 'hostlink -k wrong exec "true"')
    assert code == 3 and "auth_token in hostlink.conf" in err


def test_missing_mount_exit_2(host, images):
    c = host.agent(images["agent"], mount_socket=False)
    try:
        code, _, err = sh(c, 'hostlink exec "true"')
        assert code == 2 and "not mounted into this container" in err, err
        code, out, _ = sh(c, "hostlink doctor")
        assert code != 0 and "FAIL socket directory" in out
    finally:
        c.stop()


def test_wrong_group_exit_2(host, images):
    c = host.agent(images["agent"], group=False)
    try:
        code, _, err = sh(c, 'hostlink exec "true"')
        assert code == 2 and "permission denied" in err and "group" in err, err
    finally:
        c.stop()


def test_doctor_inside_container(agent):
    code, out, err = sh(agent, "hostlink doctor")
    assert code == 0 and "ok   daemon: node %s answers" % HOSTNAME in out, out + err


def test_approval_given_on_host_while_container_waits(host, agent):
    token = "asker-e2e-token-0123456789"
    conf = host.root / "etc/hostlink/hostlink.conf"
    original = conf.read_text()
    conf.write_text(original + "\n[client asker]\ntoken = %s\nask = /usr/bin/touch **\n" % token)
    os.kill(host.daemon_pid(), signal.SIGHUP)
    time.sleep(0.5)
    made = host.marker.parent / "approved-from-container"
    try:
        agent.get_wrapped_container().exec_run(
            ["sh", "-c", "hostlink -k %s exec --argv touch %s > /tmp/approval.out 2>&1; echo rc=$? >> "
                         "/tmp/approval.out" % (token, made)], detach=True)
        admin = str(host.root / "run/hostlink-admin/admin.sock")
        approve = [sys.executable, "-m", "hostlink.daemon.admin_client", "--socket", admin]

        def pending():
            out = subprocess.run(approve + ["list", "--json"], capture_output=True, text=True, cwd=ROOT).stdout
            return [json.loads(l) for l in out.splitlines()]
        waiting = wait_for(pending, 20, "the container's request to wait")
        assert not made.exists() and waiting[0]["client"] == "asker"
        subprocess.run(approve + ["approve", waiting[0]["id"]], check=True, cwd=ROOT)
        out = wait_for(lambda: "rc=" in sh(agent, "cat /tmp/approval.out")[1] and
                       sh(agent, "cat /tmp/approval.out")[1], 20, "the container's command to end")
        assert "waiting for approval %s on %s" % (waiting[0]["id"], HOSTNAME) in out and "rc=0" in out
        assert made.exists()
    finally:
        conf.write_text(original)
        os.kill(host.daemon_pid(), signal.SIGHUP)


def test_daemon_restart_keeps_container_working(host, agent):
    pid = host.daemon_pid()
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
             open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] == "Z", 20, "daemon stop")
    code, _, err = sh(agent, "hostlink ping")
    assert code == 2 and "hostlinkd" in err
    assert "started hostlinkd" in install(*host.args)
    code, out, err = sh(agent, 'hostlink exec "cat %s"' % host.marker)
    assert (code, out) == (0, "written on the host\n"), err


def test_installer_copies_client_into_running_container(host, images, docker_client):
    c = DockerContainer(images["agent"]).with_command("sleep infinity")
    c.with_volume_mapping(str(host.socket_dir), "/run/hostlink", "rw")
    c.with_kwargs(user="1000", group_add=[str(host.gid)], labels=dict(LABEL))
    c.start()
    try:
        name = c.get_wrapped_container().name
        assert sh(c, "command -v hostlink || echo none")[1] == "none\n"
        out = install("container", name, "--root", str(host.root))
        assert "copied the client" in out and "is mounted at /run/hostlink" in out
        code, out, err = sh(c, 'HOSTLINK_TOKEN=%s hostlink exec "cat %s"' % (host.token, host.marker))
        assert (code, out) == (0, "written on the host\n"), err
        # A shim: the host's own program under its own name, run as uid 1000 in the container.
        out = install("container", name, "--root", str(host.root), "--shim", "hostname", "--shim", "cat")
        assert "runs hostname on the host" in out
        code, out, err = sh(c, "export HOSTLINK_TOKEN=%s; hostname; cat %s" % (host.token, host.marker))
        assert (code, out) == (0, "%s\nwritten on the host\n" % HOSTNAME), err
    finally:
        c.stop()
    bare = DockerContainer(images["agent"]).with_command("sleep infinity")
    bare.with_kwargs(labels=dict(LABEL))
    bare.start()
    try:
        r = subprocess.run(INSTALL + ["container", bare.get_wrapped_container().name, "--root",
                                      str(host.root)], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and "--group-add" in r.stdout and "/run/hostlink" in r.stdout
    finally:
        bare.stop()


# ---- sidecar ------------------------------------------------------------------------------------

@pytest.fixture
def host_process():
    """A process in the host's namespaces for the sidecar to enter (nsenter -t 1 is refused here)."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_sidecar_enters_host_namespaces(tmp_path, images, docker_client, host_process):
    marker = tmp_path / ("sidecar-marker-" + uuid.uuid4().hex)
    marker.write_text("host side\n")
    conf = tmp_path / "hostlink.conf"
    conf.write_text("auth_token = sidecar-secret-0123456789\nsocket = /run/hostlink/hostlink.sock\n"
                    "socket_mode = 0666\nnode_name = %s\nnamespace_pid = %d\n"
                    "audit_log = /var/log/hostlink/audit.log\n" % (HOSTNAME, host_process))
    os.chmod(conf, 0o600)
    volume = docker_client.volumes.create("hostlink-run-" + SESSION, labels=dict(LABEL))
    daemon = DockerContainer(images["hostlinkd"])
    daemon.with_volume_mapping(volume.name, "/run/hostlink", "rw")
    daemon.with_volume_mapping(str(conf), "/etc/hostlink/hostlink.conf", "ro")
    daemon.with_kwargs(pid_mode="host", cap_add=["ALL"], cap_drop=["SYS_RESOURCE"],
                       security_opt=["seccomp=unconfined", "apparmor=unconfined"], labels=dict(LABEL))
    daemon.start()
    client = DockerContainer(images["agent"]).with_command("sleep infinity")
    client.with_volume_mapping(volume.name, "/run/hostlink", "rw")
    client.with_env("HOSTLINK_TOKEN", "sidecar-secret-0123456789")
    client.with_kwargs(user="1000", labels=dict(LABEL))
    client.start()
    try:
        containers.install_client(client.get_wrapped_container(), "/opt/hl")
        wait_for(lambda: sh(client, "/opt/hl/hostlink ping")[0] == 0 or None, 20, "sidecar ping")
        code, out, err = sh(client, '/opt/hl/hostlink exec "cat %s; hostname"' % marker)
        assert (code, out) == (0, "host side\n%s\n" % HOSTNAME), err + daemon.get_logs()[1].decode()
        code, out, _ = sh(client, '/opt/hl/hostlink -w %s exec pwd' % tmp_path)
        assert out == "%s\n" % tmp_path
    finally:
        client.stop()
        daemon.stop()
        volume.remove(force=True)


def test_compose_bundle_up_and_down(tmp_path, images, docker_client, host_process):
    marker = tmp_path / ("compose-marker-" + uuid.uuid4().hex)
    marker.write_text("compose host side\n")
    project = "hle2e" + SESSION
    out_dir = tmp_path / "bundle"
    install("sidecar", "--out", str(out_dir), "--namespace-pid", str(host_process), "--project", project,
            "--label", "hostlink.e2e=%s" % SESSION, "--agent-image", images["agent"],
            "--daemon-image", images["hostlinkd"], "--client-init-image", images["client-init"])
    compose = ["docker-compose", "-p", project, "-f", str(out_dir / "docker-compose.yml")]
    subprocess.run(compose + ["config", "-q"], check=True)
    try:
        subprocess.run(compose + ["up", "-d"], check=True, capture_output=True, timeout=300)
        exec_ = compose + ["exec", "-T", "agent", "sh", "-c"]
        wait_for(lambda: subprocess.run(exec_ + ["hostlink ping"], capture_output=True).returncode == 0,
                 30, "agent to ping the sidecar")
        r = subprocess.run(exec_ + ['hostlink ping; hostlink exec "cat %s; id -u"; id -u' % marker],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].startswith("[%s] pong - uptime" % HOSTNAME)
        assert lines[1:] == ["compose host side", "0", "1000"]
    finally:
        subprocess.run(compose + ["down", "-v"], capture_output=True, timeout=300)
    flt = {"label": "com.docker.compose.project=%s" % project}
    assert not docker_client.containers.list(all=True, filters=flt)
    assert not docker_client.volumes.list(filters=flt)
    assert not docker_client.networks.list(filters=flt)
