"""CLI commands (placeholder until this stage lands)."""


def register(command) -> None:
    return None
