"""The JSON5 editor: values read as JSON5 means them, edits keep every comment and key, strict
JSON stays strict JSON. (tests/e2e/test_openclaw.py has OpenClaw's own parser accept the results.)"""

import json

import pytest
from hypothesis import given, settings, strategies as st

from hostlink.install.json5edit import Document
from hostlink.install.json5read import Json5Error, parse, plain

USER = """// my OpenClaw config: keep this line
{
  /* block comment */
  agents: {
    defaults: {
      workspace: '/home/me/ws', // where it works
      model: { primary: "standin/stand-in" },
    },
  },
  tools: { exec: { pathPrepend: ["/opt/mine"] } },
  "quoted-key": +1.5e2,
  hex: 0x1F, inf: -Infinity, yes: true, nothing: null,
  s: "a\\"b\\u00e9\\
c",
}
"""


def test_reads_json5_values():
    v = plain(parse(USER))
    assert v["agents"]["defaults"]["workspace"] == "/home/me/ws"
    assert v["tools"]["exec"]["pathPrepend"] == ["/opt/mine"]
    assert v["quoted-key"] == 150.0 and v["hex"] == 31 and v["inf"] == float("-inf")
    assert v["yes"] is True and v["nothing"] is None and v["s"] == 'a"b\u00e9c'


@pytest.mark.parametrize("bad", ["{a: 1", "{a 1}", "{'a: 1}", "{a: 1} x", "{/* x", "{a: [1 2]}"])
def test_bad_text_names_the_line(bad):
    with pytest.raises(Json5Error, match="line 1"):
        parse(bad)


def test_set_append_delete_keep_comments():
    doc = Document(USER)
    doc.set(["agents", "defaults", "sandbox", "docker", "env", "HOSTLINK_TOKEN"], "t0k")
    doc.set(["agents", "defaults", "sandbox", "docker", "user"], "1000:995")
    doc.append(["tools", "exec", "pathPrepend"], "/ws/skills/hostlink/bin")
    doc.append(["tools", "exec", "pathPrepend"], "/ws/skills/hostlink/bin")  # once only
    doc.set(["agents", "defaults", "workspace"], "/home/me/other")
    for comment in ("// my OpenClaw config: keep this line", "/* block comment */", "// where it works"):
        assert comment in doc.text
    v = plain(parse(doc.text))
    assert v["agents"]["defaults"]["sandbox"]["docker"] == {"env": {"HOSTLINK_TOKEN": "t0k"},
                                                           "user": "1000:995"}
    assert v["tools"]["exec"]["pathPrepend"] == ["/opt/mine", "/ws/skills/hostlink/bin"]
    assert v["agents"]["defaults"]["workspace"] == "/home/me/other"
    doc.delete(["agents", "defaults", "sandbox", "docker", "env", "HOSTLINK_TOKEN"])
    doc.delete(["tools", "exec", "pathPrepend"], "/ws/skills/hostlink/bin")
    doc.delete(["no", "such", "key"])
    doc.set(["agents", "defaults", "workspace"], "/home/me/ws")
    v = plain(parse(doc.text))
    assert v["agents"]["defaults"]["sandbox"]["docker"] == {"env": {}, "user": "1000:995"}
    assert v["tools"]["exec"]["pathPrepend"] == ["/opt/mine"]
    assert "// where it works" in doc.text


def test_strict_json_stays_strict():
    text = json.dumps({"agents": {"defaults": {"workspace": "/w"}}, "env": {"vars": {"A": "1"}}}, indent=2)
    doc = Document(text)
    doc.set(["env", "vars", "B"], "2")
    doc.set(["skills", "entries", "hostlink", "enabled"], True)
    doc.append(["tools", "exec", "pathPrepend"], "/x")
    assert json.loads(doc.text) == {"agents": {"defaults": {"workspace": "/w"}},
                                    "env": {"vars": {"A": "1", "B": "2"}},
                                    "skills": {"entries": {"hostlink": {"enabled": True}}},
                                    "tools": {"exec": {"pathPrepend": ["/x"]}}}
    doc.delete(["env", "vars", "B"])
    doc.delete(["skills"])
    assert json.loads(doc.text) == {"agents": {"defaults": {"workspace": "/w"}}, "env": {"vars": {"A": "1"}},
                                    "tools": {"exec": {"pathPrepend": ["/x"]}}}


def test_empty_and_commented_containers():
    doc = Document("")
    doc.set(["a", "b"], [1])
    assert plain(parse(doc.text)) == {"a": {"b": [1]}}
    doc = Document("{ /* nothing yet */ }")
    doc.set(["k"], "v")
    assert "/* nothing yet */" in doc.text and plain(parse(doc.text)) == {"k": "v"}
    doc = Document("{a: []}")
    doc.append(["a"], "x")
    assert plain(parse(doc.text)) == {"a": ["x"]}


def test_refuses_what_it_cannot_edit():
    with pytest.raises(Json5Error):
        Document("[1, 2]")
    doc = Document("{tools: 5}")
    with pytest.raises(Json5Error, match="tools is not an object"):
        doc.set(["tools", "exec"], 1)


keys = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=8)
values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=10),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
                      max_leaves=10)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, values, max_size=4), st.lists(keys, min_size=1, max_size=3), values,
       st.booleans())
def test_set_then_read_back(start, path, value, strict):
    text = json.dumps(start, indent=2) if strict else json.dumps(start, indent=2).replace("\n}", ",\n}")
    doc = Document(text)
    try:
        doc.set(path, value)
    except Json5Error:
        return  # a key on the path holds a non-object
    got = plain(parse(doc.text))
    node = got
    for key in path[:-1]:
        node = node[key]
    assert node[path[-1]] == value
    if strict:
        assert json.loads(doc.text) == got
    doc.delete(path)
    node = plain(parse(doc.text))
    for key in path[:-1]:
        node = node[key]
    assert path[-1] not in node
