"""hostlink.conf parsing: the seed's lines, the first hostlink's file, and clear errors."""

import pytest

from hostlink.daemon import config

FIRST_HOSTLINK_CONF = """\
# /etc/hostlink/hostlink.conf, written from the first hostlink's documented format
node_name = desktop
auth_token = a3f8000000000000000000000000000000000000000000000000000000009c12

# --- Unix socket transport ---
unix_enabled = true
unix_path = /run/hostlink/hostlink.sock
unix_mode = 0660
unix_group = root

# --- TCP transport ---
tcp_enabled = true
tcp_bind = 10.0.0.1
tcp_port = 9876

max_concurrent = 8
default_timeout_ms = 30000
max_timeout_ms = 300000
shell = /bin/sh

default_max_output_bytes = 4194304
max_output_bytes = 67108864
output_tmpdir = /run/hostlink/output

log_target = syslog
log_level = info
run_as_user = root
"""


def test_seed_lines_parse():
    cfg = config.parse("auth_token = s3cret\nshell = /bin/bash\n")
    assert cfg.auth_token == "s3cret" and cfg.shell == "/bin/bash"
    assert cfg.socket == "/run/hostlink/hostlink.sock"


def test_first_hostlink_conf_reads_unchanged():
    cfg = config.parse(FIRST_HOSTLINK_CONF.replace("/run/hostlink/output", "/nonexistent/output"),
                       "old.conf")
    assert cfg.node == "desktop" and cfg.socket == "/run/hostlink/hostlink.sock"
    assert cfg.socket_mode == 0o660 and cfg.max_concurrent == 8 and cfg.tcp_port == 9876
    assert cfg.max_timeout_ms == 300000 and cfg.tcp_enabled
    assert cfg.default_max_output_bytes == 4194304 and cfg.max_output_bytes == 67108864
    assert cfg.log_level == "info" and cfg.output_tmpdir == "/nonexistent/output"
    # Its jobs were in output_tmpdir/jobs: ours only where root alone may change that directory.
    assert cfg.job_spool_dir == "/var/lib/hostlink/jobs" and "not root's alone" in cfg.notices[0]


def test_job_spool_in_a_private_output_tmpdir(tmp_path):
    import os
    os.chmod(tmp_path, 0o700)
    cfg = config.parse("output_tmpdir = %s\n" % tmp_path, "c")
    assert cfg.job_spool_dir == str(tmp_path / "jobs") and not cfg.notices
    os.chmod(tmp_path, 0o777)
    assert config.parse("output_tmpdir = %s\n" % tmp_path, "c").job_spool_dir == "/var/lib/hostlink/jobs"


def test_first_hostlink_values_keep_their_meaning():
    # warn is its name for warning; its default timeout is clamped to a lower cap, as it does.
    cfg = config.parse("log_level = warn\nmax_timeout_ms = 5000\n", "c")
    assert cfg.log_level == "warning" and cfg.default_timeout_ms == 5000 and not cfg.notices
    cfg = config.parse("unix_path = /run/x.sock\n", "c")  # its conf: its defaults where silent
    assert (cfg.node, cfg.max_concurrent, cfg.max_timeout_ms, cfg.default_max_output_bytes,
            cfg.shutdown_grace_ms) == ("hostlink", 8, 300000, 4 << 20, 2000)
    cfg = config.parse("socket = /run/x.sock\n", "c")  # ours: our defaults
    assert (cfg.max_concurrent, cfg.default_max_output_bytes, cfg.shutdown_grace_ms) == (16, 0, 10000)
    cfg = config.parse("default_timeout_ms = 9000\nmax_timeout_ms = 5000\n", "c")
    assert cfg.default_timeout_ms == 5000 and "commands get 5000 ms" in cfg.notices[0]
    cfg = config.parse("default_max_output_bytes = 100\nmax_output_bytes = 10\n", "c")
    assert cfg.default_max_output_bytes == 10
    cfg = config.parse("max_concurrent_io = 4\nlog_file = /var/log/x.log\n", "c")
    assert [n.split("'")[1] for n in cfg.notices] == ["max_concurrent_io", "log_file"]


def test_missing_unix_group_is_a_notice_but_socket_group_refused():
    cfg = config.parse("unix_group = no-such-group-xyz\n", "c")
    assert cfg.socket_group == "" and "keeps the daemon's group" in cfg.notices[0]
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.parse("socket_group = no-such-group-xyz\n", "c")


def test_group_readable_conf_refused_with_the_exact_fix(tmp_path):
    import os
    conf = tmp_path / "hostlink.conf"
    conf.write_text("auth_token = 0123456789abcdef\n")
    os.chmod(conf, 0o640)
    with pytest.raises(config.NotPrivate) as err:
        config.load(str(conf))
    assert "mode is 0640" in str(err.value) and "run: chmod 600 %s" % conf in str(err.value)
    assert err.value.path == str(conf)
    from hostlink.daemon import private
    assert "-> 0600" in private.make_private(str(conf))
    assert config.load(str(conf)).auth_token == "0123456789abcdef"


@pytest.mark.parametrize("value, expected", [("1", True), ("yes", True), ("On", True),
                                             ("false", False), ("0", False), ("off", False)])
def test_booleans(value, expected):
    assert config.parse("unix_enabled = %s" % value).unix_enabled is expected


@pytest.mark.parametrize("text, message", [
    ("frob = 1", "x.conf:1: unknown key 'frob'"),
    ("\n\nmax_concurrent = -1", "x.conf:3: bad value for 'max_concurrent': must be between"),
    ("shell = bash", "must be an absolute path"),
    ("unix_mode = rw", "octal"),
    ("just words", "expected 'key = value'"),
    ("shell = /bin/sh\nshell = /bin/bash", "x.conf:2: 'shell' is set again (first at line 1)"),
    ("tcp_enabled = 1\ntcp_bind = 0.0.0.0", "tcp_allow_any"),
    ("socket_group = no-such-group-xyz", "does not exist"),
])
def test_errors_name_file_line_reason(text, message):
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config.parse(text, "x.conf")


def test_wildcard_bind_allowed_explicitly():
    assert config.parse("tcp_enabled = yes\ntcp_bind = ::\ntcp_allow_any = true").tcp_allow_any


def test_load_requires_token(tmp_path):
    conf = tmp_path / "c"
    conf.write_text("shell = /bin/sh\n")
    with pytest.raises(config.ConfigError, match="no auth_token"):
        config.load(str(conf))


def test_setup_guide_documents_every_key():
    import os
    guide = open(os.path.join(os.path.dirname(__file__), "..", "..", "references", "setup.md")).read()
    missing = [k for k in config.KEYS if "`%s`" % k not in guide]
    assert not missing, missing
