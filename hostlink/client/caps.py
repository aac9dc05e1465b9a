"""The first hostlink's output caps (-m, --max-stdout, --max-stderr) and its -O output-to-file
mode: relayed output kept up to a cap, the rest drained and counted, or written to files."""

import os

from .errors import UsageError
from .capture import write_all
from .session import new_id


def parse_size(value, name):
    """Bytes from 4096, 4K, 16M or 1G."""
    text = str(value).strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    digits = text[:-1] if mult > 1 else text
    if not digits.isdigit():
        raise UsageError("%s wants a size such as 4096, 64K or 16M, not %r" % (name, value))
    return int(digits) * mult


class CappedOutput:
    """A sink for the command's output (``fd``, ``data``) under caps, or into files."""

    def __init__(self, caps, capture, to_files, environ):
        self.id = new_id()
        self.caps = caps  # fd -> bytes to keep, or None for all
        self.capture = capture  # keep for -j instead of writing to our stdout/stderr
        self.result = None  # the command's result: the daemon's output caps (Started)
        self.kept = {1: bytearray(), 2: bytearray()}
        self.total = {1: 0, 2: 0}
        self.files, self.paths = {}, {}
        if to_files:
            import tempfile
            base = environ.get("HOSTLINK_OUTPUT_DIR") or tempfile.gettempdir()
            for fd, name in ((1, "stdout"), (2, "stderr")):
                self.paths[fd] = os.path.join(base, "hl_%s_%s" % (self.id, name))
                self.files[fd] = open(self.paths[fd], "wb")

    @classmethod
    def for_options(cls, opts, environ):
        both = parse_size(opts.max_output, "-m") if opts.max_output else None
        caps = {1: parse_size(opts.max_stdout, "--max-stdout") if opts.max_stdout else both,
                2: parse_size(opts.max_stderr, "--max-stderr") if opts.max_stderr else both}
        return cls(caps, opts.json, opts.output_to_file, environ)

    def __call__(self, fd, data):
        seen = self.total[fd]
        self.total[fd] += len(data)
        if self.files:
            self.files[fd].write(data)
            return
        cap = self._cap(fd)
        chunk = data if cap is None else data[:max(0, cap - seen)]
        if not chunk:
            return
        if self.capture:
            self.kept[fd] += chunk
        else:
            write_all(fd, chunk)

    def _cap(self, fd):
        """The cap asked for; for -j the daemon's default where none was; never over its max."""
        cap, r = self.caps.get(fd), self.result
        if r is not None and self.capture:
            cap = cap or r.default_cap or None
        if r is not None and r.max_cap and cap:
            cap = min(cap, r.max_cap)
        return cap

    def finish(self, result):
        """Close the files; the kept output becomes the result's stdout and stderr."""
        for f in self.files.values():
            f.close()
        result.stdout, result.stderr = bytes(self.kept[1]), bytes(self.kept[2])
