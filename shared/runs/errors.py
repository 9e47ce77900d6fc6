"""User errors: mistakes a user can fix (bad config, wrong folder, missing data), reported without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in how a command was called; the message says what is wrong and how to fix it."""


class RunDirError(UserError):
    """A run folder that belongs to another config, or a non-empty folder that is not a run."""
