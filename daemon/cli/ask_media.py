"""`sarai ask --audio/--image/--video`: attachments for a typed (or empty) question."""

from __future__ import annotations

import argparse
from pathlib import Path

from sarai.models.attachments import Attachment, MediaKind, MediaLimits, load


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audio", action="append", type=Path, default=[], metavar="FILE",
                   help="a recording (WAV/FLAC/MP3/OGG) the Omni tier hears itself; repeatable")
    p.add_argument("--image", action="append", type=Path, default=[], metavar="FILE",
                   help="a picture (PNG/JPEG/…) for the Omni tier to see; repeatable")
    p.add_argument("--video", action="append", type=Path, default=[], metavar="FILE",
                   help="a video: sampled frames plus its sound track; repeatable")


def load_media(args: argparse.Namespace, limits: MediaLimits | None = None) -> list[Attachment]:
    """The attachments named on the command line, in the order audio, images, videos."""
    limits = limits or MediaLimits()
    out: list[Attachment] = []
    for kind, paths in ((MediaKind.AUDIO, args.audio), (MediaKind.IMAGE, args.image),
                        (MediaKind.VIDEO, args.video)):
        for path in paths:
            out.extend(load(path, limits, expect=kind))
    return out


def needs_ear(media: list[Attachment]) -> bool:
    """Audio may have to be transcribed (a tier without a projector), so load the ASR."""
    return any(a.kind is MediaKind.AUDIO for a in media)
