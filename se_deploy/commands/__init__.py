"""CLI command modules; each exposes register(command)."""
