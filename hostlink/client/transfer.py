"""``hostlink cp``, ``put``, ``get``, ``df`` and the first hostlink's ``put-stream``/``get-stream``:
their arguments, the endpoint, and what to tell; tarpipe.py moves the bytes."""

import os

from ..wire.protocol import Exec
from . import output, tarpipe, targets_conf
from ..wire import plain
from .errors import RemoteFailed, TransferFailed, UsageError
from .session import Session, connect_timeout, endpoint, need_token, raise_for, whole_ms


def parse_args(words, extra=None):
    """(paths, excludes, verify) from cp/put/get arguments; the first hostlink's flags accepted
    (--mkdir and --mode land in ``extra``, for put)."""
    extra = [] if extra is None else extra
    paths, excludes, verify, i = [], [], False, 0
    while i < len(words):
        w = words[i]
        if w == "--exclude" or w.startswith("--exclude="):
            i, pattern = _value(words, i, "--exclude needs a pattern")
            excludes.append(pattern)
        elif w == "--verify":
            verify = True
        elif w == "--stream":
            pass  # the first hostlink's: streaming is how this one always works
        elif w in ("-r", "-R", "--recursive"):
            raise UsageError("%s is not needed: directories are copied whole" % w)
        elif w == "--mkdir":
            extra.append("--mkdir")
        elif w == "--mode" or w.startswith("--mode="):
            i, mode = _value(words, i, "--mode requires an octal argument")
            try:
                int(mode, 8)
            except ValueError:
                raise UsageError("--mode requires an octal argument, not %r" % mode)
            extra += ["--mode", mode]
        elif w.startswith("-") and w != "-":
            raise UsageError("unknown transfer flag %s (known: --exclude GLOB, --verify)" % w)
        else:
            paths.append(w)
        i += 1
    if len(paths) != 2:
        raise UsageError("a transfer takes two paths: SRC DST")
    return paths, excludes, verify


def _value(words, i, missing):
    """(index, value) of the flag at ``i``: after its ``=``, or the next word."""
    if "=" in words[i]:
        return i, words[i].split("=", 1)[1]
    if i + 1 < len(words):
        return i + 1, words[i + 1]
    raise UsageError(missing)


def put(opts, words, environ, warnings, verify_always=False):
    """hostlink put LOCAL REMOTE"""
    extra = []
    (local, remote), excludes, verify = parse_args(words, extra)
    verify = verify or verify_always or opts.verify
    return _transfer(opts, environ, warnings, "put", None, local, remote, excludes, verify, extra)


def get(opts, words, environ, warnings, verify_always=False):
    """hostlink get REMOTE LOCAL"""
    (remote, local), excludes, verify = parse_args(words)
    verify = verify or verify_always or opts.verify
    return _transfer(opts, environ, warnings, "get", None, local, remote, excludes, verify)


def put_stream(opts, words, environ, warnings):
    """The first hostlink's put-stream: a put with SHA-256 verification."""
    return put(opts, words, environ, warnings, verify_always=True)


def get_stream(opts, words, environ, warnings):
    """The first hostlink's get-stream: a get with SHA-256 verification."""
    return get(opts, words, environ, warnings, verify_always=True)


def cp(opts, words, environ, warnings):
    """hostlink cp SRC DST, one side host:PATH or TARGET:PATH, or - for a tar stream."""
    (src, dst), excludes, verify = parse_args(words)
    path = targets_conf.search_path(opts.targets_file, environ)
    names = set(targets_conf.load(path, warnings)) if path else set()
    s_target, s_path = tarpipe.split_remote(src, names)
    d_target, d_path = tarpipe.split_remote(dst, names)
    if (s_target is None) == (d_target is None):
        raise UsageError("cp wants one side on the host (host:PATH or TARGET:PATH) and one here")
    if src == "-" or dst == "-":
        return _tar_stream(opts, environ, warnings, s_target or d_target, s_path or d_path,
                           "send" if dst == "-" else "receive", excludes)
    if d_target:
        return _transfer(opts, environ, warnings, "put", d_target, src, d_path, excludes, verify)
    return _transfer(opts, environ, warnings, "get", s_target, dst, s_path, excludes, verify)


def _endpoint(opts, environ, warnings, target):
    ep = endpoint(opts, environ, warnings, None if target in (None, "host") else target)
    need_token(ep)
    return ep


