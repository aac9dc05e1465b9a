"""hostlink-install openclaw into a temporary --root and home: the files OpenClaw reads, written
as their owner, comments kept, the token followed on rotation and taken back out by uninstall.
(tests/e2e/test_openclaw.py runs OpenClaw itself on what this writes.)"""

import grp
import json
import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile

import pytest

from hostlink.install.json5read import parse, plain
from tests.install.test_host import conf_token, install

CONFIG = """// my OpenClaw config: keep this comment
{
  /* and this one */
  agents: {
    defaults: {
      workspace: "~/ws", // the agent's files
      sandbox: {
        mode: "off",
        docker: { image: "hostlink/agent-test:e2e", user: "1001:1001" },
      },
    },
  },
  gateway: { port: 18789 },
}
"""
UID = 1000  # a user that exists here and is not root: the files must become theirs


@pytest.fixture
def setup():
    base = pathlib.Path(tempfile.mkdtemp(prefix="hostlink-openclaw-"))
    os.chmod(base, 0o755)  # pytest's own tmp root is 0700: the home's owner could not reach it
    root, home = base / "root", base / "home"
    (home / ".openclaw").mkdir(parents=True)
    (home / ".openclaw/openclaw.json").write_text(CONFIG)
    (home / ".openclaw/.env").write_text("OPENAI_API_KEY=keep-me\n")
    for path in (home, home / ".openclaw", home / ".openclaw/openclaw.json", home / ".openclaw/.env"):
        os.chown(path, UID, UID)
    install("host", "--root", str(root), "--no-start")
    yield root, home
    install("uninstall", "--root", str(root), check=False)
    shutil.rmtree(base)


def config(home):
    return plain(parse((home / ".openclaw/openclaw.json").read_text()))


def user_in_group(uid, group):
    user = pwd.getpwuid(uid).pw_name
    return grp.getgrnam(group).gr_gid in os.getgrouplist(user, pwd.getpwuid(uid).pw_gid)


def test_gateway_skill_env_and_path(setup):
    root, home = setup
    r = install("openclaw", "--root", str(root), "--home", str(home), "--no-sandbox")
    skill, client = home / "ws/skills/hostlink/SKILL.md", home / "ws/skills/hostlink/bin/hostlink"
    assert skill.read_text().startswith("---\nname: hostlink\n")
    assert client.stat().st_mode & 0o777 == 0o755 and skill.stat().st_mode & 0o777 == 0o644
    env = (home / ".openclaw/.env").read_text().splitlines()
    assert env[0] == "OPENAI_API_KEY=keep-me" and "HOSTLINK_TOKEN=%s" % conf_token(root) in env
    assert "HOSTLINK_SOCKET=%s" % (root / "run/hostlink/hostlink.sock") in env
    assert (home / ".openclaw/.env").stat().st_mode & 0o777 == 0o600
    text = (home / ".openclaw/openclaw.json").read_text()
    assert "// my OpenClaw config: keep this comment" in text and "// the agent's files" in text
    assert config(home)["tools"]["exec"]["pathPrepend"] == [str(home / "ws/skills/hostlink/bin")]
    assert "sandbox" not in json.dumps(config(home)["agents"]["defaults"]["sandbox"]["docker"].get("env", {}))
    for path in (skill, client, skill.parent, home / "ws", home / ".openclaw/.env",
                 home / ".openclaw/openclaw.json"):
        assert path.stat().st_uid == UID, path
    assert user_in_group(UID, "hostlink")
    assert "openclaw gateway restart" in r.stdout
    # The client OpenClaw's exec finds by pathPrepend runs.
    assert subprocess.run([str(client), "--version"], capture_output=True).returncode == 0
    again = install("openclaw", "--root", str(root), "--home", str(home), "--no-sandbox")
    assert "wrote" not in again.stdout and again.stdout.count("unchanged") == 4


