"""The client: the one file copied into containers (stdlib only, Python 3.8+). See main.py."""

# Names under which the client is itself; under any other name it is a shim (shims.py).
CLIENT_NAMES = ("hostlink", "hostlink-cli", "__main__.py", "-c")
