"""Errors the router raises; each message is one sentence a user can act on."""

from sarai.models.errors import ModelError


class RoutingError(ModelError):
    """A turn the router cannot place.

    It is a ModelError so that every caller that already reports model problems to the user
    (the CLI, the turn) reports this one the same way.
    """


class UnsupportedAttachment(RoutingError):
    """An attachment of a kind no tier can take."""


class DatasetError(RoutingError):
    """The labelled routing data set is missing or malformed."""
