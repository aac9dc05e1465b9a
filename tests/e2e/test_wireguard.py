"""Over a real WireGuard tunnel: two network namespaces joined by a veth pair, userspace
wireguard-go in each, hostlinkd bound to the tunnel address in one, the client in the other.

All addresses belong to these namespaces, made and removed by the test; nothing leaves the machine.
"""

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from hostlink.daemon import tls
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.e2e
TAG = uuid.uuid4().hex[:6]
NS = {"a": "hl-wg-a-" + TAG, "b": "hl-wg-b-" + TAG}
IF = {"a": "wghla" + TAG[:4], "b": "wghlb" + TAG[:4]}
VETH = {"a": "vhla" + TAG[:4], "b": "vhlb" + TAG[:4]}
UNDERLAY = {"a": "10.231.17.1", "b": "10.231.17.2"}  # inside the test's namespaces only
TUNNEL = {"a": "10.231.18.1", "b": "10.231.18.2"}


def sh(*args, ns=None, **kw):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60, **kw)


@pytest.fixture(scope="module")
def tunnel(tmp_path_factory):
    for tool in ("wireguard-go", "wg", "ip"):
        assert shutil.which(tool), "%s is missing: scripts/test installs wireguard-go and wireguard-tools" % tool
    tmp = tmp_path_factory.mktemp("wg")
    procs = []
    try:
        for side in "ab":
            sh("ip", "netns", "add", NS[side])
            sh("ip", "link", "set", "lo", "up", ns=NS[side])
        sh("ip", "link", "add", VETH["a"], "type", "veth", "peer", "name", VETH["b"])
        keys = {}
        for side in "ab":
            sh("ip", "link", "set", VETH[side], "netns", NS[side])
            sh("ip", "addr", "add", UNDERLAY[side] + "/24", "dev", VETH[side], ns=NS[side])
            sh("ip", "link", "set", VETH[side], "up", ns=NS[side])
            key = sh("wg", "genkey").stdout.strip()
            keys[side] = (key, sh("wg", "pubkey", input=key).stdout.strip())
            (tmp / side).write_text(key)
            procs.append(subprocess.Popen(["ip", "netns", "exec", NS[side], "wireguard-go", "-f", IF[side]],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for side, other in (("a", "b"), ("b", "a")):
            wait_for(lambda: subprocess.run(["ip", "netns", "exec", NS[side], "ip", "link", "show", IF[side]],
                                            capture_output=True).returncode == 0, 10, "wireguard-go " + side)
            sh("wg", "set", IF[side], "private-key", str(tmp / side), "listen-port", "51820",
               "peer", keys[other][1], "allowed-ips", TUNNEL[other] + "/32",
               "endpoint", UNDERLAY[other] + ":51820", ns=NS[side])
            sh("ip", "addr", "add", TUNNEL[side] + "/24", "dev", IF[side], ns=NS[side])
            sh("ip", "link", "set", IF[side], "up", ns=NS[side])
        yield tmp
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for side in "ab":
            subprocess.run(["ip", "netns", "del", NS[side]], capture_output=True)
            try:
                os.unlink("/var/run/wireguard/%s.sock" % IF[side])
            except OSError:
                pass


def test_command_runs_in_the_daemons_namespace_over_wireguard(tunnel, client_app):
    conf = tunnel / "hostlink.conf"
    conf.write_text("auth_token = wg-token-0123456789\nsocket = %s/hl.sock\naudit_log = %s/audit.log\n"
                    "tcp_enabled = yes\ntcp_bind = %s\ntcp_port = 9876\ntls = required\n"
                    % (tunnel, tunnel, TUNNEL["a"]))
    os.chmod(conf, 0o600)
    daemon = subprocess.Popen(["ip", "netns", "exec", NS["a"], sys.executable, "-m", "hostlink.daemon",
                               "-c", str(conf)], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=open(tunnel / "daemon.log", "wb"))
    try:
        wait_for(lambda: (tunnel / "hostlink.crt").exists() and (tunnel / "hl.sock").exists(), 15,
                 "hostlinkd in namespace a")
        fp = tls.fingerprint(str(tunnel / "hostlink.crt"))
        env = {"PATH": os.environ["PATH"], "HOSTLINK_TOKEN": "wg-token-0123456789"}
        args = ["ip", "netns", "exec", NS["b"], client_app, "-a", "%s:9876" % TUNNEL["a"],
                "--fingerprint", fp]
        r = subprocess.run(args + ["exec", "ip -o addr show dev %s" % IF["a"]], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr + (tunnel / "daemon.log").read_text()
        assert TUNNEL["a"] in r.stdout  # only namespace a has this interface and address
        r = subprocess.run(args + ["ping"], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "pong" in r.stdout
        peers = subprocess.run(["ip", "netns", "exec", NS["a"], "wg", "show", IF["a"], "transfer"],
                               capture_output=True, text=True).stdout
        assert any(int(n) > 0 for n in peers.split()[1:]), "no bytes went through the tunnel"
    finally:
        daemon.terminate()
        daemon.wait(20)
