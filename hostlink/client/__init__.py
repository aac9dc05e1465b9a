"""The client: the one file copied into containers (stdlib only, Python 3.8+). See main.py."""