def test_sandbox_binds_user_env_and_extra_socket(setup):
    root, home = setup
    gid = grp.getgrnam("hostlink").gr_gid
    install("openclaw", "--root", str(root), "--home", str(home), "--sandbox")
    docker = config(home)["agents"]["defaults"]["sandbox"]["docker"]
    socket_dir = root / "var/lib/hostlink/socket"
    assert docker["binds"] == ["%s:/run/hostlink:rw" % socket_dir]
    assert docker["user"] == "1001:%d" % gid and docker["dangerouslyAllowExternalBindSources"] is True
    assert docker["env"] == {"HOSTLINK_SOCKET": "/run/hostlink/hostlink.sock",
                             "HOSTLINK_TOKEN": conf_token(root)}
    assert config(home)["tools"]["exec"]["pathPrepend"] == [str(home / "ws/skills/hostlink/bin"),
                                                            "/workspace/skills/hostlink/bin"]
    conf = (root / "etc/hostlink/hostlink.conf").read_text()
    assert "extra_socket = %s/hostlink.sock" % socket_dir in conf
    st = socket_dir.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o750, 0, gid)
    # host run again keeps the extra socket; --rotate-token follows the token into OpenClaw's files.
    install("host", "--root", str(root), "--no-start")
    assert "extra_socket" in (root / "etc/hostlink/hostlink.conf").read_text()
    old = conf_token(root)
    r = install("host", "--root", str(root), "--no-start", "--rotate-token")
    new = conf_token(root)
    assert new != old and "wrote %s" % (home / ".openclaw/openclaw.json") in r.stdout
    assert config(home)["agents"]["defaults"]["sandbox"]["docker"]["env"]["HOSTLINK_TOKEN"] == new
    assert "HOSTLINK_TOKEN=%s" % new in (home / ".openclaw/.env").read_text()
    assert old not in (home / ".openclaw/openclaw.json").read_text()


def test_uninstall_gives_the_config_back(setup):
    root, home = setup
    install("openclaw", "--root", str(root), "--home", str(home), "--sandbox")
    r = install("uninstall", "--root", str(root))
    assert "removed hostlink from %s" % (home / ".openclaw/openclaw.json") in r.stdout
    assert (home / ".openclaw/openclaw.json").read_text() == CONFIG
    assert (home / ".openclaw/.env").read_text() == "OPENAI_API_KEY=keep-me\n"
    assert not (home / "ws/skills/hostlink").exists() and not user_in_group(UID, "hostlink")
    assert not (root / "var/lib/hostlink").exists()


def test_dry_run_changes_nothing(setup):
    root, home = setup
    before = (home / ".openclaw/openclaw.json").read_text()
    r = install("openclaw", "--root", str(root), "--home", str(home), "--sandbox", "--dry-run")
    assert (home / ".openclaw/openclaw.json").read_text() == before
    assert not (home / "ws").exists() and "extra_socket" not in (root / "etc/hostlink/hostlink.conf").read_text()
    assert "+        docker: { image:" in r.stdout or "dangerouslyAllowExternalBindSources" in r.stdout


def test_bad_input_is_one_line(setup, tmp_path):
    root, home = setup
    (home / ".openclaw/openclaw.json").write_text("{ agents: { defaults: }\n")
    r = install("openclaw", "--root", str(root), "--home", str(home), check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "not JSON5 that OpenClaw reads: %s: line 1" % (home / ".openclaw/openclaw.json") in r.stderr
    r = install("openclaw", "--root", str(tmp_path / "nothing"), "--home", str(home), check=False)
    assert r.returncode == 1 and "run hostlink-install host first" in r.stderr
    r = install("openclaw", "--root", str(root), "--home", str(tmp_path / "nohome"), check=False)
    assert r.returncode == 1 and "is not a directory" in r.stderr


def test_host_openclaw_config_reads_json5_and_is_remembered(tmp_path):
    root, ws, oc = tmp_path / "root", tmp_path / "ws", tmp_path / "openclaw.json"
    ws.mkdir()
    oc.write_text("{\n  // comment\n  model: 'x',\n}\n")
    try:
        install("host", "--root", str(root), "--workspace", str(ws), "--no-start", "--openclaw-config", str(oc))
        assert "// comment" in oc.read_text()
        assert plain(parse(oc.read_text()))["env"]["vars"]["HOSTLINK_TOKEN"] == conf_token(root)
        install("host", "--root", str(root), "--workspace", str(ws), "--no-start")  # without the flag
    finally:
        install("uninstall", "--root", str(root))
    assert plain(parse(oc.read_text())) == {"model": "x", "env": {"vars": {}}}
    assert "// comment" in oc.read_text()


def test_uninstall_goes_on_when_the_config_is_broken(setup):
    root, home = setup
    install("openclaw", "--root", str(root), "--home", str(home), "--no-sandbox")
    (home / ".openclaw/openclaw.json").write_text("{ broken")
    r = install("uninstall", "--root", str(root), check=False)
    assert r.returncode == 1 and "hostlink is still in the OpenClaw setup" in r.stderr, r.stderr
    assert not (root / "etc/hostlink/hostlink.conf").exists() and not user_in_group(UID, "hostlink")
    assert not (home / "ws/skills/hostlink").exists()
    (home / ".openclaw/openclaw.json").write_text(CONFIG)  # mended: a second uninstall finishes
    assert "removed hostlink from" in install("uninstall", "--root", str(root)).stdout
