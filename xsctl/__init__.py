"""xsctl: manage XenServer and XCP-ng pools from a terminal."""

__version__ = "0.1.0"
