"""OpenClaw for real: the pinned OpenClaw from npm runs agent turns (``openclaw agent --local``)
against a stand-in model, and its own exec tool runs ``hostlink`` by its bare name, on the
gateway's host and inside its Docker sandbox, after ``hostlink-install openclaw`` set it up.

OpenClaw runs as uid 1000 with a home of its own, as a user would run it; the model is the only
part that is not OpenClaw's (tests/e2e/openclaw_parts.py).
"""

import grp
import json
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from hostlink.install.json5read import parse, plain
from tests.conftest import ROOT
from tests.e2e.conftest import SESSION
from tests.e2e.openclaw_parts import NO_DOCKERENV, NODE_BIN, OPENCLAW, StandIn, openclaw_or_fail

pytestmark = pytest.mark.e2e
INSTALL = [sys.executable, "-c", "from hostlink.install.cli import main; main()"]
HOSTNAME = socket.gethostname()
UID = 1000
PREFIX = "hlsbx-%s-" % SESSION  # the sandbox containers' names: removed at the end

USER_CONFIG = """// The user's own openclaw.json: JSON5, comments and all.
{
  agents: {
    defaults: {
      workspace: "~/workspace", // hostlink-install reads this
      model: { primary: "standin/stand-in" },
      sandbox: {
        mode: "off", // turned on half way through the test
        scope: "session",
        docker: { image: "%(image)s", containerPrefix: "%(prefix)s" },
      },
    },
  },
  models: {
    mode: "merge",
    providers: {
      /* the stand-in model: answers with an exec tool call */
      standin: {
        baseUrl: "%(url)s",
        apiKey: "none",
        api: "openai-completions",
        models: [{ id: "stand-in", name: "Stand-in", reasoning: false, input: ["text"],
                   contextWindow: 128000, maxTokens: 4096 }],
      },
    },
  },
}
"""


def hostlink_install(*args):
    r = subprocess.run(INSTALL + list(args), capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env=dict(os.environ, PATH="%s:%s:%s" % (NODE_BIN, os.path.dirname(OPENCLAW),
                                                              os.environ["PATH"])))
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


class OpenClawUser:
    """uid 1000 with a home holding .openclaw/, running the openclaw command as a user does."""

    def __init__(self, base, stand_in, image):
        self.home = base / "home"
        (self.home / ".openclaw").mkdir(parents=True)
        self.config = self.home / ".openclaw/openclaw.json"
        self.config.write_text(USER_CONFIG % {"image": image, "prefix": PREFIX, "url": stand_in.url})
        self.shim = base / "no-dockerenv.cjs"
        self.shim.write_text(NO_DOCKERENV)
        for path in (self.home, self.home / ".openclaw", self.config):
            os.chown(path, UID, UID)

    def run(self, *args, check=True, timeout=300):
        name = pwd.getpwuid(UID).pw_name
        env = {"HOME": str(self.home), "USER": name, "LOGNAME": name, "LANG": "C.UTF-8",
               "PATH": "%s:%s:/usr/local/bin:/usr/bin:/bin" % (NODE_BIN, os.path.dirname(OPENCLAW)),
               "NODE_OPTIONS": "--require %s" % self.shim}
        # the groups a login would give (the socket's, once the installer added it), and docker's,
        # which a user who runs OpenClaw's Docker sandbox has
        groups = os.getgrouplist(name, UID) + [grp.getgrnam("docker").gr_gid]
        r = subprocess.run([OPENCLAW, *args], env=env, cwd=str(self.home), capture_output=True,
                           text=True, timeout=timeout, user=UID, group=UID, extra_groups=groups)
        if check:
            assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return r

    def turn(self, stand_in, session, command):
        """One agent turn whose model asks exec to run ``command``; what exec returned."""
        before = len(stand_in.results)
        self.run("agent", "--local", "--session-id", session, "-m", "RUN: " + command, "--json")
        assert len(stand_in.results) > before, "OpenClaw's exec returned nothing"
        return stand_in.results[-1]

    def skill(self):
        return json.loads(self.run("skills", "info", "hostlink", "--json").stdout)

    def settings(self):
        return plain(parse(self.config.read_text()))


