"""The one exception type users see: a one-line message that names the thing at fault."""


class ArtconvError(Exception):
    """A problem with the user's input or environment, not a bug.

    The CLI prints ``str(err)`` on one line and exits non-zero (no traceback unless
    ``--debug``). Messages start with the file, layer or option at fault.
    """
