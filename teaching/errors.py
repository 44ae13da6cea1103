"""Errors meant for the user: each carries one line that says what was wrong and what to do."""


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
