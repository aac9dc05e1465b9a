"""``hostlink targets``: the targets of targets.conf, and with --ping whether each answers."""

import threading

from . import output, targets_conf
from .errors import AuthFailed, ConnectFailed, HostlinkError
from .session import Endpoint, connect_timeout, ping, target_endpoint, token_for

PING_CONNECT_TIMEOUT_MS = 2000  # many targets at once: an unreachable one must not hold the list


def run(opts, words, environ, warnings):
    """List the targets (-j: as JSON); --ping adds state, node and uptime_s to each."""
    rows = targets_conf.listing(opts.targets_file, environ, warnings)
    if opts.ping:
        ping_all(rows, opts, environ, warnings)
    if opts.json and opts.compat:
        from . import compat
        output.print_json(compat.targets(rows))
    elif opts.json:
        output.print_json(rows)
    else:
        output.targets_table(rows, opts.ping)
    return 0


def ping_all(rows, opts, environ, warnings):
    """Ping every target at once, with a short connect timeout; adds state, node, uptime_s."""
    threads = [threading.Thread(target=_ping_row, args=(r, opts, environ, warnings)) for r in rows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _ping_row(row, opts, environ, warnings):
    try:
        if row["name"] == "(local)":
            ep = Endpoint(name="(local)", socket=row["where"])
        else:
            ep = target_endpoint(row["name"], opts.targets_file, environ, warnings)
        ep.token = token_for(opts, environ, ep.token, warnings)
        row["node"], row["uptime_s"] = ping(ep, min(connect_timeout(opts), PING_CONNECT_TIMEOUT_MS))
        row["state"] = "ok"
    except AuthFailed:
        row["state"] = "auth failed"
    except ConnectFailed as exc:
        row["state"] = "tls mismatch" if "fingerprint" in exc.message else "unreachable"
    except HostlinkError as exc:
        row["state"] = "error: %s" % exc.message
