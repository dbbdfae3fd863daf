"""Errors about the user's input; the CLI prints them as one line and exits non-zero."""


class InputError(ValueError):
    """Bad input (a file, a folder, a setting); the message names the file or setting and the problem."""