@pytest.fixture(scope="module")
def setup(docker_client, images):
    openclaw_or_fail()
    base = pathlib.Path(tempfile.mkdtemp(prefix="hostlink-openclaw-e2e-"))
    os.chmod(base, 0o755)  # the OpenClaw user must reach its home under it
    root = base / "root"
    stand_in = StandIn()
    user = OpenClawUser(base, stand_in, images["agent"])
    marker = base / ("host-only-marker-" + SESSION)
    marker.write_text("written on the host\n")
    try:
        hostlink_install("host", "--root", str(root))
        yield user, stand_in, root, marker
    finally:
        for c in docker_client.containers.list(all=True, filters={"name": PREFIX}):
            c.remove(force=True)
        subprocess.run(INSTALL + ["uninstall", "--root", str(root)], cwd=ROOT, capture_output=True)
        stand_in.close()
        shutil.rmtree(base, ignore_errors=True)


def test_install_for_the_gateway_keeps_the_users_config(setup):
    user, _, root, _ = setup
    out = hostlink_install("openclaw", "--root", str(root), "--home", str(user.home))
    assert "openclaw config validate accepts %s" % user.config in out
    text = user.config.read_text()
    for comment in ("// The user's own openclaw.json", "// hostlink-install reads this",
                    "/* the stand-in model: answers with an exec tool call */"):
        assert comment in text
    assert user.settings()["tools"]["exec"]["pathPrepend"] == [str(user.home / "workspace/skills/hostlink/bin")]
    assert "Config valid" in user.run("config", "validate").stdout


def test_skill_is_eligible_only_with_the_token(setup):
    user, _, _, _ = setup
    info = user.skill()
    assert (info["eligible"], info["missing"]["env"], info["primaryEnv"]) == (True, [], "HOSTLINK_TOKEN")
    assert info["filePath"] == str(user.home / "workspace/skills/hostlink/SKILL.md")
    env = user.home / ".openclaw/.env"
    env.rename(env.with_suffix(".aside"))
    try:
        info = user.skill()
    finally:
        env.with_suffix(".aside").rename(env)
    assert info["eligible"] is False and info["missing"]["env"] == ["HOSTLINK_TOKEN"]


def test_exec_on_the_gateway_host(setup):
    user, stand_in, _, marker = setup
    out = user.turn(stand_in, "gateway", "hostlink ping && hostlink -j exec 'cat %s; id -un; cat "
                                         "/etc/hostname; docker ps -q >/dev/null && echo docker-ok'" % marker)
    pong, result = out.split("\n", 1)
    assert pong.startswith("[%s] pong - uptime " % HOSTNAME), out
    result = json.loads(result)
    assert (result["status"], result["exit_code"]) == ("ok", 0), result
    # a fresh install runs commands as its dedicated user, who may use docker; not as root
    with open("/etc/hostname") as f:
        assert result["stdout"] == "written on the host\nhostlink\n%sdocker-ok\n" % f.read(), result


def test_exec_inside_the_sandbox(setup, docker_client):
    user, stand_in, root, marker = setup
    user.config.write_text(user.config.read_text().replace('mode: "off"', 'mode: "all"'))
    out = hostlink_install("openclaw", "--root", str(root), "--home", str(user.home))
    assert "openclaw config validate accepts" in out and "openclaw sandbox recreate --all" in out
    gid = grp.getgrnam("hostlink").gr_gid
    out = user.turn(stand_in, "sandbox", "hostlink ping && hostlink -j exec 'cat %s' && id -u && id -g "
                                         "&& hostname && (test -e %s || echo no-marker-here)" % (marker, marker))
    lines = out.splitlines()
    assert lines[0].startswith("[%s] pong - uptime " % HOSTNAME), out
    assert json.loads(lines[1])["stdout"] == "written on the host\n", out
    assert lines[2:4] == [str(UID), str(gid)] and lines[4] != HOSTNAME and lines[5] == "no-marker-here", out
    assert docker_client.containers.list(filters={"name": PREFIX}), "no sandbox container ran"
    docker = user.settings()["agents"]["defaults"]["sandbox"]["docker"]
    assert docker["user"] == "1000:%d" % gid and docker["env"]["HOSTLINK_SOCKET"] == "/run/hostlink/hostlink.sock"
    assert "// hostlink-install reads this" in user.config.read_text()
    assert "Config valid" in user.run("config", "validate").stdout


def test_a_config_openclaw_refuses_is_not_written(setup, tmp_path):
    user, _, root, _ = setup
    bad = user.config.read_text().replace('containerPrefix:', 'cpus: "many", containerPrefix:')
    user.config.write_text(bad)
    r = subprocess.run(INSTALL + ["openclaw", "--root", str(root), "--home", str(user.home)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PATH="%s:%s:%s" % (NODE_BIN, os.path.dirname(OPENCLAW),
                                                              os.environ["PATH"])))
    assert r.returncode == 1 and "OpenClaw refuses the edited" in r.stderr and "cpus" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and user.config.read_text() == bad
