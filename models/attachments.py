"""Audio, image and video attachments: one gate in front of every model.

Every attachment passes the same gate, whether it came from `sarai ask --image …` or over the
control socket: it must be a readable regular file, of a known format *by its content* (a
`.wav` that holds a JPEG is refused), and within size, pixel and length limits read from its
header before anything is decoded, so a 400-megapixel picture packed into a few hundred
kilobytes is refused, not decoded. `check()` is that gate alone (cheap: headers only), for
when a request arrives; `load()` passes it again and then decodes.

Audio then goes through the same speech check as the microphone: webrtcvad cuts it into
utterances and Silero gives its second opinion. A clip without speech (silence, noise,
music) is refused with "no speech found in NAME" and never reaches a model, which would
otherwise spend a minute answering "you you you". A video whose sound track holds no speech
keeps its frames and loses the sound, with a note.

Long audio is cut to the model's limit and says so in `note`; large images are resized with
Qwen2.5-Omni's rules (`smart_resize` in qwen-omni-utils: sides multiples of 28, pixel count
within [min_pixels, max_pixels]). A video becomes sampled frames (at most `video_max_frames`,
qwen-omni-utils' 2 fps rule) plus its sound track, as Qwen2.5-Omni takes it with
`use_audio_in_video`. qwen-omni-utils' vision module cannot be imported here (it imports
torchvision, whose PyPI wheels are built against CUDA torch), so its rules are restated with
the same constants; audio is decoded with libsndfile (PyAV for what it cannot read) and frames
with PyAV.

Every failure is an AttachmentError (a ModelError): one sentence, never a traceback.
"""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from sarai.audio.settings import VadSettings
from sarai.models.errors import ModelError

SAMPLE_RATE = 16_000  # what Qwen2.5-Omni's audio encoder (and libmtmd for it) expects
PATCH_FACTOR = 28  # vision patch 14 × spatial merge 2, as qwen-omni-utils computes it
MAX_RATIO = 200  # qwen-omni-utils refuses images more elongated than this
_HEAD = 64  # bytes read to tell the format


class AttachmentError(ModelError):
    """An attachment cannot be used; the message says why in one sentence."""


class NoSpeechFound(AttachmentError):
    """An audio attachment holds no speech (silence, noise, music)."""


class MediaKind(StrEnum):
    AUDIO = "audio"
    IMAGE = "image"
    VIDEO = "video"


@dataclass(frozen=True)
class MediaLimits:
    """How much of an attachment is accepted and how much reaches the model."""

    # Refused outright, before decoding:
    max_file_mb: float = 1024.0
    # Pillow decodes a whole picture into memory (3 bytes a pixel, more while converting):
    # 100 Mpx is above any camera's photo and about 600 MB at the peak.
    image_max_source_pixels: int = 100_000_000
    video_max_source_pixels: int = 8192 * 4320  # 8K
    # Frames are decoded in order up to the last sampled one, so decoding time grows with
    # the length.
    video_max_s: float = 600.0
    # Cut (with a note), not refused. Qwen2.5-Omni's feature extractor takes at most 300 s
    # (chunk_length 300, n_samples 4.8 M); only that much is decoded.
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


# --- the gate ---------------------------------------------------------------------------------


@dataclass(eq=False)
class _Probe:
    """An attachment that passed the gate: its open file and what its header said."""

    path: Path
    file: BinaryIO
    kind: MediaKind
    fmt: str
    seconds: float | None = None  # audio or video length
    image: Any = None  # PIL image, only its header read
    with_av: bool = False  # audio that libsndfile cannot read (PyAV decodes it)
    frames: int = 0  # video: frames in the stream (0: unknown)
    fps: float = 0.0  # video

    def close(self) -> None:
        if self.image is not None:
            self.image.close()
        self.file.close()


