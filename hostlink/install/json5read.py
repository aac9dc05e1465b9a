"""Read JSON5 (openclaw.json) into nodes that know where they are in the text: what
json5edit.py needs to change a value without touching the text around it."""

import re

IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_NUMBER = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|Infinity|NaN|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)")
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "0": "\0"}
_WORDS = {"true": True, "false": False, "null": None, "Infinity": float("inf"), "NaN": float("nan")}


class Json5Error(ValueError):
    """The text is not JSON5; the message names the line."""


class Node:
    """A value in the text: ``start``/``end`` span it; containers have ``entries``."""

    def __init__(self, kind, start, end=0, value=None):
        self.kind, self.start, self.end, self.value = kind, start, end, value
        self.entries = []  # (key or None, key start, value Node, comma position or -1)


class _Parser:
    def __init__(self, text):
        self.text, self.pos = text, 0

    def fail(self, what):
        line = self.text.count("\n", 0, self.pos) + 1
        raise Json5Error("line %d: %s" % (line, what))

    def skip(self):
        """Skip whitespace and comments."""
        t = self.text
        while self.pos < len(t):
            if t[self.pos] in " \t\r\n\ufeff\u00a0\u2028\u2029":
                self.pos += 1
            elif t.startswith("//", self.pos):
                end = t.find("\n", self.pos)
                self.pos = len(t) if end < 0 else end
            elif t.startswith("/*", self.pos):
                end = t.find("*/", self.pos + 2)
                if end < 0:
                    self.fail("a /* comment is never closed")
                self.pos = end + 2
            else:
                return

    def value(self):
        self.skip()
        t, start = self.text, self.pos
        if start >= len(t):
            self.fail("the text ends where a value should be")
        c = t[start]
        if c in "{[":
            return self.container(c)
        if c in "\"'":
            text = self.string()
            return Node("scalar", start, self.pos, text)
        m = _NUMBER.match(t, start)
        if m and m.group(0) not in ("+", "-"):
            self.pos = m.end()
            text = m.group(0)
            if "x" in text.lower():
                number = int(text, 16)
            elif text.lstrip("+-") in ("Infinity", "NaN") or re.search(r"[.eE]", text):
                number = float(text)
            else:
                number = int(text)
            return Node("scalar", start, self.pos, number)
        m = IDENT.match(t, start)
        if m and m.group(0) in _WORDS:
            self.pos = m.end()
            return Node("scalar", start, self.pos, _WORDS[m.group(0)])
        self.fail("unexpected %r" % c)

    def string(self):
        t, quote = self.text, self.text[self.pos]
        out, i = [], self.pos + 1
        while i < len(t) and t[i] != quote:
            if t[i] == "\\":
                i += 1
                c = t[i:i + 1]
                if c in "\n\u2028\u2029":
                    pass  # a line continuation
                elif c == "\r":
                    i += t[i + 1:i + 2] == "\n"
                elif c in "xu":
                    n = 2 if c == "x" else 4
                    out.append(chr(int(t[i + 1:i + 1 + n], 16)))
                    i += n
                else:
                    out.append(_ESCAPES.get(c, c))
            elif t[i] == "\n":
                self.fail("a string runs past the end of its line")
            else:
                out.append(t[i])
            i += 1
        if i >= len(t):
            self.fail("a string is never closed")
        self.pos = i + 1
        # \uD83D\uDE00 is one character written as two halves: join them
        return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16", "replace")

    def key(self):
        self.skip()
        if self.text[self.pos:self.pos + 1] in ("\"", "'"):
            return self.string()
        m = IDENT.match(self.text, self.pos)
        if not m:
            self.fail("expected a key")
        self.pos = m.end()
        return m.group(0)

    def container(self, opener):
        node = Node("object" if opener == "{" else "array", self.pos)
        closer = "}" if opener == "{" else "]"
        self.pos += 1
        while True:
            self.skip()
            if self.text[self.pos:self.pos + 1] == closer:
                break
            key, key_start = None, self.pos
            if opener == "{":
                key = self.key()
                self.skip()
                if self.text[self.pos:self.pos + 1] != ":":
                    self.fail("expected ':' after key %r" % key)
                self.pos += 1
            item = self.value()
            self.skip()
            comma = self.pos if self.text[self.pos:self.pos + 1] == "," else -1
            node.entries.append((key, key_start, item, comma))
            if comma < 0:
                if self.text[self.pos:self.pos + 1] != closer:
                    self.fail("expected ',' or %r" % closer)
                break
            self.pos += 1
        self.pos += 1
        node.end = self.pos
        return node


def parse(text):
    """The root Node of ``text``; Json5Error when it is not JSON5."""
    p = _Parser(text)
    root = p.value()
    p.skip()
    if p.pos != len(text):
        p.fail("text after the end of the value")
    return root


def plain(node):
    """The Python value of a Node."""
    if node.kind == "object":
        return {k: plain(v) for k, _, v, _ in node.entries}
    if node.kind == "array":
        return [plain(v) for _, _, v, _ in node.entries]
    return node.value
