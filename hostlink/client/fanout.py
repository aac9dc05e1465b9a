"""Run one command on several targets at once (``-t a,b,c`` or ``--all``), as pdsh does: every
output line is prefixed ``[name] ``, and the exit code is the worst one."""

import sys
import threading


class _Lines:
    """Writes whole lines with a prefix; a line split across chunks waits for its end."""

    def __init__(self, name, lock):
        self.prefix = ("[%s] " % name).encode()
        self.lock = lock
        self.partial = {1: b"", 2: b""}

    def __call__(self, fd, data):
        buf = self.partial[fd] + data
        lines = buf.split(b"\n")
        self.partial[fd] = lines.pop()
        if lines:
            self._write(fd, b"".join(self.prefix + line + b"\n" for line in lines))

    def flush(self):
        for fd, rest in self.partial.items():
            if rest:
                self._write(fd, self.prefix + rest + b"\n")

    def _write(self, fd, data):
        stream = sys.stdout.buffer if fd == 1 else sys.stderr.buffer
        with self.lock:
            stream.write(data)
            stream.flush()


def run(runs, connect_timeout_ms, json_out, to_json, say):
    """Run each (endpoint, request) of ``runs`` at once; returns the worst exit code (per the
    seed's codes)."""
    from .session import Session, raise_for
    from .errors import HostlinkError
    lock = threading.Lock()
    codes = {}

    def one(ep, request):
        sink = _Lines(ep.name, lock)
        try:
            session = Session(ep, connect_timeout_ms)
            try:
                result = session.exec(request, capture=json_out, out=sink, signals=False)
            finally:
                session.close()
            sink.flush()
            if json_out:
                with lock:
                    sys.stdout.write(to_json(result, ep.name) + "\n")
                    sys.stdout.flush()
            raise_for(result)
            codes[ep.name] = 0 if result.returncode == 0 else 1
        except HostlinkError as exc:
            sink.flush()
            with lock:
                say("[%s] %s" % (ep.name, exc.message))
            codes[ep.name] = exc.exit_code
    threads = [threading.Thread(target=one, args=pair, daemon=True) for pair in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(codes.values()) if codes else 0
