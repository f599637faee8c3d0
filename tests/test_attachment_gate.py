"""The attachment gate: every bad file is one sentence (an AttachmentError, which `sarai`
prints as one `sarai: error:` line, exit 1), refused before anything large is decoded, and
audio without speech never reaches a model.

Unreadable files: the tests run as root here, and root reads a 0000 file anyway, so the
check runs in a forked child that has dropped to user nobody (65534); as any other user the
file is simply made 0000."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from omni_fixtures import speech_samples, write_speech, write_video

from conftest import REPO
from sarai.models.attachments import (
    AttachmentError,
    MediaKind,
    MediaLimits,
    NoSpeechFound,
    check,
    kind_of,
    load,
)
from sarai.models.errors import ModelError

LIMITS = MediaLimits()


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit PNG of width × height black pixels: tiny on disk (zeros compress a
    thousandfold), gigabytes once decoded to RGB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row * 1000) for _ in range(height // 1000)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body)
                     + chunk(b"IEND", b""))
    return path


def shared_dir() -> Path:
    """A folder another user may enter (pytest's tmp_path is root's own)."""
    d = Path(tempfile.mkdtemp(prefix="sarai-gate-", dir="/tmp"))
    os.chmod(d, 0o755)
    return d


def as_another_user(fn) -> str:
    """Run fn() as user nobody in a forked child (root only); what it raised, as text."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, report, leave without cleanup
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            fn()
            out = "no error"
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            out = f"{type(exc).__name__}: {exc}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out


# --- files that cannot be used ----------------------------------------------------------------


def test_an_unreadable_file_is_one_sentence():
    d = shared_dir()
    try:
        clip = write_speech(d / "private.wav", 1.0)
        os.chmod(clip, 0o000)
        if os.getuid() == 0:
            got = as_another_user(lambda: check(clip, "audio"))
            assert got == f"AttachmentError: cannot read {clip}: permission denied"
            got = as_another_user(lambda: load(clip, LIMITS))
            assert got == f"AttachmentError: cannot read {clip}: permission denied"
        else:
            with pytest.raises(AttachmentError, match="cannot read .*: permission denied"):
                load(clip, LIMITS)
    finally:
        os.chmod(d / "private.wav", 0o600)
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


def test_a_folder_is_not_an_attachment(tmp_path):
    folder = tmp_path / "clips.wav"
    folder.mkdir()
    with pytest.raises(AttachmentError, match=r"clips\.wav is a folder, not a file"):
        check(folder)
    with pytest.raises(AttachmentError, match="is a folder"):
        load(folder, LIMITS)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(AttachmentError, match="is not a regular file"):
        check(fifo)