def check(path: str | Path, kind: MediaKind | str | None = None,
          limits: MediaLimits | None = None) -> MediaKind:
    """The gate alone: AttachmentError (one sentence) unless `path` is a readable file of a
    known format, of `kind` if one is given, within `limits`. Reads headers only, so it is
    cheap enough to run when a request arrives. Returns the kind the content shows."""
    probe = _probe(Path(path), limits or MediaLimits(), _kind(kind))
    probe.close()
    return probe.kind


def kind_of(path: str | Path) -> MediaKind:
    """The kind a file's content shows, checked against what its extension promises (the
    first step of the gate: readable, known format; no limits)."""
    f, kind, _ = _open(Path(path), MediaLimits())
    f.close()
    return kind


def load(path: str | Path, limits: MediaLimits | None = None, *,
         expect: MediaKind | str | None = None,
         vad: VadSettings | None = None) -> list[Attachment]:
    """The attachment(s) a file gives: one for audio or an image, frames + sound for a video.

    The gate runs first; audio (and a video's sound track) must then hold speech by the
    VAD check `vad` (default: the default VAD settings), or NoSpeechFound says so.
    """
    limits = limits or MediaLimits()
    vad = vad or VadSettings()
    probe = _probe(Path(path), limits, _kind(expect))
    try:
        if probe.kind is MediaKind.AUDIO:
            return [_load_audio(probe, limits, vad)]
        if probe.kind is MediaKind.IMAGE:
            return [_load_image(probe, limits)]
        return _load_video(probe, limits, vad)
    finally:
        probe.close()


def _kind(kind: MediaKind | str | None) -> MediaKind | None:
    if kind is None or isinstance(kind, MediaKind):
        return kind
    try:
        return MediaKind(kind)
    except ValueError:
        raise AttachmentError(f"unknown attachment kind {kind!r} (audio, image or video)"
                              ) from None


def _os_error(path: Path, exc: OSError) -> AttachmentError:
    if isinstance(exc, FileNotFoundError):
        return AttachmentError(f"attachment not found: {path}")
    if isinstance(exc, PermissionError):
        return AttachmentError(f"cannot read {path}: permission denied")
    return AttachmentError(f"cannot read {path}: {exc.strerror or exc}")


def _open(path: Path, limits: MediaLimits) -> tuple[BinaryIO, MediaKind, str]:
    """The file opened for reading, and its kind and format by content."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise AttachmentError(f"{path} is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device could block or never end
            raise AttachmentError(f"{path} is not a regular file")
        # O_NONBLOCK: a file swapped for a FIFO after the stat must not block the open.
        f = open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK))  # noqa: SIM115
    except OSError as exc:
        raise _os_error(path, exc) from exc
    try:
        st = os.fstat(f.fileno())  # the file now open, which may not be the one stat() saw
        if not stat.S_ISREG(st.st_mode):
            raise AttachmentError(f"{path} is not a regular file")
        if st.st_size == 0:
            raise AttachmentError(f"{path.name} is empty")
        if st.st_size > limits.max_file_mb * 1e6:
            raise AttachmentError(f"{path.name} is {st.st_size / 1e6:.0f} MB; attachments "
                                  f"are limited to {limits.max_file_mb:g} MB")
        try:
            head = f.read(_HEAD)
            f.seek(0)
        except OSError as exc:
            raise _os_error(path, exc) from exc
        found = sniff(head)
        expected = _SUFFIX_KIND.get(path.suffix.lower())
        if found is None:
            what = f"{_a(expected)} file" if expected else "an audio, image or video file"
            raise AttachmentError(f"{path.name} is not {what} (its content is not a known "
                                  "format)")
        kind, fmt = found
        if expected is not None and kind is not expected:
            raise AttachmentError(f"{path.name} is not {_a(expected)} file: "
                                  f"its content is {fmt} {kind}")
        return f, kind, fmt
    except BaseException:
        f.close()
        raise


def _probe(path: Path, limits: MediaLimits, expect: MediaKind | None) -> _Probe:
    f, kind, fmt = _open(path, limits)
    probe = _Probe(path, f, kind, fmt)
    try:
        if expect is not None and kind is not expect:
            raise AttachmentError(f"{path.name} is {_a(kind)} file, not {_a(expect)}")
        if kind is MediaKind.AUDIO:
            _audio_header(probe)
        elif kind is MediaKind.IMAGE:
            _image_header(probe, limits)
        else:
            _video_header(probe, limits)
        f.seek(0)
        return probe
    except AttachmentError:
        probe.close()
        raise
    except OSError as exc:  # the file went away or broke while its header was read
        probe.close()
        raise _os_error(path, exc) from exc


def _detail(exc: Exception) -> str:
    """The useful end of a decoder's message ("Error opening <…>: Format not recognised.")."""
    return str(exc).rsplit(": ", 1)[-1].strip().rstrip(".") or type(exc).__name__


