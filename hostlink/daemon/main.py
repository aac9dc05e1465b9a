"""hostlinkd's command line: parse flags, load the configuration, run the server in the foreground."""

import argparse
import asyncio
import logging
import logging.handlers
import os
import signal
import sys

from .. import __version__
from . import config, spawn, tls
from .server import Server

log = logging.getLogger("hostlinkd")


def _args(argv):
    ap = argparse.ArgumentParser(
        prog="hostlinkd", description="Run commands for hostlink clients (stays in the foreground).")
    ap.add_argument("-c", "--config", default=config.DEFAULT_PATH, help="hostlink.conf to read")
    ap.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    ap.add_argument("-p", "--pid-file", default=None, help="write the daemon's pid to this file")
    ap.add_argument("-f", "--foreground", action="store_true",
                    help="accepted for the first hostlink; hostlinkd always stays in the foreground")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="log debug messages")
    ap.add_argument("-V", "--version", action="version", version="hostlinkd " + __version__)
    return ap.parse_args(argv)


def _setup_logging(cfg, verbose):
    target = cfg.log_target
    if target == "syslog" and not os.path.exists("/dev/log"):
        # The first hostlink's example conf says syslog; where none runs, its messages were lost.
        print("hostlinkd: notice: log_target = syslog but no syslog runs here (no /dev/log); "
              "logging to stderr", file=sys.stderr)
        target = "stderr"
    if target == "syslog":
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.setFormatter(logging.Formatter("hostlinkd[%(process)d]: %(message)s"))
    elif target == "stderr":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("hostlinkd: %(levelname)s: %(message)s"))
    else:
        handler = logging.FileHandler(target)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else getattr(logging, cfg.log_level.upper()))


def main(argv=None):
    args = _args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        print("hostlinkd: %s" % exc, file=sys.stderr)
        return 2
    for notice in cfg.notices:
        print("hostlinkd: notice: %s" % notice, file=sys.stderr)
    from .policy import warnings
    if args.check_config:
        for warning in warnings(cfg):
            print("hostlinkd: warning: %s" % warning, file=sys.stderr)
        print("%s: ok" % args.config)
        return 0
    if args.pid_file:
        cfg.pid_file = args.pid_file
    try:
        _setup_logging(cfg, args.verbose)
    except OSError as exc:
        print("hostlinkd: cannot open log %s: %s" % (cfg.log_target, exc.strerror), file=sys.stderr)
        return 2
    for warning in warnings(cfg):
        log.warning("%s", warning)
    try:
        server = Server(cfg)
    except OSError as exc:
        print("hostlinkd: cannot open audit log %s: %s" % (cfg.audit_log, exc.strerror),
              file=sys.stderr)
        return 2
    if not spawn.become_subreaper():
        log.warning("could not become a child subreaper: orphans of commands go to PID 1")
    spawn.clean_signal_state()
    try:
        return asyncio.run(_run(server, args.config))
    except OSError as exc:
        print("hostlinkd: %s" % (exc.strerror and "%s: %s" % (exc.filename or "", exc.strerror)
                                  or exc), file=sys.stderr)
        return 2
    except tls.TLSError as exc:
        print("hostlinkd: %s" % exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


async def _run(server, path):
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGCHLD, server.state.reaper.reap)
    loop.add_signal_handler(signal.SIGTERM, server.stop)
    loop.add_signal_handler(signal.SIGINT, server.stop)
    loop.add_signal_handler(signal.SIGHUP, _reload, server, path)
    if server.cfg.pid_file:
        with open(server.cfg.pid_file, "w") as f:
            f.write("%d\n" % os.getpid())
    try:
        await server.run()
    finally:
        if server.cfg.pid_file:
            try:
                os.unlink(server.cfg.pid_file)
            except OSError:
                pass
    return 0


def _reload(server, path):
    try:
        cfg = config.load(path)
    except config.ConfigError as exc:
        log.error("reload refused, keeping the running configuration: %s", exc)
        return
    cfg.pid_file = server.cfg.pid_file  # set at start (perhaps by -p); a reload cannot move it
    server.reload(cfg)


if __name__ == "__main__":
    sys.exit(main())
