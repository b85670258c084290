"""The one error type a user can cause: the CLI prints its message in one line and exits 2."""


class UserError(Exception):
    """Bad input from the user (a path, a file, an option); never a bug in lagchand-edge."""
