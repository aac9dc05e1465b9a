"""``hostlink-approve``: answer requests that wait for a person, through hostlinkd's admin socket."""

import argparse
import json
import os
import socket
import sys

DEFAULT_SOCKET = "/run/hostlink-admin/admin.sock"


def call(path, request, stream=False):
    """Send one request; yields each JSON line of the answer."""
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
    except OSError as exc:
        raise SystemExit("hostlink-approve: cannot reach %s: %s (is hostlinkd running, are you root, "
                         "and is it the conf's admin_socket? --socket PATH names another)"
                         % (path, exc.strerror))
    s.sendall((json.dumps(request) + "\n").encode())
    with s.makefile("rb") as f:
        for line in f:
            yield json.loads(line)
            if not stream:
                return


def _line(p):
    """One waiting request for a person: every field's control characters made visible (the
    daemon escapes them already; a line from an older daemon must not move the cursor either)."""
    from ..wire.visible import visible
    env = " ".join("%s=%s" % (visible(n, False), visible(v, False)) for n, v in p["env"])
    return "%s  client=%s  cwd=%s%s  %s" % (
        visible(p["id"], False), visible(p["client"], False), visible(p["cwd"], False),
        ("  env: " + env) if env else "", visible(p["text"], False))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="hostlink-approve",
                                 description="Approve or deny hostlink requests that wait for a person.")
    ap.add_argument("--socket", default=os.environ.get("HOSTLINK_ADMIN_SOCKET", DEFAULT_SOCKET),
                    help="hostlinkd's admin socket (admin_socket in hostlink.conf)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="the waiting requests")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.add_argument("--watch", action="store_true", help="keep printing new requests as they arrive")
    ok = sub.add_parser("approve", help="let a request run")
    ok.add_argument("id")
    ok.add_argument("--always", action="store_true",
                    help="also store this exact request as a rule in policy_dir (shown)")
    no = sub.add_parser("deny", help="refuse a request")
    no.add_argument("id")
    no.add_argument("--reason", default="", help="told to the client")
    sub.add_parser("status", help="what hostlinkd holds now: connections, commands, jobs, "
                                  "descriptors (JSON)")
    args = ap.parse_args(argv)
    if args.cmd == "status":
        print(json.dumps(next(call(args.socket, {"op": "status"})), sort_keys=True))
        return 0
    if args.cmd == "list":
        if args.watch:
            try:
                for p in call(args.socket, {"op": "watch"}, stream=True):
                    print(json.dumps(p) if args.json else _line(p), flush=True)
            except KeyboardInterrupt:
                return 0
            return 0
        resp = next(call(args.socket, {"op": "list"}))
        for p in resp.get("pending", []):
            print(json.dumps(p) if args.json else _line(p))
        return 0
    req = {"op": args.cmd, "id": args.id}
    if args.cmd == "approve":
        req["always"] = args.always
    else:
        req["reason"] = args.reason
    resp = next(call(args.socket, req))
    if not resp.get("ok"):
        from ..wire.visible import visible
        print("hostlink-approve: %s" % visible(resp.get("error"), False), file=sys.stderr)
        return 1
    if resp.get("rule"):
        from ..wire.visible import visible
        print("stored in %s:\n  %s" % (visible(resp["rule_file"], False), visible(resp["rule"], False)))
    print("%s %s" % ("approved" if args.cmd == "approve" else "denied", args.id))
    return 0


if __name__ == "__main__":
    sys.exit(main())
