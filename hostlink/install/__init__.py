"""hostlink-install: sets up hostlinkd on a host and hostlink in containers."""
