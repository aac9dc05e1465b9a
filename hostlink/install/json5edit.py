"""Edit a JSON5 file (openclaw.json) in place: set, append and delete by path, every comment, key
and blank line the user wrote kept.

OpenClaw's own ``config set``/``patch`` rewrite the whole file as JSON and drop its comments, so
the installer edits the text itself. json5read.parse gives nodes that know their spans;
each edit splices new text into the old and parses again (the files are small). A file that is
strict JSON stays strict JSON: quoted keys and no trailing commas are written into it.
"""

import json
import re

from .json5read import IDENT, Json5Error, parse, plain

_LINE_REST = re.compile(r"[ \t]*(//[^\n]*|/\*[^\n]*?\*/)?")  # a comment after a member stays on its line
_MEMBER_LINE_END = re.compile(r"[ \t]*(//[^\n]*)?\n")


def load(path):
    """The Document of the file at ``path``, an empty one when there is none; Json5Error names
    the file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    try:
        return Document(text)
    except Json5Error as exc:
        raise Json5Error("%s: %s" % (path, exc)) from None


def _strict_json(text):
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


class Document:
    """The text of one JSON5 file and edits to it; ``text`` is the result."""

    def __init__(self, text):
        self.text = text if text.strip() else "{}\n"
        self.root = parse(self.text)
        if self.root.kind != "object":
            raise Json5Error("the file holds no object at its top")
        self.strict = _strict_json(self.text)  # then it stays so

    def _find(self, path):
        """(deepest existing node on ``path``, how many keys of the path it took)."""
        node = self.root
        for depth, key in enumerate(path):
            if node.kind != "object":
                return node, depth
            child = next((v for k, _, v, _ in node.entries if k == key), None)
            if child is None:
                return node, depth
            node = child
        return node, len(path)

    def get(self, path, default=None):
        """The value at ``path``, or ``default``."""
        node, depth = self._find(path)
        return plain(node) if depth == len(path) else default

    def _splice(self, *edits):
        """Replace each (start, end, new) span at once, then parse the result; of two edits at
        one place, the later one's text comes first."""
        text = self.text
        for start, end, new in sorted(edits, key=lambda e: e[0], reverse=True):
            text = text[:start] + new + text[end:]
        self.root = parse(text)
        self.text = text

    def set(self, path, value):
        """Set ``path`` (a list of keys) to ``value``, making the objects above it as needed."""
        node, depth = self._find(path)
        if depth == len(path):
            self._splice((node.start, node.end, self._render(value, self._indent(node.start))))
            return
        if node.kind != "object":
            raise Json5Error("%s is not an object" % ".".join(path[:depth]))
        for key in reversed(path[depth + 1:]):
            value = {key: value}
        self._insert(node, path[depth], value)

    def append(self, path, item):
        """Add ``item`` to the array at ``path`` (made when missing) unless it is there."""
        node, depth = self._find(path)
        if depth < len(path):
            self.set(path, [item])
        elif node.kind != "array":
            raise Json5Error("%s is not a list" % ".".join(path))
        elif item not in plain(node):
            self._insert(node, None, item)

    def delete(self, path, item=None):
        """Remove the key at ``path``, or only ``item`` from the array there; absent is fine."""
        node, depth = self._find(path if item is not None else path[:-1])
        if depth < len(path) - (item is None):
            return
        for i, (key, key_start, value, comma) in enumerate(node.entries):
            if (item is None and key == path[-1]) or (item is not None and plain(value) == item):
                self._remove(node, i)
                return

    def _remove(self, node, i):
        _, start, value, comma = node.entries[i]
        end = comma + 1 if comma >= 0 else value.end
        prev_comma = node.entries[i - 1][3] if i > 0 else -1
        own_line = _MEMBER_LINE_END.match(self.text, end)
        if own_line and not self._before(start).strip():  # the member had its line: take the line
            edits = [(start - len(self._before(start)), own_line.end(), "")]
            if comma < 0 and prev_comma >= 0:  # the last one goes: so does the comma before it
                edits.append((prev_comma, prev_comma + 1, ""))
        elif comma >= 0:  # one of several on a line: it, its comma and the spaces after
            edits = [(start, re.compile(r"[ \t]*").match(self.text, end).end(), "")]
        else:  # the last on a line: from the comma before it
            edits = [(prev_comma if prev_comma >= 0 else start, value.end, "")]
        self._splice(*edits)

    def _insert(self, node, key, value):
        t, entries = self.text, node.entries
        inline = "\n" not in t[node.start:node.end]
        indent = self._indent(node.start) + "  "
        if entries and not inline and not self._before(entries[0][1]).strip():
            indent = self._before(entries[0][1])  # as the first entry is indented
        member = self._render(value, indent, inline)
        if key is not None:
            member = "%s: %s" % (self._key(key), member)
        if not entries:
            if not t[node.start + 1:node.end - 1].strip():  # empty: no comment to keep
                at, end = node.start + 1, node.end - 1
                new = member if inline and node.kind == "array" else "\n%s%s\n%s" % (
                    indent, member, self._indent(node.start))
                self._splice((at, end, new))
            else:
                self._splice((node.start + 1, node.start + 1, "\n%s%s" % (indent, member)))
            return
        _, _, last, comma = entries[-1]
        trailing = comma >= 0
        if inline:
            at, new = comma + 1 if trailing else last.end, " %s%s" % (member, "," if trailing else "")
        else:
            at = _LINE_REST.match(t, comma + 1 if trailing else last.end).end()
            new = "\n%s%s%s" % (indent, member, "," if trailing else "")
        edits = [(at, at, new)]
        if not trailing:
            edits.append((last.end, last.end, ","))
        self._splice(*edits)

    def _key(self, key):
        return key if (IDENT.fullmatch(key) and not self.strict) else json.dumps(key)

    def _before(self, pos):
        """The text of pos's line before it."""
        return self.text[self.text.rfind("\n", 0, pos) + 1:pos]

    def _indent(self, pos):
        return re.match(r"[ \t]*", self._before(pos)).group(0)

    def _render(self, value, indent, inline=False):
        if isinstance(value, dict) and value and inline:  # into a one-line object: one line
            return "{ %s }" % ", ".join("%s: %s" % (self._key(k), self._render(v, indent, True))
                                        for k, v in value.items())
        if isinstance(value, dict) and value:
            inner = indent + "  "
            items = ["%s%s: %s" % (inner, self._key(k), self._render(v, inner)) for k, v in value.items()]
            return "{\n%s%s\n%s}" % (",\n".join(items), "" if self.strict else ",", indent)
        return json.dumps(value, ensure_ascii=False)
