"""hostlinkd: the daemon on the host, and the programs it starts. See main.py."""