def _audio_header(p: _Probe) -> None:
    import soundfile as sf

    try:
        info = sf.info(p.file)
        p.seconds = info.frames / info.samplerate if info.samplerate else 0.0
    except (RuntimeError, TypeError, ValueError, sf.LibsndfileError) as exc:
        if p.fmt not in ("mp3", "ogg"):  # libsndfile reads every WAV and FLAC there is
            raise AttachmentError(f"cannot read audio {p.path.name}: {_detail(exc)}") from exc
        p.file.seek(0)
        p.with_av = True
        p.seconds = _av_audio_seconds(p, exc)
    if not p.seconds or p.seconds <= 0:
        raise AttachmentError(f"{p.path.name} holds no audio")


def _av_audio_seconds(p: _Probe, first: Exception) -> float:
    import av

    try:
        with av.open(p.file) as c:
            if not c.streams.audio:
                raise AttachmentError(f"{p.path.name} has no sound in it")
            s = c.streams.audio[0]
            if s.duration is not None and s.time_base is not None:
                return float(s.duration * s.time_base)
            return float(c.duration or 0) / 1e6
    except (av.FFmpegError, ValueError) as exc:
        raise AttachmentError(f"cannot read audio {p.path.name}: {_detail(first)}") from exc


def _image_header(p: _Probe, limits: MediaLimits) -> None:
    from PIL import Image, UnidentifiedImageError

    cap = limits.image_max_source_pixels
    refusal = (f"{p.path.name} is too large a picture to decode: more than "
               f"{cap / 1e6:.3g} megapixels (the limit)")
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit and refuses at twice it; ours is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            p.image = Image.open(p.file)  # reads the header only
    except Image.DecompressionBombError as exc:
        raise AttachmentError(refusal) from exc
    except (UnidentifiedImageError, ValueError, SyntaxError, OSError) as exc:
        raise AttachmentError(f"cannot read image {p.path.name}: {_detail(exc)}") from exc
    width, height = p.image.size
    if width <= 0 or height <= 0:
        raise AttachmentError(f"{p.path.name} claims a size of {width}×{height}")
    if width * height > cap:
        raise AttachmentError(f"{refusal}; it is {width}×{height}, "
                              f"{width * height / 1e6:.0f} megapixels")


def _video_header(p: _Probe, limits: MediaLimits) -> None:
    import av

    try:
        with av.open(p.file) as c:
            if not c.streams.video:
                raise AttachmentError(f"{p.path.name} has no video stream")
            s = c.streams.video[0]
            width, height = s.codec_context.width, s.codec_context.height
            p.fps = float(s.average_rate or 0) or 25.0
            if s.duration is not None and s.time_base is not None:
                p.seconds = float(s.duration * s.time_base)
            else:
                p.seconds = float(c.duration or 0) / 1e6
            p.frames = s.frames or max(1, round(p.seconds * p.fps))
    except (av.FFmpegError, ValueError) as exc:
        raise AttachmentError(f"cannot read video {p.path.name}: {_detail(exc)}") from exc
    if width * height > limits.video_max_source_pixels:
        raise AttachmentError(
            f"{p.path.name} is {width}×{height}; videos over "
            f"{limits.video_max_source_pixels / 1e6:.3g} megapixels a frame are refused")
    if p.seconds > limits.video_max_s:
        raise AttachmentError(f"{p.path.name} is {p.seconds / 60:.1f} min long; videos over "
                              f"{limits.video_max_s / 60:g} min are refused")


