"""pool.* behaviour."""

from __future__ import annotations
