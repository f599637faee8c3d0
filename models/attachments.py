"""Audio, image and video attachments: checked, cut or resized to the model's limits, encoded.

An attachment is checked by its content, not its name: a `.wav` that holds a JPEG is refused
with one sentence. Long audio is cut to the model's limit and says so in `note`; large images
are resized with Qwen2.5-Omni's rules (`smart_resize` in qwen-omni-utils: sides multiples of
28, pixel count within [min_pixels, max_pixels]). A video becomes sampled frames (at most
`video_max_frames`, qwen-omni-utils' 2 fps rule) plus its audio track, as Qwen2.5-Omni takes
it with `use_audio_in_video`.

qwen-omni-utils' audio reader (`process_audio_info`) decodes audio. Its vision module cannot be
imported here: it imports torchvision at import time, and PyPI's torchvision wheels are built
against CUDA torch (they fail to load beside the CPU torch this project installs), so the
vision rules are restated below with the same constants and frames are decoded with PyAV.
"""

from __future__ import annotations

import importlib.util
import io
import math
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np

from sarai.models.errors import ModelError

SAMPLE_RATE = 16_000  # what Qwen2.5-Omni's audio encoder (and libmtmd for it) expects
PATCH_FACTOR = 28  # vision patch 14 × spatial merge 2, as qwen-omni-utils computes it
MAX_RATIO = 200  # qwen-omni-utils refuses images more elongated than this


class AttachmentError(ModelError):
    """An attachment cannot be used; the message says why in one sentence."""


class MediaKind(StrEnum):
    AUDIO = "audio"
    IMAGE = "image"
    VIDEO = "video"


@dataclass(frozen=True)
class MediaLimits:
    """How much of an attachment reaches the model (defaults: Qwen2.5-Omni's own limits)."""

    # Qwen2.5-Omni's feature extractor takes at most 300 s (chunk_length 300, n_samples 4.8 M).
    max_audio_s: float = 300.0
    image_min_pixels: int = 4 * PATCH_FACTOR**2  # IMAGE_MIN_TOKEN_NUM × 28²
    image_max_pixels: int = 16384 * PATCH_FACTOR**2  # IMAGE_MAX_TOKEN_NUM × 28²
    video_fps: float = 2.0  # FPS
    video_min_frames: int = 4  # FPS_MIN_FRAMES
    # qwen-omni-utils allows 768; every frame is an image for the projector to encode, which
    # on a CPU costs seconds each, so SARAi keeps far fewer.
    video_max_frames: int = 16
    video_frame_min_pixels: int = 128 * PATCH_FACTOR**2  # VIDEO_MIN_TOKEN_NUM × 28²
    video_frame_max_pixels: int = 768 * PATCH_FACTOR**2  # VIDEO_MAX_TOKEN_NUM × 28²


@dataclass(frozen=True, eq=False)
class Attachment:
    """One input for the model, ready to encode: `data` is WAV bytes (audio) or PNG (image)."""

    kind: MediaKind  # AUDIO or IMAGE; a video arrives as several of these
    source: Path
    data: bytes
    note: str | None = None  # what was changed (cut, resized), for the turn's reason
    seconds: float | None = None  # audio length after any cut
    size: tuple[int, int] | None = None  # image (width, height) after any resize
    samples: np.ndarray | None = field(default=None, repr=False)  # audio, 16 kHz mono float32
    at_s: float | None = None  # a video frame's time in its video


# Leading bytes of the formats each kind accepts.
_AUDIO_MAGIC = {b"RIFF": "wav", b"fLaC": "flac", b"OggS": "ogg", b"ID3": "mp3"}
_IMAGE_MAGIC = {b"\x89PNG": "png", b"\xff\xd8\xff": "jpeg", b"GIF8": "gif", b"BM": "bmp"}
_SUFFIX_KIND = {
    **dict.fromkeys((".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus"), MediaKind.AUDIO),
    **dict.fromkeys((".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"), MediaKind.IMAGE),
    **dict.fromkeys((".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v"), MediaKind.VIDEO),
}


def sniff(head: bytes) -> tuple[MediaKind, str] | None:
    """What the first bytes of a file say it is, or None when they say nothing we take."""
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return MediaKind.VIDEO, "avi"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return MediaKind.IMAGE, "webp"
    if head[:4] == b"RIFF" and head[8:12] != b"WAVE":
        return None
    for magic, fmt in _AUDIO_MAGIC.items():
        if head.startswith(magic):
            return MediaKind.AUDIO, fmt
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return MediaKind.AUDIO, "mp3"  # an MPEG audio frame without an ID3 tag
    for magic, fmt in _IMAGE_MAGIC.items():
        if head.startswith(magic):
            return MediaKind.IMAGE, fmt
    if head[4:8] == b"ftyp":
        return MediaKind.VIDEO, "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return MediaKind.VIDEO, "matroska"
    return None


