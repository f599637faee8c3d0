"""Errors the models room raises; each message is one sentence a user can act on."""


class ModelError(Exception):
    """A model could not be found, loaded or run."""


class ModelUnavailable(ModelError):
    """The tier cannot serve right now (not installed, over budget, backend down)."""
