"""hostlink-install host/uninstall into a temporary --root, each template checked by its consumer."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

INSTALL = [sys.executable, "-c", "from hostlink.install.cli import main; main()"]


def install(*args, check=True):
    r = subprocess.run(INSTALL + list(args), capture_output=True, text=True, timeout=120, cwd=ROOT)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def snapshot(*dirs):
    out = {}
    for d in dirs:
        for base, _, files in os.walk(d):
            for name in files:
                path = os.path.join(base, name)
                if os.path.islink(path):
                    out[path] = "-> " + os.readlink(path)
                elif not name.endswith((".log", ".pid", ".sock")):
                    with open(path, "rb") as f:
                        out[path] = (hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mode)
    return out


@pytest.fixture
def tree(tmp_path):
    root, ws = tmp_path / "root", tmp_path / "ws"
    ws.mkdir()
    (ws / ".env").write_text("OPENAI_API_KEY=keep-me\nHOSTLINK_TOKEN=old\n")
    yield root, ws
    install("uninstall", "--root", str(root), check=False)


def conf_token(root):
    for line in (root / "etc/hostlink/hostlink.conf").read_text().splitlines():
        if line.startswith("auth_token"):
            return line.split("=", 1)[1].strip()


def test_install_twice_is_identical_and_keeps_token(tree):
    root, ws = tree
    install("host", "--root", str(root), "--workspace", str(ws), "--no-start")
    first, token = snapshot(root, ws), conf_token(root)
    r = install("host", "--root", str(root), "--workspace", str(ws), "--no-start")
    assert snapshot(root, ws) == first and conf_token(root) == token
    assert "wrote" not in r.stdout and r.stdout.count("unchanged") == 6
    assert len(token) == 64


def test_files_modes_and_env(tree):
    root, ws = tree
    install("host", "--root", str(root), "--workspace", str(ws), "--no-start")
    conf = root / "etc/hostlink/hostlink.conf"
    assert conf.stat().st_mode & 0o777 == 0o600
    assert (ws / "bin/hostlink").stat().st_mode & 0o777 == 0o755
    env = (ws / ".env").read_text().splitlines()
    assert env[0] == "OPENAI_API_KEY=keep-me"
    assert "HOSTLINK_TOKEN=%s" % conf_token(root) in env and "HOSTLINK_TOKEN=old" not in env
    assert "HOSTLINK_SOCKET=/run/hostlink/hostlink.sock" in env
    assert (ws / ".env").stat().st_mode & 0o777 == 0o600
    r = subprocess.run([str(ws / "bin/hostlink"), "--version"], capture_output=True)
    assert r.returncode == 0 and r.stdout.startswith(b"hostlink ")
    assert "d %s 0750 root hostlink -" % (root / "run/hostlink") in (root / "etc/tmpfiles.d/hostlink.conf").read_text()


def test_rendered_conf_passes_check_config(tree):
    root, ws = tree
    install("host", "--root", str(root), "--no-start")
    r = subprocess.run([sys.executable, "-m", "hostlink.daemon", "--check-config", "-c",
                        str(root / "etc/hostlink/hostlink.conf")], capture_output=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_rotate_token(tree):
    root, ws = tree
    install("host", "--root", str(root), "--workspace", str(ws), "--no-start")
    old = conf_token(root)
    install("host", "--root", str(root), "--workspace", str(ws), "--no-start", "--rotate-token")
    assert conf_token(root) != old and "HOSTLINK_TOKEN=%s" % conf_token(root) in (ws / ".env").read_text()


def test_dry_run_changes_nothing(tree):
    root, ws = tree
    before = snapshot(ws)
    r = install("host", "--root", str(root), "--workspace", str(ws), "--dry-run")
    assert not root.exists() and snapshot(ws) == before
    assert "+auth_token = " in r.stdout and "-HOSTLINK_TOKEN=old" in r.stdout
    assert "binary file" in r.stdout


def test_openclaw_json_keeps_other_keys(tree, tmp_path):
    root, ws = tree
    oc = tmp_path / "openclaw.json"
    oc.write_text(json.dumps({"model": "x", "env": {"vars": {"A": "1"}}}))
    install("host", "--root", str(root), "--workspace", str(ws), "--no-start",
            "--openclaw-config", str(oc))
    data = json.loads(oc.read_text())
    assert data["model"] == "x" and data["env"]["vars"]["A"] == "1"
    assert data["env"]["vars"]["HOSTLINK_TOKEN"] == conf_token(root)


def test_compose_override_passes_docker_compose_config(tree, tmp_path):
    root, ws = tree
    base = tmp_path / "docker-compose.yml"
    base.write_text('version: "2.4"\nservices:\n  agent:\n    image: python:3.11-slim-bookworm\n'
                    '    group_add: ["video"]\n')
    install("host", "--root", str(root), "--no-start", "--service", "agent", "--compose-file", str(base))
    override = root / "etc/hostlink/compose/docker-compose.hostlink.yml"
    r = subprocess.run(["docker-compose", "-f", str(base), "-f", str(override), "config"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import yaml
    svc = yaml.safe_load(r.stdout)["services"]["agent"]
    import grp
    assert svc["group_add"] == ["video", str(grp.getgrnam("hostlink").gr_gid)]
    assert svc["environment"]["HOSTLINK_SOCKET"] == "/run/hostlink/hostlink.sock"
    assert "%s:/run/hostlink:rw" % (root / "run/hostlink") in svc["volumes"]


def test_systemd_unit(tree):
    # systemd-analyze verify where it runs; else the unit is checked as INI with an executable ExecStart.
    root, ws = tree
    install("host", "--root", str(root), "--no-start")
    unit = root / "etc/systemd/system/hostlinkd.service"
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert r.returncode == 0 and "hostlinkd.service" not in r.stderr, r.stderr
    import configparser
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.read(unit)
    exec_start = cp["Service"]["ExecStart"].split()
    assert os.access(exec_start[0], os.X_OK) and exec_start[-1] == str(root / "etc/hostlink/hostlink.conf")
    assert cp["Install"]["WantedBy"] == "multi-user.target"


def test_start_then_uninstall_leaves_only_audit_log(tmp_path):
    root, ws = tmp_path / "root", tmp_path / "ws"
    ws.mkdir()
    r = install("host", "--root", str(root), "--workspace", str(ws))
    assert "started hostlinkd in the background" in r.stdout
    env = dict(os.environ, HOSTLINK_SOCKET=str(root / "run/hostlink/hostlink.sock"),
               HOSTLINK_TOKEN=conf_token(root))
    p = subprocess.run([str(ws / "bin/hostlink"), "exec", "echo via-install"], env=env, capture_output=True)
    assert p.stdout == b"via-install\n", p.stderr
    r = install("host", "--root", str(root), "--workspace", str(ws))
    assert "already running" in r.stdout
    install("uninstall", "--root", str(root))
    install("uninstall", "--root", str(root))
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["root/var/log/hostlink/audit.log"]
    assert list(ws.iterdir()) == []


def test_wheel_installs_and_runs_from_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), ROOT],
                   check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("hostlink-*.whl"))
    import zipfile
    assert "hostlink/_bundle/SKILL.md" in zipfile.ZipFile(wheel).namelist()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "-q", str(wheel)], check=True, timeout=300)
    root = tmp_path / "root"
    r = subprocess.run([str(venv / "bin/hostlink-install"), "host", "--root", str(root),
                        "--workspace", str(tmp_path / "ws"), "--no-start"],
                       capture_output=True, text=True, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "etc/hostlink/compose/docker-compose.hostlink.yml").exists()
    assert (tmp_path / "ws/bin/hostlink").exists()