# --- audio ------------------------------------------------------------------------------------


def _load_audio(p: _Probe, limits: MediaLimits, vad: VadSettings) -> Attachment:
    """16 kHz mono, cut to `limits.max_audio_s` with a note when longer; speech required."""
    assert p.seconds is not None
    cut = p.seconds > limits.max_audio_s + 0.01
    samples = _decode_av_audio(p, limits) if p.with_av else _decode_sf_audio(p, limits)
    if samples.size == 0:
        raise AttachmentError(f"{p.path.name} holds no audio")
    if not has_speech(samples, vad):
        where = f" (in its first {limits.max_audio_s:g} s)" if cut else ""
        raise NoSpeechFound(f"no speech found in {p.path.name}{where}")
    note = None
    if cut:
        note = (f"{p.path.name} is {p.seconds / 60:.1f} min long; only the first "
                f"{limits.max_audio_s:g} s were sent (the model's limit)")
    return audio_attachment(samples, p.path, note=note)


def _decode_sf_audio(p: _Probe, limits: MediaLimits) -> np.ndarray:
    import soundfile as sf

    from sarai.audio.pcm import resample

    try:
        with sf.SoundFile(p.file) as snd:
            frames = min(snd.frames, int(limits.max_audio_s * snd.samplerate))
            data = snd.read(frames, dtype="float32", always_2d=True)
            rate = snd.samplerate
    except (RuntimeError, TypeError, ValueError, sf.LibsndfileError) as exc:
        raise AttachmentError(f"cannot decode audio {p.path.name}: {_detail(exc)}") from exc
    return resample(data.mean(axis=1), rate, SAMPLE_RATE)


def _decode_av_audio(p: _Probe, limits: MediaLimits) -> np.ndarray:
    import av

    try:
        with av.open(p.file) as c:
            samples = _av_sound(c, limits)
    except (av.FFmpegError, ValueError) as exc:
        raise AttachmentError(f"cannot decode audio {p.path.name}: {_detail(exc)}") from exc
    return samples if samples is not None else np.zeros(0, np.float32)


def _av_sound(container, limits: MediaLimits) -> np.ndarray | None:
    """A container's first sound stream at 16 kHz mono, at most `max_audio_s` of it."""
    import av

    if not container.streams.audio:
        return None
    limit = int(limits.max_audio_s * SAMPLE_RATE)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    have = 0
    for frame in container.decode(audio=0):
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray().reshape(-1))
            have += chunks[-1].size
        if have >= limit:
            break
    else:
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        return None
    return np.concatenate(chunks).astype(np.float32)[:limit]


