"""Text shown to a person with its control characters made visible.

A request's text comes from the client: printed raw, a cursor escape can make ``touch X; ls -la``
look like ``ls -la`` on the approver's terminal, a newline can forge a second line, and a bidi
override can reorder what is read. Every string hostlink shows a person from a request (the
approver's list and watch, approval_notify's environment, the client's "waiting for approval"
line) goes through ``visible``: C0 and C1 controls, DEL, the Unicode line and paragraph separators,
bidi embeddings, overrides and isolates, and zero-width characters become ``\\xNN`` / ``\\uNNNN``;
a backslash is doubled so an escape cannot be faked.
"""

# U+2028/2029 separators; U+200B-200F zero-width and marks; U+202A-202E embeddings and overrides;
# U+2066-2069 isolates; U+FEFF byte-order mark; U+061C Arabic letter mark.
_INVISIBLE = frozenset([0x061C, 0xFEFF, *range(0x200B, 0x2010), *range(0x2028, 0x202F),
                        *range(0x2066, 0x206A)])


def _escape(ch, backslashes=True):
    code = ord(ch)
    if ch == "\\":
        return "\\\\" if backslashes else ch
    if code < 0x20 or 0x7F <= code < 0xA0:
        return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch, "\\x%02x" % code)
    if code in _INVISIBLE:
        return "\\u%04x" % code
    return ch


def visible(text, backslashes=True):
    """``text`` with every character that could hide or move what a person reads escaped.
    ``backslashes=False`` leaves backslashes alone: for text a daemon has made visible already
    (the client's "waiting for approval" line), which must not be escaped twice."""
    text = str(text)
    if text.isprintable() and (not backslashes or "\\" not in text):
        return text  # the common case, and fast: isprintable() is False for all we escape
    return "".join(_escape(ch, backslashes) for ch in text)