def test_empty_and_oversized_files(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(AttachmentError, match=r"empty\.png is empty"):
        check(empty)
    clip = write_speech(tmp_path / "a.wav", 2.0)
    with pytest.raises(AttachmentError, match=r"a\.wav is 0 MB; attachments are limited to "
                                              r"0\.01 MB"):
        check(clip, limits=MediaLimits(max_file_mb=0.01))


def test_a_wav_cut_inside_its_header(tmp_path):
    clip = write_speech(tmp_path / "whole.wav", 2.0)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(clip.read_bytes()[:30])  # "RIFF…WAVEfmt " and no more
    with pytest.raises(AttachmentError, match=r"^cannot read audio cut\.wav: "):
        check(cut)
    with pytest.raises(AttachmentError, match=r"^cannot read audio cut\.wav: "):
        load(cut, LIMITS)


def test_a_wav_cut_short_of_what_its_header_says_gives_what_is_there(tmp_path):
    clip = write_speech(tmp_path / "whole.wav", 4.0)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(clip.read_bytes()[: 44 + 2 * 16000 * 2])  # the header promises 4 s; 2 s
    (a,) = load(cut, LIMITS)
    assert a.seconds == pytest.approx(2.0, abs=0.01)


def test_a_file_deleted_between_check_and_load(tmp_path):
    clip = write_speech(tmp_path / "gone.wav", 1.0)
    assert check(clip, MediaKind.AUDIO) is MediaKind.AUDIO
    clip.unlink()
    with pytest.raises(AttachmentError, match=f"^attachment not found: {clip}$"):
        load(clip, LIMITS)


def test_wrong_extension_and_unknown_kind(tmp_path):
    clip = write_speech(tmp_path / "song.png", 1.0)
    with pytest.raises(AttachmentError, match=r"song\.png is not an image file: its content "
                                              r"is wav audio"):
        check(clip)
    with pytest.raises(AttachmentError, match="unknown attachment kind 'sound'"):
        check(write_speech(tmp_path / "ok.wav", 1.0), "sound")
    assert kind_of(tmp_path / "ok.wav") is MediaKind.AUDIO


def test_every_gate_error_is_a_model_error():
    # What `sarai` reports as one "sarai: error:" line with exit status 1.
    assert issubclass(AttachmentError, ModelError) and issubclass(NoSpeechFound, AttachmentError)


# --- decompression bombs ----------------------------------------------------------------------


_MEASURE = """
import json, resource, sys
from PIL import Image  # imported before measuring: only the attempt itself counts
from sarai.models.attachments import AttachmentError, check, load
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
errors = []
for gate in (check, load):
    try:
        gate(sys.argv[1])
    except AttachmentError as exc:
        errors.append(str(exc))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"errors": errors, "grew_mb": (after - before) / 1024}))
"""


def test_a_400_megapixel_png_bomb_is_refused_before_decoding(tmp_path):
    bomb = png_bomb(tmp_path / "bomb.png", 20_000, 20_000)
    assert bomb.stat().st_size < 400_000  # a few hundred KB that would decode to 1.2 GB RGB
    r = subprocess.run([sys.executable, "-c", _MEASURE, str(bomb)], capture_output=True,
                       text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert len(got["errors"]) == 2  # check() and load() both refuse it
    for message in got["errors"]:
        assert message.startswith("bomb.png is too large a picture to decode: more than "
                                  "100 megapixels (the limit)")
    assert got["grew_mb"] < 50  # the header was read, the pixels never were


def test_a_picture_over_our_limit_but_under_pillows_is_refused_with_its_size(tmp_path):
    big = png_bomb(tmp_path / "big.png", 12_000, 10_000)  # 120 Mpx: Pillow only warns
    with pytest.raises(AttachmentError, match=r"more than 100 megapixels \(the limit\); it is "
                                              r"12000×10000, 120 megapixels"):
        load(big, LIMITS)
    with pytest.raises(AttachmentError, match="more than 1 megapixels"):
        check(png_bomb(tmp_path / "small.png", 2000, 1000),
              limits=MediaLimits(image_max_source_pixels=1_000_000))


def test_videos_too_long_or_too_large_are_refused_before_decoding(tmp_path):
    video = write_video(tmp_path / "v.mp4", seconds=3.0, with_audio=False)
    with pytest.raises(AttachmentError, match=r"v\.mp4 is 0\.1 min long; videos over 0\.04 min"
                                              r" are refused"):
        check(video, limits=MediaLimits(video_max_s=2.4))
    with pytest.raises(AttachmentError, match=r"v\.mp4 is 160×120; videos over 0\.01 megapixels"):
        load(video, MediaLimits(video_max_source_pixels=100 * 100))


# --- audio must hold speech -------------------------------------------------------------------


def write(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    sf.write(path, samples, rate, subtype="PCM_16")
    return path


def test_ten_minutes_of_digital_silence_is_no_speech(tmp_path):
    silence = write(tmp_path / "silence.wav", np.zeros(600 * 16000, np.int16))
    assert check(silence) is MediaKind.AUDIO  # the gate alone reads headers only
    with pytest.raises(NoSpeechFound) as err:
        load(silence, LIMITS)
    assert str(err.value) == "no speech found in silence.wav (in its first 300 s)"


def test_random_samples_behind_a_valid_header_are_no_speech(tmp_path):
    rng = np.random.default_rng(7)
    noise = write(tmp_path / "noise.wav", rng.integers(-20000, 20000, 30 * 16000, np.int16))
    with pytest.raises(NoSpeechFound, match=r"^no speech found in noise\.wav$"):
        load(noise, LIMITS)


def test_a_tone_is_no_speech_and_speech_after_silence_is_found(tmp_path):
    t = np.arange(5 * 16000) / 16000
    tone = write(tmp_path / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    with pytest.raises(NoSpeechFound):
        load(tone, LIMITS)
    late = np.concatenate([np.zeros(60 * 16000, np.float32), speech_samples(3.0)])
    (a,) = load(write(tmp_path / "late.wav", late), LIMITS)
    assert a.seconds == pytest.approx(63.0, abs=0.01)  # found, and sent whole


def test_the_vad_settings_are_the_callers(tmp_path):
    from sarai.audio.settings import VadSettings

    short = write(tmp_path / "short.wav", speech_samples(1.0))
    load(short, LIMITS)  # one second of speech passes the default settings …
    with pytest.raises(NoSpeechFound):  # … not settings that want more speech than that
        load(short, LIMITS, vad=VadSettings(min_speech_ms=2000))


def test_a_video_whose_sound_holds_no_speech_keeps_its_frames(tmp_path):
    video = write_video(tmp_path / "music.mp4", seconds=2.0,
                        sound=np.zeros(2 * 16000, np.float32))
    parts = load(video, LIMITS)
    assert {p.kind for p in parts} == {MediaKind.IMAGE}
    assert parts[0].note == "music.mp4's sound holds no speech; only its frames were sent"


# --- through the real command -----------------------------------------------------------------


def test_the_command_prints_one_line_and_exits_1(sarai, tmp_path):
    silence = write(tmp_path / "silence.wav", np.zeros(600 * 16000, np.int16))
    bomb = png_bomb(tmp_path / "bomb.png", 20_000, 20_000)
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    for args, sentence in [
        (("--audio", str(silence)), "no speech found in silence.wav (in its first 300 s)"),
        (("--image", str(bomb), "what is it?"),
         "bomb.png is too large a picture to decode: more than 100 megapixels (the limit)"),
        (("--audio", str(folder)), f"{folder} is a folder, not a file"),
    ]:
        r = sarai("ask", "--no-speak", *args)
        assert (r.code, r.out, r.err) == (1, "", f"sarai: error: {sentence}\n")
