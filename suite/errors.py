"""Errors the user can fix, and the exit codes the CLI maps them to (documented in README.md)."""

EXIT_OK = 0
EXIT_ERROR = 1  # a bug or an unexpected failure: shown with a traceback
EXIT_USAGE = 2  # bad input: one line on stderr, nothing written
EXIT_DIVERGED = 3  # the loss became NaN/inf; results.json says "diverged"
EXIT_SIGPIPE = 141  # the reader of standard output went away (`suite list | head`), as a shell reports it
EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # stopped by Ctrl-C / SIGTERM after saving its state (128 + signal number)


class UserError(Exception):
    """A mistake in the user's input. The message is one line naming the problem and the fix."""


class Stopped(Exception):
    """Training stopped on a signal after committing its state (suite.callbacks.Preemption). The message is one
    line saying how to resume; `code` is the exit status (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def one_line(e, limit=200, kind=True):
    """An exception as one short line for a UserError or a note: whitespace and newlines collapsed, cut at `limit`
    characters, with its class name first when `kind` ("OSError: [Errno 2] No such file …")."""
    return " ".join((f"{type(e).__name__}: {e}" if kind else str(e)).split())[:limit]


def closest(name, choices, n=3):
    """The closest valid names, for 'did you mean' hints (difflib is good enough for short names)."""
    import difflib

    return difflib.get_close_matches(str(name), list(choices), n=n, cutoff=0.5)


def did_you_mean(name, choices):
    near = closest(name, choices)
    return f" (did you mean {', '.join(near)}?)" if near else ""
