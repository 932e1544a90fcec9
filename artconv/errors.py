"""What users see when something is wrong or worth a note: one line that names the thing."""


class ArtconvError(Exception):
    """A problem with the user's input or environment, not a bug.

    The CLI prints ``str(err)`` on one line and exits non-zero (no traceback unless
    ``--debug``). Messages start with the file, layer or option at fault.
    """


class ArtconvWarning(UserWarning):
    """Something the user should know that does not stop the work (random weights, a
    dropped octave); the CLI shows it as a one-line yellow note."""
