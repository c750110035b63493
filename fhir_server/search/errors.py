"""Errors raised while turning search parameters into MongoDB filters."""

from __future__ import annotations


class SearchError(Exception):
    """A malformed search value or an unsupported modifier: the client sent something we must refuse."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownParameter(SearchError):
    """The parameter name is unknown for the resource type, or known but not supported by this server.

    A subclass of SearchError so that strict handling can catch both; lenient handling ignores it."""
