"""hostlink: run commands on the host from inside a container, safely and fast."""

__version__ = "0.1.0"
