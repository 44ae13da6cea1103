"""Errors meant for the user: each carries one line that says what was wrong and what to do."""

ECHO_CHARS = 60  # user input quoted back in a message is cut to about this many characters


def echo(text: object, limit: int = ECHO_CHARS) -> str:
    """User input as a message may quote it: on one line, at most `limit` characters, its middle cut ("…").

    The middle goes so that both the start and the end of a long path or name stay readable.
    """
    line = " ".join(str(text).split())
    if len(line) <= limit:
        return line
    head = (limit - 1) // 3
    return line[:head] + "…" + line[len(line) - (limit - 1 - head) :]


class TeachingError(Exception):
    """Base of every error whose message is shown to a user as it is (CLI, app)."""


class ImageError(TeachingError):
    """An input image could not be read or is not acceptable (names the file and the reason)."""


class ModelError(TeachingError):
    """A backbone, its weights or its target layer cannot be used."""


class ClassNameError(TeachingError):
    """A class name or index is unknown (suggests the closest names)."""


class MethodError(TeachingError):
    """An unknown CAM method or bad method options."""
