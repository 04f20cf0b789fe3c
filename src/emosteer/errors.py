"""The project's own error types. Everything a user can cause surfaces as an EmosteerError
with a message that names the file (or argument) and the problem; the CLI prints it without a
traceback and exits with status 2."""

from __future__ import annotations


class EmosteerError(Exception):
    """Base class for every error a user can cause and fix."""


class AudioError(EmosteerError):
    """A file could not be used as audio (missing, unreadable, empty, too short, silent, NaN)."""


class CorpusError(EmosteerError):
    """A corpus directory or manifest could not be parsed."""


class ArtifactError(EmosteerError):
    """An artifact (store, axis, mapper, vocoder, report input) is missing, corrupt or mismatched."""


class ConfigError(EmosteerError):
    """Invalid configuration or command-line arguments."""


class DownloadError(EmosteerError):
    """A download failed or its checksum did not match."""
