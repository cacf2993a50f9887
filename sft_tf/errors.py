"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """Bad input: a config field, a dataset, a path. The message names it and the fix."""