def _session(opts, ep):
    """A Session for a transfer: told when it waits for a free slot (transfers take one too)."""
    return Session(ep, connect_timeout(opts), on_wait=output.waiting)


def _transfer(opts, environ, warnings, direction, target, local, remote, excludes, verify, extra=()):
    ep = _endpoint(opts, environ, warnings, target)
    fds_mode = bool(ep.socket)
    meter = None
    if not opts.quiet:
        from .progress import wanted
        meter = wanted(opts, environ)

    def factory(action, args, mode=None):
        return Exec(argv=tuple(args), xfer=action, mode=mode or ("fds" if fds_mode else "relay"),
                    timeout_ms=whole_ms(opts.timeout, "-T") if opts.timeout else 0,
                    queue=not opts.no_wait)
    # Where a get lands: into ``local`` when it is a directory (decided before it exists).
    landed = os.path.join(local, os.path.basename(remote.rstrip("/"))) if os.path.isdir(local) else local
    try:
        if direction == "put":
            with _session(opts, ep) as session:
                result = tarpipe.put(session, factory, local, remote, excludes, verify, fds_mode,
                                     extra, meter)
        else:
            result = _get(opts, ep, factory, local, remote, excludes, verify, meter)
    except OSError as exc:  # a local file (the network's errors are ConnectFailed already)
        raise TransferFailed(plain.words(exc, " here")) from None
    except TransferFailed as exc:
        if opts.compat and getattr(exc, "reason", None):  # the first hostlink's words
            # a path its daemon could not open: its exit 1, as for a command that failed there
            raise RemoteFailed("cannot open %s on the host: %s" % (exc.path, exc.reason)) from None
        raise
    raise_for(result)
    if result.returncode:
        raise TransferFailed("")  # the host side has said why, on our stderr
    if opts.compat and opts.json:  # the first hostlink's answers, one per file
        from . import compat
        for obj in (compat.put_done(result.node, local, remote) if direction == "put"
                    else compat.got(result.node, remote, landed)):
            output.print_json(obj)
    return 0


def _get(opts, ep, factory, local, remote, excludes, verify, meter):
    fds_mode = bool(ep.socket)
    info = tarpipe.remote_stat(lambda: _session(opts, ep), factory, remote, verify, excludes)
    tarpipe.check_space(local, info[3])
    line = b""
    with _session(opts, ep) as session:
        if info[0] == "file" and fds_mode and not excludes:
            result, files, size, line = tarpipe.get_file(session, factory, remote, local, info,
                                                         verify, meter)
        else:
            result, files, size = tarpipe.get(session, factory, remote, local, excludes, verify,
                                              fds_mode, output.manifest() if verify else None,
                                              meter, info[3])
    if result.returncode == 0:
        if line:
            output.manifest().write(line)
        if not (opts.compat and opts.json):
            output.received(files, size, verify)
    return result


def _tar_stream(opts, environ, warnings, target, path, action, excludes):
    """cp with '-': the tar stream itself on our stdin or stdout."""
    ep = _endpoint(opts, environ, warnings, target)
    args = (path,) + tuple(a for g in excludes for a in ("--exclude", g))
    with _session(opts, ep) as session:
        result = session.exec(Exec(argv=args, xfer=action, mode="fds" if ep.socket else "relay",
                                   queue=not opts.no_wait))
    raise_for(result)
    return result.returncode


def df(opts, words, environ, warnings):
    """hostlink df PATH: free space on the host's filesystem that holds PATH."""
    if len(words) != 1:
        raise UsageError("df takes one path on the host")
    ep = _endpoint(opts, environ, warnings, None)
    with _session(opts, ep) as session:
        r = session.exec(Exec(argv=(words[0],), xfer="df", mode="relay", queue=not opts.no_wait),
                         capture=True)
    if r.returncode:
        why = r.stderr.decode(errors="replace").strip()
        raise TransferFailed(why[len("hostlink: "):] if why.startswith("hostlink: ") else why)
    where, free, total = r.stdout.decode().rsplit(None, 2)
    if opts.json and opts.compat:
        from . import compat
        output.print_json(compat.df(r.node, words[0], where, free, total))
    elif opts.json:
        output.print_json({"path": words[0], "filesystem_path": where, "free_bytes": int(free),
                           "total_bytes": int(total)})
    else:
        output.free_space(words[0], where, free, total)
    return 0
