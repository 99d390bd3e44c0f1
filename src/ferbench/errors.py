"""The one exception type the command line turns into a single clear line and exit code 2."""


class FerbenchError(Exception):
    """Bad input or configuration. The message names the file or key at fault."""