def _a(kind: MediaKind) -> str:
    return f"an {kind}" if kind in (MediaKind.AUDIO, MediaKind.IMAGE) else f"a {kind}"


def kind_of(path: Path) -> MediaKind:
    """The kind a file's content shows, checked against what its extension promises."""
    if not path.is_file():
        raise AttachmentError(f"attachment not found: {path}")
    with path.open("rb") as f:
        head = f.read(16)
    found = sniff(head)
    expected = _SUFFIX_KIND.get(path.suffix.lower())
    if found is None:
        what = f"{_a(expected)} file" if expected else "an audio, image or video file"
        raise AttachmentError(f"{path.name} is not {what} (its content is not a known format)")
    kind, fmt = found
    if expected is not None and kind is not expected:
        raise AttachmentError(
            f"{path.name} is not {_a(expected)} file: "
            f"its content is {fmt} {kind}"
        )
    return kind


def load(path: Path, limits: MediaLimits, *, expect: MediaKind | None = None) -> list[Attachment]:
    """The attachment(s) a file gives: one for audio or an image, frames + audio for a video."""
    kind = kind_of(path)
    if expect is not None and kind is not expect:
        raise AttachmentError(f"{path.name} is {_a(kind)} file, not {_a(expect)}")
    if kind is MediaKind.AUDIO:
        return [load_audio(path, limits)]
    if kind is MediaKind.IMAGE:
        return [load_image(path, limits)]
    return load_video(path, limits)


# --- audio ------------------------------------------------------------------------------------


@cache
def _omni_audio() -> ModuleType:
    """qwen-omni-utils' audio reader, loaded on its own (see the module docstring for why)."""
    spec = importlib.util.find_spec("qwen_omni_utils")
    if spec is None or not spec.submodule_search_locations:
        raise AttachmentError(
            "audio attachments need the omni extra: pip install 'sarai[omni]' (qwen-omni-utils)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "v2_5" / "audio_process.py"
    mod_spec = importlib.util.spec_from_file_location("sarai_qwen_omni_audio", path)
    if mod_spec is None or mod_spec.loader is None or not path.is_file():
        raise AttachmentError(f"qwen-omni-utils has no audio reader at {path}")
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def audio_seconds(path: Path) -> float:
    """A recording's length, read from its header (no decoding)."""
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except (RuntimeError, sf.LibsndfileError):
        import av

        try:
            with av.open(str(path)) as c:
                return float(c.duration or 0) / 1e6
        except (av.FFmpegError, OSError) as exc:
            raise AttachmentError(f"cannot read audio {path.name}: {exc}") from exc


def load_audio(path: Path, limits: MediaLimits) -> Attachment:
    """16 kHz mono, cut to `limits.max_audio_s` with a note when longer."""
    total = audio_seconds(path)
    if total <= 0:
        raise AttachmentError(f"{path.name} holds no audio")
    cut = total > limits.max_audio_s + 0.01
    content = {"type": "audio", "audio": str(path)}
    if cut:
        content["audio_end"] = limits.max_audio_s
    try:
        audios = _omni_audio().process_audio_info(
            [{"role": "user", "content": [content]}], use_audio_in_video=False
        )
    except AttachmentError:
        raise
    except Exception as exc:  # librosa/audioread raise many types for a broken file
        raise AttachmentError(f"cannot decode audio {path.name}: {exc}") from exc
    samples = np.asarray(audios[0], dtype=np.float32)
    if samples.size == 0:
        raise AttachmentError(f"{path.name} holds no audio")
    note = None
    if cut:
        note = (f"{path.name} is {total / 60:.1f} min long; only the first "
                f"{limits.max_audio_s:g} s were sent (the model's limit)")
    return audio_attachment(samples, path, note=note)


def audio_attachment(samples: np.ndarray, source: Path, *, note: str | None = None,
                     at_s: float | None = None) -> Attachment:
    """Wrap 16 kHz mono float samples as a WAV attachment (libmtmd decodes WAV itself)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return Attachment(MediaKind.AUDIO, source, buf.getvalue(), note=note,
                      seconds=round(len(samples) / SAMPLE_RATE, 3), samples=samples, at_s=at_s)


# --- images -----------------------------------------------------------------------------------


def smart_resize(height: int, width: int, *, min_pixels: int, max_pixels: int,
                 factor: int = PATCH_FACTOR) -> tuple[int, int]:
    """qwen-omni-utils' rule: sides multiples of `factor`, pixels within the range, same shape."""
    if max(height, width) / max(1, min(height, width)) > MAX_RATIO:
        raise AttachmentError(
            f"the image is too elongated ({width}×{height}); at most {MAX_RATIO}:1 is accepted"
        )
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def _png(image, source: Path, *, min_pixels: int, max_pixels: int,
         at_s: float | None = None) -> Attachment:
    from PIL import Image

    image = image.convert("RGB")
    width, height = image.size
    h, w = smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
    note = None
    if (w, h) != (width, height):
        image = image.resize((w, h), Image.Resampling.BICUBIC)
        if width * height > max_pixels:
            note = f"{source.name} was resized from {width}×{height} to {w}×{h} (the model's limit)"
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return Attachment(MediaKind.IMAGE, source, buf.getvalue(), note=note, size=(w, h), at_s=at_s)


def load_image(path: Path, limits: MediaLimits) -> Attachment:
    """RGB, resized within Qwen2.5-Omni's pixel limits, as PNG."""
    from PIL import Image

    # The 8000×8000 photos people attach are legitimate; the guard is for decompression bombs.
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, 200_000_000)
    try:
        with Image.open(path) as img:
            img.load()
            return _png(img, path, min_pixels=limits.image_min_pixels,
                        max_pixels=limits.image_max_pixels)
    except AttachmentError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise AttachmentError(f"cannot read image {path.name}: {exc}") from exc


