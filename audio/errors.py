"""Errors the audio room raises; each message is one sentence a user can act on."""


class AudioError(Exception):
    """A recording, a device or a voice could not be used."""
