"""Attachments: checked by content, long audio cut, large images resized, video split."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import soundfile as sf
from omni_fixtures import write_speech, write_video
from PIL import Image

from sarai.models.attachments import (
    PATCH_FACTOR,
    AttachmentError,
    MediaKind,
    MediaLimits,
    load,
    smart_resize,
)

LIMITS = MediaLimits()


def test_ten_minute_clip_is_cut_to_the_model_limit_with_a_note(tmp_path):
    clip = write_speech(tmp_path / "long.wav", 600.0)
    (a,) = load(clip, LIMITS)
    assert a.kind is MediaKind.AUDIO
    assert a.seconds == pytest.approx(300.0, abs=0.05)
    assert len(a.samples) == pytest.approx(300 * 16000, abs=160)
    assert "10.0 min" in a.note and "first 300 s" in a.note
    assert a.data[:4] == b"RIFF"  # what libmtmd decodes


def test_short_clip_is_kept_whole_and_resampled_to_16k(tmp_path):
    clip = write_speech(tmp_path / "short.wav", 2.5, rate=44100)
    (a,) = load(clip, LIMITS)
    assert a.note is None
    assert a.seconds == pytest.approx(2.5, abs=0.01)
    assert len(a.samples) == pytest.approx(2.5 * 16000, abs=20)
    # The same sound, only resampled: as loud, and not shifted.
    direct = sf.read(write_speech(tmp_path / "ref.wav", 2.5), dtype="float32")[0]
    assert np.corrcoef(a.samples[: len(direct)], direct)[0, 1] > 0.95


def test_huge_image_is_resized_within_qwen_limits(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (8000, 8000), (10, 120, 200)).save(path)
    (a,) = load(path, LIMITS)
    w, h = a.size
    assert (w, h) == (3584, 3584)  # floor(8000 / sqrt(64e6 / 16384·28²) / 28) · 28
    assert w * h <= LIMITS.image_max_pixels and w % PATCH_FACTOR == 0 == h % PATCH_FACTOR
    assert "resized from 8000×8000 to 3584×3584" in a.note
    assert Image.open(io.BytesIO(a.data)).size == (3584, 3584)


def test_a_big_jpeg_is_decoded_at_a_reduced_scale_and_noted_at_its_real_size(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (9000, 6000), (200, 120, 10)).save(path, quality=80)
    (a,) = load(path, LIMITS)
    assert "resized from 9000×6000" in a.note
    assert a.size[0] * a.size[1] <= LIMITS.image_max_pixels
    assert Image.open(io.BytesIO(a.data)).getpixel((5, 5)) == pytest.approx((200, 120, 10),
                                                                            abs=3)


def test_small_image_is_scaled_up_to_the_minimum(tmp_path):
    path = tmp_path / "dot.jpg"
    Image.new("RGB", (20, 10), (0, 0, 0)).save(path)
    (a,) = load(path, LIMITS)
    w, h = a.size
    assert w * h >= LIMITS.image_min_pixels and a.note is None


def test_smart_resize_keeps_the_aspect_ratio():
    h, w = smart_resize(1080, 1920, min_pixels=LIMITS.image_min_pixels, max_pixels=640 * 28 * 28)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 640 * 28 * 28
    assert w / h == pytest.approx(1920 / 1080, rel=0.05)


def test_too_elongated_image_is_refused():
    with pytest.raises(AttachmentError, match="too elongated"):
        smart_resize(10, 4000, min_pixels=1, max_pixels=10**9)


def test_attachment_that_is_not_what_its_extension_says(tmp_path):
    png = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(png)
    fake = tmp_path / "clip.wav"
    shutil.copy(png, fake)
    with pytest.raises(AttachmentError, match=r"clip\.wav is not an audio file: its content is png"
                       ):
        load(fake, LIMITS)
    text = tmp_path / "photo.jpg"
    text.write_text("not a picture at all")
    with pytest.raises(AttachmentError, match=r"photo\.jpg is not an image file"):
        load(text, LIMITS)


def test_missing_attachment(tmp_path):
    with pytest.raises(AttachmentError, match="not found"):
        load(tmp_path / "nope.wav", LIMITS)


def test_wrong_kind_for_the_option(tmp_path):
    clip = write_speech(tmp_path / "a.wav", 1.0)
    with pytest.raises(AttachmentError, match="is an audio file, not an image"):
        load(clip, LIMITS, expect=MediaKind.IMAGE)


def test_video_becomes_frames_at_2fps_plus_its_audio_track(tmp_path):
    video = write_video(tmp_path / "clip.mp4", seconds=3.0)
    parts = load(video, LIMITS)
    frames = [p for p in parts if p.kind is MediaKind.IMAGE]
    audio = [p for p in parts if p.kind is MediaKind.AUDIO]
    assert len(frames) == 6  # 3 s × 2 fps
    assert [f.at_s for f in frames] == sorted(f.at_s for f in frames)
    assert frames[0].at_s == 0.0 and frames[-1].at_s >= 2.5
    assert all(f.size[0] % 28 == 0 for f in frames)
    assert len(audio) == 1 and audio[0].seconds == pytest.approx(3.0, abs=0.2)
    assert parts[-1] is audio[0]  # the sound follows the frames


def test_video_frames_are_capped(tmp_path):
    video = write_video(tmp_path / "clip.mp4", seconds=4.0, with_audio=False)
    parts = load(video, MediaLimits(video_max_frames=4))
    assert [p.kind for p in parts] == [MediaKind.IMAGE] * 4
