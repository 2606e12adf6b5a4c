"""Errors that mean "the user asked for something that cannot run": printed without a traceback."""


class UserError(Exception):
    """A problem with the command, config, input or run directory, explained in the message."""