def has_speech(samples: np.ndarray, vad: VadSettings) -> bool:
    """Whether 16 kHz mono audio holds an utterance by the microphone's own checks: the
    webrtcvad segmenter with `vad`'s settings, and its second opinion (Silero) if set."""
    from sarai.audio.pcm import to_int16
    from sarai.audio.vad import UtteranceSegmenter, second_opinion

    pcm = to_int16(samples)
    seg = UtteranceSegmenter(vad, second_opinion=second_opinion(vad))
    block = SAMPLE_RATE * 10
    for start in range(0, len(pcm), block):  # stop at the first utterance
        if seg.push(pcm[start : start + block]):
            return True
    # Silence after the end lets an utterance that runs to the last sample close normally.
    tail = np.zeros(SAMPLE_RATE * vad.end_silence_ms // 1000 + 1, np.int16)
    return bool(seg.push(tail) or seg.flush())


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


def _png(image, source: Path, *, min_pixels: int, max_pixels: int, at_s: float | None = None,
         original: tuple[int, int] | None = None) -> Attachment:
    from PIL import Image

    image = image.convert("RGB")
    width, height = original or image.size
    h, w = smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
    note = None
    if (w, h) != image.size:
        image = image.resize((w, h), Image.Resampling.BICUBIC)
    if (w, h) != (width, height) and width * height > max_pixels:
        note = f"{source.name} was resized from {width}×{height} to {w}×{h} (the model's limit)"
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return Attachment(MediaKind.IMAGE, source, buf.getvalue(), note=note, size=(w, h), at_s=at_s)


def _load_image(p: _Probe, limits: MediaLimits) -> Attachment:
    """RGB, resized within Qwen2.5-Omni's pixel limits, as PNG."""
    img = p.image
    original = img.size
    h, w = smart_resize(original[1], original[0], min_pixels=limits.image_min_pixels,
                        max_pixels=limits.image_max_pixels)
    # A JPEG can be decoded straight at 1/2, 1/4 or 1/8 scale: no bigger than needed.
    img.draft("RGB", (w, h))
    try:
        img.load()
        return _png(img, p.path, min_pixels=limits.image_min_pixels,
                    max_pixels=limits.image_max_pixels, original=original)
    except (OSError, ValueError, SyntaxError) as exc:
        raise AttachmentError(f"cannot read image {p.path.name}: {_detail(exc)}") from exc


# --- video ------------------------------------------------------------------------------------


def frame_count(duration_s: float, total_frames: int, limits: MediaLimits) -> int:
    """How many frames to keep: `video_fps` per second, even, within the limits and the video."""
    want = duration_s * limits.video_fps
    lo = math.ceil(limits.video_min_frames / 2) * 2
    hi = max(2, math.floor(min(limits.video_max_frames, total_frames) / 2) * 2)
    n = min(max(want, lo), hi, total_frames)
    return max(1, math.floor(n / 2) * 2) if total_frames >= 2 else 1


def _load_video(p: _Probe, limits: MediaLimits, vad: VadSettings) -> list[Attachment]:
    """Sampled frames (as images, each with its time) followed by the sound track, if it
    holds speech."""
    import av

    total, fps = p.frames, p.fps
    n = frame_count(p.seconds or total / fps, total, limits)
    wanted = set(np.linspace(0, total - 1, n).round().astype(int).tolist())
    picked: list[tuple[int, object]] = []
    try:
        with av.open(p.file) as c:
            # Only the sampled frames become images: a minute of 1080p is gigabytes decoded.
            for i, frame in enumerate(c.decode(video=0)):
                if i in wanted:
                    picked.append((i, frame.to_image()))
                if i >= max(wanted):
                    break
        p.file.seek(0)
        with av.open(p.file) as c:
            sound = _av_sound(c, limits)
    except (av.FFmpegError, ValueError) as exc:
        raise AttachmentError(f"cannot decode video {p.path.name}: {_detail(exc)}") from exc
    if not picked:
        raise AttachmentError(f"{p.path.name} holds no video frames")
    # Per-frame pixels shrink as frames grow, as in qwen-omni-utils (total budget over frames).
    per_frame = max(limits.video_frame_min_pixels,
                    min(limits.video_frame_max_pixels, limits.image_max_pixels // len(picked)))
    out = [_png(img, p.path, min_pixels=limits.video_frame_min_pixels // 4,
                max_pixels=per_frame, at_s=round(i / fps, 2)) for i, img in picked]
    if sound is None or sound.size == 0:
        return out
    if not has_speech(sound, vad):
        note = f"{p.path.name}'s sound holds no speech; only its frames were sent"
        out[0] = replace(out[0], note="; ".join(filter(None, [out[0].note, note])))
        return out
    note = None
    if p.seconds and p.seconds > limits.max_audio_s + 0.01:
        note = f"only the first {limits.max_audio_s:g} s of {p.path.name}'s sound were sent"
    out.append(audio_attachment(sound, p.path, note=note, at_s=0.0))
    return out
