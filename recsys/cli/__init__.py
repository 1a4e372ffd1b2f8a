"""The ``recsys`` command. PLACEHOLDER."""


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("not implemented yet")
