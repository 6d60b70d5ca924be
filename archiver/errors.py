"""The one exception hierarchy of bbarc.

It lives in the lowest layer so that every layer raises the same types; ``bbarc.errors`` re-exports it.
Each class carries the process exit code the CLI uses, so scripts can tell the failure kinds apart.
"""


class BbarcError(Exception):
    """Base class: something went wrong that the user can act on."""

    exit_code = 1


class UsageError(BbarcError):
    """Bad arguments or input data: wrong shape/dtype, empty input, missing dataset key, unreadable file."""

    exit_code = 2


class CorruptArchiveError(BbarcError):
    """The archive is damaged or is not a bbarc archive. ``chunk`` names the bad chunk when one is known."""

    exit_code = 3

    def __init__(self, message: str, chunk: int | None = None):
        super().__init__(message)
        self.chunk = chunk


class ModelError(BbarcError):
    """The model an archive needs is missing, or its weights differ from those used to write the archive."""

    exit_code = 4


class CodingError(BbarcError):
    """The entropy coder was asked to do something impossible, e.g. pop bits that were never pushed."""

    exit_code = 5


class ConformanceError(BbarcError):
    """A model plugin breaks the model contract (``bbarc.conformance``): a bug in the plugin, not in the data."""

    exit_code = 4


class OutputError(BbarcError):
    """An output could not be written: permission denied, read-only filesystem, disk full. Nothing was left."""

    exit_code = 6
