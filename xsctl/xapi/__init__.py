"""The headless client core: transport, trust, sessions, the live cache, operations."""