# --- video ------------------------------------------------------------------------------------


def frame_count(duration_s: float, total_frames: int, limits: MediaLimits) -> int:
    """How many frames to keep: `video_fps` per second, even, within the limits and the video."""
    want = duration_s * limits.video_fps
    lo = math.ceil(limits.video_min_frames / 2) * 2
    hi = max(2, math.floor(min(limits.video_max_frames, total_frames) / 2) * 2)
    n = min(max(want, lo), hi, total_frames)
    return max(1, math.floor(n / 2) * 2) if total_frames >= 2 else 1


def load_video(path: Path, limits: MediaLimits) -> list[Attachment]:
    """Sampled frames (as images, each with its time) followed by the audio track, if any."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise AttachmentError(f"cannot read video {path.name}: {exc}") from exc
    with container:
        if not container.streams.video:
            raise AttachmentError(f"{path.name} has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 0) or 25.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = float(container.duration or 0) / 1e6
        total = stream.frames or max(1, round(duration * fps))
        n = frame_count(duration or total / fps, total, limits)
        wanted = set(np.linspace(0, total - 1, n).round().astype(int).tolist())
        # Only the sampled frames become images: a minute of 1080p is gigabytes decoded.
        picked: list[tuple[int, object]] = []
        try:
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    picked.append((i, frame.to_image()))
                if i >= max(wanted):
                    break
        except av.FFmpegError as exc:
            raise AttachmentError(f"cannot decode video {path.name}: {exc}") from exc
    if not picked:
        raise AttachmentError(f"{path.name} holds no video frames")
    # Per-frame pixels shrink as frames grow, as in qwen-omni-utils (total budget over frames).
    per_frame = max(limits.video_frame_min_pixels,
                    min(limits.video_frame_max_pixels, limits.image_max_pixels // len(picked)))
    out = [_png(img, path, min_pixels=limits.video_frame_min_pixels // 4,
                max_pixels=per_frame, at_s=round(i / fps, 2)) for i, img in picked]
    audio = _video_audio(path, limits)
    if audio is not None:
        out.append(audio)
    return out


def _video_audio(path: Path, limits: MediaLimits) -> Attachment | None:
    """The video's audio track at 16 kHz mono, or None when it has none."""
    import av

    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        for frame in c.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        return None
    samples = np.concatenate(chunks).astype(np.float32)
    note = None
    limit = int(limits.max_audio_s * SAMPLE_RATE)
    if len(samples) > limit:
        samples = samples[:limit]
        note = f"only the first {limits.max_audio_s:g} s of {path.name}'s sound were sent"
    return audio_attachment(samples, path, note=note, at_s=0.0)
