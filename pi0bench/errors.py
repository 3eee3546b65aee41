"""Errors that reach the user as one line (the CLI prints them and exits with code 2)."""


class UserError(Exception):
    """Bad input from the user: the message names the problem and the fix."""
