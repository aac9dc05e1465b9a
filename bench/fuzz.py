"""A longer fuzz run of the protocol parser than the suite's: random bytes and mutated valid
frames fed to a server-side Connection; any exception other than ProtocolError is a bug.

    python3 bench/fuzz.py [seconds]
"""

import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hostlink.wire import protocol as p  # noqa: E402

SEEDS = [p.encode(p.Auth("token", "c")), p.encode(p.Exec(command="ls", env=(("A", "1"),))),
         p.encode(p.Exec(argv=("a", "b"), mode="fds")), p.encode(p.Stdin(b"data")),
         p.encode(p.Signal(2)), p.encode(p.Ping()), p.encode(p.StdinEof())]


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        if op < 0.4 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op < 0.7:
            data[rng.randrange(len(data) + 1):0] = os.urandom(rng.randint(1, 16))
        elif data:
            del data[rng.randrange(len(data))]
    return bytes(data)


def one(rng):
    conn = p.Connection(p.SERVER)
    stream = p.PREFACE + b"".join(mutate(rng, rng.choice(SEEDS)) if rng.random() < 0.8
                                  else os.urandom(rng.randint(0, 64)) for _ in range(rng.randint(1, 5)))
    pos = 0
    try:
        while pos < len(stream):
            step = rng.randint(1, 40)
            conn.receive_data(stream[pos:pos + step])
            pos += step
            while True:
                ev = conn.next_event()
                if ev is p.NEED_DATA or ev is None:
                    break
                if ev is p.PAUSED_EVENT:
                    conn.send(p.Ok("n", 2) if conn.state == "AUTHING" else p.Started(1, 0)
                              if conn.state == "STARTING" else p.Pong("n", 1, 2))
                    if conn.state == "CLOSED":
                        return
    except p.ProtocolError:
        pass


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60
    rng = random.Random(1)
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        one(rng)
        n += 1
    print("fuzz: %d inputs in %.0f s, no crash" % (n, seconds))


if __name__ == "__main__":
    main()
