"""Exceptions for problems with the user's input; the CLI turns them into exit code 1."""

from __future__ import annotations


class StrokeLRPError(Exception):
    """Bad input (data, run directory, option values): one clear message, no traceback."""


class DataError(StrokeLRPError):
    """One or more problems with cases on disk; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
