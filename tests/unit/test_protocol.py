"""The sans-IO protocol: golden bytes, byte-by-byte decoding, the state table, limits, fuzzing."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from hostlink.wire import protocol as p


def server_after_auth():
    conn = p.Connection(p.SERVER)
    conn.receive_data(p.PREFACE + p.encode(p.Auth("t", "c")))
    assert isinstance(conn.next_event(), p.Auth)
    conn.send(p.Ok("n", 2))
    return conn


def test_golden_auth_frame():
    assert p.encode(p.Auth("tok", "cli")) == (
        b"\x01\x00\x00\x00\x1b" + b"\x05token\x00\x00\x00\x03tok" + b"\x06client\x00\x00\x00\x03cli")


def test_golden_data_and_ping_frames():
    assert p.encode(p.Stdout(b"a\0b")) == b"\x12\x00\x00\x00\x03a\0b"
    assert p.encode(p.Ping()) == b"\x03\x00\x00\x00\x00"
    assert p.Connection(p.CLIENT).send(p.Auth("", "")).startswith(b"HLK2\x01")


def test_round_trip_every_event():
    events = [p.Exec(command="ls", cwd="/tmp", env=(("A", "1"), ("B", "x=y")), timeout_ms=5,
                     mode="fds"),
              p.Exec(argv=("printf", "%s", ""), mode="relay"),
              p.Exec(argv=(), mode="relay"),
              p.Signal(2), p.Resize(24, 80), p.Kill(4242, 2), p.Ok("node", 2), p.Started(10, 0),
              p.Exit(137, 9, True, 12), p.Error("busy", "server busy"), p.Pong("n", 5, 2)]
    for ev in events:
        data = p.encode(ev)
        assert p.decode_fields(type(ev), data[5:]) == ev


def test_byte_by_byte():
    data = p.PREFACE + p.encode(p.Auth("secret", "x"))
    conn = p.Connection(p.SERVER)
    for i, byte in enumerate(data):
        assert conn.next_event() is p.NEED_DATA
        conn.receive_data(bytes([byte]))
    assert conn.next_event() == p.Auth("secret", "x")


def test_pipelined_request_waits_for_answer():
    conn = p.Connection(p.SERVER)
    conn.receive_data(p.PREFACE + p.encode(p.Auth("t", "")) + p.encode(p.Ping()))
    assert isinstance(conn.next_event(), p.Auth)
    assert conn.next_event() is p.PAUSED_EVENT
    conn.send(p.Ok("n", 2))
    assert conn.next_event() == p.Ping()


def test_exec_before_auth_is_refused():
    conn = p.Connection(p.SERVER)
    conn.receive_data(p.PREFACE + p.encode(p.Exec(command="id")))
    with pytest.raises(p.ProtocolError, match="not allowed"):
        conn.next_event()


def test_bad_preface():
    conn = p.Connection(p.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\n")
    with pytest.raises(p.ProtocolError, match="preface"):
        conn.next_event()


def test_oversized_frame_refused_from_header_alone():
    conn = server_after_auth()
    conn.receive_data(p.encode(p.Exec(command="x"))[:1] + struct.pack(">I", p.MAX_CONTROL_FRAME + 1))
    with pytest.raises(p.ProtocolError, match="over the limit"):
        conn.next_event()


def test_unknown_frame_type():
    conn = server_after_auth()
    conn.receive_data(b"\x63\x00\x00\x00\x00")
    with pytest.raises(p.ProtocolError, match="unknown frame type"):
        conn.next_event()


def test_truncated_then_closed():
    conn = server_after_auth()
    conn.receive_data(p.encode(p.Ping())[:3])
    conn.receive_data(b"")
    with pytest.raises(p.ProtocolError, match="middle of a frame"):
        conn.next_event()


def test_clean_close_is_none():
    conn = server_after_auth()
    conn.receive_data(b"")
    assert conn.next_event() is None


@pytest.mark.parametrize("payload, message", [
    (b"\x07command\x00\x00\x00\x02\xff\xfe", "UTF-8"),
    (b"\x06argv[]\x00\x00\x00\x03a\x00b", "NUL"),
    (b"\x05env[]\x00\x00\x00\x03abc", "NAME=VALUE"),
    (b"\x0atimeout_ms\x00\x00\x00\x03abc", "integer"),
    (b"\x03tty\x00\x00\x00\x01\x07", "0 or 1"),
    (b"\x07command\x00\x00\x00\xff", "past the end"),
    (b"\x09command[]\x00\x00\x00\x00", "unknown field"),
])
def test_malformed_fields(payload, message):
    with pytest.raises(p.ProtocolError, match=message):
        p.decode_fields(p.Exec, payload)


def test_string_over_limit():
    with pytest.raises(p.ProtocolError, match="too long"):
        p.decode_fields(p.Exec, p.encode(p.Exec(command="x" * (p.MAX_STRING + 1)))[5:])


def test_too_many_fields():
    payload = p.encode(p.Exec(argv=("a",) * (p.MAX_FIELDS + 1)))[5:]
    with pytest.raises(p.ProtocolError, match="fields"):
        p.decode_fields(p.Exec, payload)


def test_server_cannot_send_exit_before_start():
    conn = server_after_auth()
    with pytest.raises(p.ProtocolError):
        conn.send(p.Exit(0))


def test_events_are_immutable():
    ev = p.Signal(2)
    with pytest.raises(AttributeError):
        ev.signum = 9


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_server_never_crashes(data):
    conn = p.Connection(p.SERVER)
    conn.receive_data(p.PREFACE + data)
    try:
        for _ in range(50):
            ev = conn.next_event()
            if ev is p.NEED_DATA or ev is None or ev is p.PAUSED_EVENT:
                break
            if isinstance(ev, p.Auth):
                conn.send(p.Ok("n", 2))
            elif isinstance(ev, (p.Exec,)):
                conn.send(p.Started(1, 0))
    except p.ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=20).filter(lambda s: "\0" not in s), max_size=10),
       st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda s: "=" not in s and "\0" not in s),
                       st.text(max_size=20).filter(lambda s: "\0" not in s), max_size=5),
       st.integers(0, 2 ** 40))
def test_fuzz_exec_round_trip(argv, env, timeout):
    ev = p.Exec(argv=tuple(argv), env=tuple(env.items()), timeout_ms=timeout, mode="relay")
    conn = server_after_auth()
    data = p.encode(ev)
    for i in range(0, len(data), 7):
        conn.receive_data(data[i:i + 7])
    assert conn.next_event() == ev


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=600), min_size=1, max_size=8),
       st.lists(st.integers(1, 900), min_size=1, max_size=40), st.booleans())
def test_fuzz_data_frames_survive_any_split(payloads, cuts, as_bytearray):
    # Whole frames within one read come out as views of it, frames split across reads are
    # gathered: either way the client sees every byte once, in order.
    server = server_after_auth()
    server.receive_data(p.encode(p.Exec(command="x", mode="relay")))
    server.next_event()
    client = p.Connection(p.CLIENT)
    client.send(p.Auth("t", ""))
    client.send(p.Exec(command="x", mode="relay"))
    wire = p.encode(p.Ok("n", 2)) + server.send(p.Started(1, 0))  # server_after_auth sent Ok
    for data in payloads:
        wire += server.send(p.Stdout(data))
    wire += server.send(p.Exit(0, 0, False, 1))
    got, pos, i = [], 0, 0
    while True:
        ev = client.next_event()
        if ev is p.NEED_DATA:
            piece = wire[pos:pos + cuts[i % len(cuts)]]
            pos, i = pos + len(piece), i + 1
            client.receive_data(bytearray(piece) if as_bytearray else piece)
            continue
        if isinstance(ev, p.Stdout):
            got.append(bytes(ev.data))
        if isinstance(ev, p.Exit):
            break
    assert b"".join(got) == b"".join(payloads)


def test_kill_is_a_request_of_its_own():
    conn = p.Connection(p.SERVER)
    conn.receive_data(p.PREFACE + p.encode(p.Auth("t", "")) + p.encode(p.Kill(7, 15)))
    assert isinstance(conn.next_event(), p.Auth)
    conn.send(p.Ok("n", 2))
    assert conn.next_event() == p.Kill(7, 15)
    assert conn.send(p.Reply("{}"))
    running = server_after_auth()
    running.receive_data(p.encode(p.Exec(command="x", mode="relay")))
    running.next_event()
    running.send(p.Started(1, 0))
    running.receive_data(p.encode(p.Kill(1, 2)))
    with pytest.raises(p.ProtocolError):
        running.next_event()  # not on the command's own connection: Signal is for that


def test_fields_new_in_0_2_round_trip_and_older_peers_ignore_them():
    for event in (p.Exec(command="x", queue=True, no_timeout=True), p.Error("busy", "m", 127),
                  p.Waiting("", "n", "t", 5, "slot")):
        assert p.decode_fields(type(event), p.encode(event)[5:]) == event
    # What an older daemon sends (no status, no kind) reads as the defaults.
    old_error = b"".join(p._field(k, v) for k, v in ((("code", b"busy"), ("message", b"m"))))
    assert p.decode_fields(p.Error, old_error) == p.Error("busy", "m", 0)
    old_wait = b"".join(p._field(k, v) for k, v in (("id", b"a"), ("node", b"n"), ("text", b"t"),
                                                     ("timeout_ms", b"5")))
    assert p.decode_fields(p.Waiting, old_wait).kind == "approval"
    # What an older client sends: no queue, no no_timeout.
    assert p.decode_fields(p.Exec, p._field("command", b"x")) == p.Exec(command="x")
