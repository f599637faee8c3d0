"""`sarai ask --audio/--image/--video`: attachments for a typed (or empty) question.

They are passed on by path (to the running daemon, or to this process's own conversation)
and read when the turn runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audio", action="append", type=Path, default=[], metavar="FILE",
                   help="a recording (WAV/FLAC/MP3/OGG) the Omni tier hears itself; repeatable")
    p.add_argument("--image", action="append", type=Path, default=[], metavar="FILE",
                   help="a picture (PNG/JPEG/…) for the Omni tier to see; repeatable")
    p.add_argument("--video", action="append", type=Path, default=[], metavar="FILE",
                   help="a video: sampled frames plus its sound track; repeatable")


def paths(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """(path, kind) of each attachment, in the order audio, images, videos."""
    return [(path.expanduser(), kind) for kind, given in
            (("audio", args.audio), ("image", args.image), ("video", args.video))
            for path in given]
