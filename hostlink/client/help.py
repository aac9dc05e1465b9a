"""For a person who asked for help or typed a near miss: ``hostlink help [COMMAND]``, and the nearest
known name ("did you mean ...", as git says it). Loaded only then, never on the hot path of exec:
a small edit distance here instead of difflib, which would pull in more modules than the client.
"""

from .errors import UsageError

# A near miss is at most this many edits away (a swap of two letters counts one).
MAX_EDITS = 2


def distance(a, b):
    """Edits (insert, delete, change, swap two neighbours) from ``a`` to ``b``."""
    prev2, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def nearest(word, choices):
    """The choices nearest to ``word``, when a near miss (fewer edits than its length)."""
    scored = sorted((distance(word, c), c) for c in choices)
    if not scored:
        return []
    best = scored[0][0]
    if best > MAX_EDITS or best >= len(word):
        return []
    return [c for d, c in scored if d == best]


def did_you_mean(word, choices):
    """``; did you mean 'exec'?`` for a near miss, else ""."""
    near = nearest(word, choices)
    if not near:
        return ""
    return "; did you mean %s?" % " or ".join("'%s'" % c for c in near)


def unknown(what, word, choices, see="hostlink help"):
    """The UsageError for an unknown ``what`` (command, option, action), with the near miss."""
    hint = did_you_mean(word, choices)
    return UsageError("unknown %s %r%s (see %s)" % (what, word, hint, see))


def run(opts, words, environ, warnings):
    """hostlink help [COMMAND]: the help on stdout."""
    from . import output
    from .usage import COMMANDS
    if len(words) > 1:
        raise UsageError("help takes one command name, e.g. hostlink help exec")
    if words and words[0] not in COMMANDS:
        raise unknown("command", words[0], sorted(COMMANDS))
    output.usage(True, words[0] if words else None)
    return 0
