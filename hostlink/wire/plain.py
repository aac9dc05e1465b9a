"""An OS error in plain words, as both sides of a transfer say it: ``/srv/x does not exist``, never
``[Errno 2] No such file or directory: '/srv/x'``."""

import errno

# What the path is, or what happened to it, for the errors a transfer meets.
WORDS = {
    errno.ENOENT: "does not exist",
    errno.EACCES: "is not accessible: permission denied",
    errno.EPERM: "is not accessible: operation not permitted",
    errno.ENOTDIR: "has a part that is not a directory",
    errno.EISDIR: "is a directory",
    errno.ENOSPC: "cannot be written: no space left on the device",
    errno.EDQUOT: "cannot be written: disk quota exceeded",
    errno.EROFS: "cannot be written: read-only file system",
    errno.EEXIST: "already exists",
    errno.ELOOP: "is a symlink (not followed)",
    errno.ENAMETOOLONG: "has a name too long",
}


def words(exc, where=""):
    """``exc`` (an OSError, or an error whose text is already plain) as one line; ``where`` is
    appended (" on the host", " here")."""
    if not isinstance(exc, OSError) or not exc.errno:
        return "%s%s" % (exc, where)
    what = WORDS.get(exc.errno) or (exc.strerror or str(exc)).lower()
    if exc.filename is None:
        return "%s%s" % (what, where)
    return "%s %s%s" % (exc.filename, what, where)


def strerror_of(text):
    """The reason in a transfer's one-line message, in strerror's words, as the first hostlink
    said it ("PATH does not exist on the host" is "No such file or directory", and so is
    "[Errno 2] No such file or directory: 'PATH'"); the text itself when it names none."""
    import os
    for prefix in ("hostlink: ", "hostlink transfer: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if text.startswith("[Errno ") and "] " in text:
        return text.split("] ", 1)[1].split(": ", 1)[0]
    for where in (" on the host", " here", ""):
        for code, said in WORDS.items():
            if text.endswith(" %s%s" % (said, where)) or text == said + where:
                return os.strerror(code)
    return text
