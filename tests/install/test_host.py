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
    assert "wrote" not in r.stdout and r.stdout.count("unchanged") == 8
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
    r = install("host", "--root", str(root), "--no-start", "--compose-file", str(base),
                "--workspace", str(ws), "--workspace-mount", "/workspace")
    override = root / "etc/hostlink/compose/docker-compose.hostlink.yml"
    out = subprocess.run(["docker-compose", "-f", str(base), "-f", str(override), "config"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    import yaml
    svc = yaml.safe_load(out.stdout)["services"]["agent"]  # the file's only service
    import grp
    gid = grp.getgrnam("hostlink").gr_gid
    assert svc["group_add"] == ["video", str(gid)]
    assert svc["environment"] == {"HOSTLINK_SOCKET": "/run/hostlink/hostlink.sock",
                                  "HOSTLINK_TOKEN_FILE": "/run/secrets/hostlink_token",
                                  "HOSTLINK_PATH_MAP": "/workspace=%s" % ws}
    assert "%s:/workspace:rw" % ws in svc["volumes"]
    assert "%s:/run/hostlink:rw" % (root / "run/hostlink") in svc["volumes"]
    assert "%s:/usr/local/bin/hostlink:ro" % (root / "var/lib/hostlink/client/hostlink") in svc["volumes"]
    token = root / "etc/hostlink/compose/secrets/hostlink_token"
    assert "%s:/run/secrets/hostlink_token:ro" % token in svc["volumes"]
    # The override holds no secret, so whoever runs docker-compose may read it; the token file
    # is for root here and for the socket's group in the container.
    assert conf_token(root) not in override.read_text() and override.stat().st_mode & 0o777 == 0o644
    assert token.read_text() == conf_token(root) + "\n"
    assert (token.stat().st_mode & 0o777, token.stat().st_gid) == (0o440, gid)
    assert token.parent.stat().st_mode & 0o777 == 0o700
    assert "docker-compose -f %s -f %s exec -T agent hostlink ping" % (base, override) in r.stdout


def test_compose_service_is_picked_from_the_file(tree, tmp_path):
    root, ws = tree
    project = tmp_path / "project"
    project.mkdir()
    (project / "docker-compose.yml").write_text(
        'version: "2.4"\nservices:\n  gateway:\n    image: a\n  db:\n    image: b\n')
    here = dict(os.environ, PYTHONPATH=ROOT)  # run where the user's compose file is
    r = subprocess.run(INSTALL + ["host", "--root", str(root), "--no-start"], cwd=str(project),
                       env=here, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "has several services (gateway, db): name the one your agent runs in with --service NAME" in r.stderr
    r = subprocess.run(INSTALL + ["host", "--root", str(root), "--no-start", "--service", "web"],
                       cwd=str(project), env=here, capture_output=True, text=True)
    assert r.returncode == 1 and "--service web is not in %s (its services: gateway, db)" % (
        project / "docker-compose.yml") in r.stderr
    r = subprocess.run(INSTALL + ["host", "--root", str(root), "--no-start", "--service", "gateway"],
                       cwd=str(project), env=here, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "exec -T gateway hostlink ping" in r.stdout
    assert '"gateway":' in (root / "etc/hostlink/compose/docker-compose.hostlink.yml").read_text()


def test_workspace_files_belong_to_its_owner(tmp_path):
    import pathlib
    import tempfile
    base = pathlib.Path(tempfile.mkdtemp(prefix="hostlink-ws-"))
    os.chmod(base, 0o755)
    root, ws = base / "root", base / "ws"
    ws.mkdir()
    os.chown(ws, 1000, 1000)
    try:
        install("host", "--root", str(root), "--workspace", str(ws), "--no-start")
        for path in (ws / ".env", ws / "bin", ws / "bin/hostlink"):
            assert (path.stat().st_uid, path.stat().st_gid) == (1000, 1000), path
        import pwd
        assert conf_run_as(root) == pwd.getpwuid(1000).pw_name  # the workspace's owner runs them
        assert os.lstat(ws / "bin/hostlink-cli").st_uid == 1000
        assert (ws / ".env").stat().st_mode & 0o777 == 0o600
    finally:
        install("uninstall", "--root", str(root))
        shutil.rmtree(base)


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
    p = subprocess.run([str(ws / "bin/hostlink"), "exec", "echo via-install; id -un"], env=env,
                       capture_output=True)
    assert p.stdout == b"via-install\nhostlink\n", p.stderr  # not root: the dedicated user
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


def conf_run_as(root):
    lines = (root / "etc/hostlink/hostlink.conf").read_text().splitlines()
    return next((l.split("=", 1)[1].strip() for l in lines if l.startswith("run_as_user")), None)


def test_commands_do_not_run_as_root_unless_asked(tree):
    root, ws = tree  # ws belongs to root, and no sudo: the dedicated user
    r = install("host", "--root", str(root), "--workspace", str(ws), "--no-start")
    assert conf_run_as(root) == "hostlink" and "as hostlink (a dedicated user)" in r.stdout
    # Everything it writes is under --root, the jobs' spool too (not the host's).
    conf = (root / "etc/hostlink/hostlink.conf").read_text()
    assert "job_spool_dir = %s\n" % (root / "var/lib/hostlink/jobs") in conf
    import pwd
    import grp
    assert pwd.getpwnam("hostlink").pw_gid == grp.getgrnam("hostlink").gr_gid
    if "docker" in [g.gr_name for g in grp.getgrall()]:
        assert "hostlink" in grp.getgrnam("docker").gr_mem
    doctor = install("doctor", "--root", str(root), check=False)
    assert "ok   commands run as: hostlink" in doctor.stdout
    install("host", "--root", str(root), "--workspace", str(ws), "--no-start", "--run-as", "root")
    assert conf_run_as(root) == "root"
    install("host", "--root", str(root), "--workspace", str(ws), "--no-start")  # kept
    assert conf_run_as(root) == "root"
    r = install("host", "--root", str(root), "--no-start", "--run-as", "no-such-user-here", check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "--run-as no-such-user-here: no such user on this host" in r.stderr
