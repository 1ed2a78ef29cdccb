"""The CLI's commands. Each takes parsed arguments and a way to get a client."""
