"""The takeover plan of a first-hostlink conf, without writing anything: what is kept, renamed,
written out, dropped, and what refuses. Confs written from its documented format (SPEC.md 4.2)."""

import os

import pytest

from hostlink.daemon import config
from hostlink.install import first_hostlink as first
from hostlink.install import host, takeover

ITS_CONF = """\
node_name = desktop
auth_token = a3f8000000000000000000000000000000000000000000000000000000009c12
unix_enabled = true
unix_path = /run/hostlink/hostlink.sock
unix_mode = 0660
unix_group = root
tcp_enabled = false
max_concurrent = 8
max_concurrent_io = 4
default_timeout_ms = 30000
max_timeout_ms = 300000
shell = /bin/sh
output_tmpdir = /run/hostlink/output
log_target = syslog
log_level = warn
run_as_user = nobody
"""


def planned(tmp_path, text, mode=0o640):
    layout = host.Layout(host.Options(root=str(tmp_path / "root")))
    os.makedirs(os.path.dirname(layout.conf))
    with open(layout.conf, "w") as f:
        f.write(text)
    os.chmod(layout.conf, mode)
    old = takeover.find(layout)
    return old and takeover.plan(old, layout), layout


def test_its_conf_is_taken_over_with_every_setting(tmp_path):
    pl, layout = planned(tmp_path, ITS_CONF)
    got = {k: v for k, v, _ in pl.settings}
    assert got["auth_token"].startswith("a3f8") and got["node_name"] == "desktop"
    assert (got["socket"], got["socket_mode"], got["socket_group"]) == \
        ("/run/hostlink/hostlink.sock", "0660", "root")
    assert (got["run_as_user"], got["log_level"], got["max_concurrent"]) == ("nobody", "warning", "8")
    # What it did not say, it ran with its defaults: written out, so nothing changes meaning.
    assert got["default_max_output_bytes"] == "4194304" and got["job_max_spool_bytes"] == "268435456"
    assert got["shutdown_grace_ms"] == "2000"
    assert got["job_spool_dir"] == os.path.join(layout.root, "var/lib/hostlink/jobs")
    assert [k for k, _ in pl.dropped] == ["max_concurrent_io"]
    text = takeover.render_conf(pl, pl.token)
    assert takeover.is_ours(text) and "# unix_path in its conf\nsocket = /run/hostlink/hostlink.sock" in text
    cfg = config.parse(text, "new.conf")  # hostlinkd reads it as ours: no notice, same meaning
    assert not cfg.notices and cfg.run_as_user == "nobody" and cfg.max_timeout_ms == 300000
    lines = "\n".join(pl.lines)
    assert "was 0640 root:root, so group root could read its token" in lines
    assert "renamed: unix_path -> socket, unix_mode -> socket_mode, unix_group -> socket_group" in lines


def test_its_values_read_as_its_daemon_read_them(tmp_path):
    pl, _ = planned(tmp_path, "auth_token = t0123456789abcdef\nunix_path = /tmp/x.sock\n"
                    "tcp_enabled = on\nmax_concurrent = 4x\nlog_level = loud\nunix_mode = 600\n"
                    "log_file = /var/log/hl.log\n[anything]\nshell = /bin/bash\n")
    got = {k: v for k, v, _ in pl.settings}
    # "on" was false to it, "4x" was 4, an unknown level was info; sections meant nothing.
    assert (got["tcp_enabled"], got["max_concurrent"], got["log_level"]) == ("false", "4", "info")
    assert got["socket_mode"] == "0600" and got["shell"] == "/bin/bash"
    assert ("log_file", "the first hostlink ignored it too (not one of its keys)") in pl.dropped


def test_tcp_stays_open_to_its_clients(tmp_path):
    pl, _ = planned(tmp_path, ITS_CONF.replace("tcp_enabled = false", "tcp_enabled = true\n"
                                               "tcp_bind = 0.0.0.0"))
    got = {k: v for k, v, _ in pl.settings}
    assert got["tls"] == "optional" and got["tcp_allow_any"] == "true"
    assert any("stays open in clear" in line for line in pl.lines)


def test_a_missing_group_is_dropped_with_its_reason(tmp_path):
    pl, _ = planned(tmp_path, ITS_CONF.replace("unix_group = root", "unix_group = no-such-group-xyz"))
    assert "socket_group" not in {k for k, _, _ in pl.settings}
    assert any(k == "unix_group" and "does not exist" in why for k, why in pl.dropped)


def test_a_value_hostlinkd_cannot_keep_refuses(tmp_path):
    with pytest.raises(takeover.TakeoverError, match="max_concurrent"):
        planned(tmp_path, ITS_CONF.replace("max_concurrent = 8", "max_concurrent = 0"))


def test_our_own_conf_is_not_taken_over_and_a_stranger_is_left_alone(tmp_path):
    pl, _ = planned(tmp_path / "a", takeover.OUR_HEADER + "\nauth_token = x\n")
    assert pl is None
    with pytest.raises(takeover.TakeoverError, match="not written by hostlink-install"):
        planned(tmp_path / "b", "auth_token = x\nsocket = /run/x.sock\n[client ci]\ntoken = y\n")


def test_looks_like_its_conf():
    assert first.looks_like(ITS_CONF)
    assert first.looks_like("auth_token = x\nshell = /bin/sh\n")  # only its keys
    assert not first.looks_like("auth_token = x\naudit_log = /var/log/a\n")
    assert (first.c_int("30s"), first.c_int("-5"), first.c_int("x")) == (30, -5, 0)
