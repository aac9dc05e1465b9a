"""A compose first run as a user walks it: their compose file (one service, not named openclaw),
``hostlink-install host --compose-file``, then the printed next steps run verbatim as uid 1000 (a
docker user, not root), and ``hostlink ping`` by its bare name inside the container."""

import grp
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import SESSION

pytestmark = pytest.mark.e2e
INSTALL = [sys.executable, "-c", "from hostlink.install.cli import main; main()"]
HOSTNAME = socket.gethostname()
UID = 1000

COMPOSE = """version: "2.4"
services:
  gateway:
    image: %(image)s
    user: "1000"
    command: ["sleep", "infinity"]
    volumes:
      - "%(ws)s:/home/agent/workspace"
    labels:
      hostlink.e2e: "%(session)s"
"""


def as_user(command, cwd):
    """``sh -c command`` as uid 1000 in the docker group, as a user types it in a shell."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run(["sh", "-c", command], cwd=str(cwd), env=env, capture_output=True, text=True,
                          timeout=300, user=UID, group=UID, extra_groups=[grp.getgrnam("docker").gr_gid])


@pytest.fixture(scope="module")
def first_run(images, docker_client):
    base = pathlib.Path(tempfile.mkdtemp(prefix="hostlink-compose-"))
    os.chmod(base, 0o755)
    project, ws, root = base / ("hlfirst" + SESSION), base / "workspace", base / "root"
    for d in (project, ws):
        d.mkdir()
        os.chown(d, UID, UID)
    compose_file = project / "docker-compose.yml"
    compose_file.write_text(COMPOSE % {"image": images["agent"], "ws": ws, "session": SESSION})
    marker = base / ("compose-marker-" + SESSION)
    marker.write_text("written on the host\n")
    r = subprocess.run(INSTALL + ["host", "--root", str(root), "--workspace", str(ws),
                                  "--compose-file", str(compose_file)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    steps = [l.strip() for l in r.stdout.split("Next:", 1)[1].splitlines() if l.startswith("  docker-compose")]
    try:
        yield steps, project, ws, root, marker, compose_file
    finally:
        subprocess.run(steps[0].replace(" up -d", " down -t 1").split(), capture_output=True, timeout=300)
        subprocess.run(INSTALL + ["uninstall", "--root", str(root)], cwd=ROOT, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_printed_steps_name_the_service_and_run_verbatim(first_run):
    steps, project, _, root, _, _ = first_run
    override = root / "etc/hostlink/compose/docker-compose.hostlink.yml"
    assert steps == ["docker-compose -f %s/docker-compose.yml -f %s up -d" % (project, override),
                     "docker-compose -f %s/docker-compose.yml -f %s exec -T gateway hostlink ping"
                     % (project, override)]
    up = as_user(steps[0], project)
    assert up.returncode == 0, up.stderr
    ping = as_user(steps[1], project)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert ping.stdout.startswith("[%s] pong - uptime " % HOSTNAME), ping.stdout


def test_client_on_path_token_as_a_file(first_run, docker_client):
    steps, project, _, _, marker, _ = first_run
    exec_ = steps[1].replace(" hostlink ping", " sh -c ")
    r = as_user(exec_ + "'command -v hostlink; id -u; hostlink exec \"cat %s; id -un\"; "
                        "env | grep -c HOSTLINK_TOKEN='" % marker, project)
    owner = pwd.getpwuid(UID).pw_name  # the workspace's: who runs commands by default, not root
    assert r.stdout.splitlines() == ["/usr/local/bin/hostlink", "1000", "written on the host", owner,
                                     "0"], r.stdout + r.stderr
    container = docker_client.containers.list(filters={"label": "com.docker.compose.service=gateway",
                                                       "name": "hlfirst" + SESSION})[0]
    env = container.attrs["Config"]["Env"]
    assert "HOSTLINK_TOKEN_FILE=/run/secrets/hostlink_token" in env
    assert not [e for e in env if e.startswith("HOSTLINK_TOKEN=")]


def test_workspace_env_belongs_to_its_owner(first_run):
    _, _, ws, _, _, _ = first_run
    st = (ws / ".env").stat()
    assert (st.st_uid, st.st_mode & 0o777) == (UID, 0o600)
    r = as_user("cat %s/.env" % ws, ws)
    assert r.returncode == 0 and "HOSTLINK_TOKEN=" in r.stdout


def test_rotated_token_reaches_the_running_container(first_run):
    steps, project, ws, root, _, compose_file = first_run
    token = root / "etc/hostlink/compose/secrets/hostlink_token"
    old = token.read_text()
    r = subprocess.run(INSTALL + ["host", "--root", str(root), "--workspace", str(ws), "--compose-file",
                                  str(compose_file), "--rotate-token"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0 and token.read_text() != old, r.stderr
    ping = as_user(steps[1], project)  # the same container, not recreated
    assert ping.returncode == 0 and ping.stdout.startswith("[%s] pong" % HOSTNAME), ping.stdout + ping.stderr
