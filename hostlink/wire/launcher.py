"""The first bytes of the client file: a /bin/sh header that runs ``python3 -I -S`` on the file.

-I keeps the user's PYTHON* variables and site-packages out, -S skips ``site`` (several ms of
start-up); ``HOSTLINK_PYTHON`` names another interpreter. The bootstrap imports the client
straight from the archive: running the archive as a script would go through runpy, whose imports
(importlib.util, contextlib, collections) cost more than the client itself. The daemon reads
these bytes too, to refuse running a hostlink client as a command (a loop back into itself).
"""

ENTRY = "hostlink.client.main"
BOOTSTRAP = ("import sys;sys.path.insert(0,sys.argv[1]);del sys.argv[0];"
             "from %s import main;sys.exit(main())" % ENTRY)
HEADER = ('#!/bin/sh\nexec "${HOSTLINK_PYTHON:-python3}" -I -S -c \'%s\' "$0" "$@"\n'
          % BOOTSTRAP).encode()
