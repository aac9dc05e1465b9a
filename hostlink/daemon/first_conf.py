"""The first hostlink's confs as it read them: a conf with its key names runs with its defaults
where it is silent (so it means what it meant there), and its jobs stay in output_tmpdir/jobs only
where that is safe for a root daemon. config.py calls these."""

import os
import stat

# Its key names: a conf with one of them is its (config.ALIASES, config.IGNORED, output_tmpdir).
ITS_NAMES = ("unix_path", "unix_mode", "unix_group", "output_tmpdir", "max_concurrent_io", "log_file")
_DAY_MS = 24 * 3600 * 1000

# What the first hostlink runs with where its conf is silent, when ours differs. A conf that uses
# its key names (ALIASES, IGNORED) is its conf: it keeps these, so it means what it meant there.
DEFAULTS = {
    "node_name": "hostlink", "socket_group": "hostlink", "max_concurrent": 8,
    "max_timeout_ms": 300000, "default_max_output_bytes": 4 << 20, "max_output_bytes": 64 << 20,
    "job_max_timeout_ms": 7 * _DAY_MS, "job_max_spool_bytes": 256 << 20, "job_retention_s": 86400,
    "shutdown_grace_ms": 2000,  # it waits 2 s for running commands, then kills them
}


def is_its(text):
    """Whether ``text`` uses a key name of the first hostlink's."""
    return any(line.partition("=")[0].strip() in ITS_NAMES for line in text.splitlines())


def defaults(cfg, explicit):
    """Its defaults for what its conf does not set (DEFAULTS)."""
    if not (cfg.old_names or cfg.first_keys or "output_tmpdir" in explicit):
        return
    for key, value in DEFAULTS.items():
        if key not in explicit:
            setattr(cfg, key, value)


def spool_in_output_tmpdir(cfg):
    """Jobs where it kept them, output_tmpdir/jobs, when only root may change that directory: the
    root daemon writes there, and whoever owns it could swap the spool for a link."""
    try:
        st = os.lstat(cfg.output_tmpdir)
        private = stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022
    except OSError:
        private = False
    if private:
        cfg.job_spool_dir = os.path.join(cfg.output_tmpdir, "jobs")
    else:
        cfg.notices.append("%s: jobs are spooled in %s, not %s/jobs: that directory is not root's "
                           "alone" % (cfg.path, cfg.job_spool_dir, cfg.output_tmpdir))
