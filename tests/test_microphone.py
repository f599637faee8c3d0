"""The real microphone path: PulseAudio null sinks stand in for the room and the speaker.

A recording is played into the "room" sink, whose monitor is SARAi's microphone; SARAi's
answer goes to the "speaker" sink, whose monitor the test records.
"""

import json
import subprocess
import sys
import threading
import time

import numpy as np

from conftest import REPO
from sarai.audio.pcm import read_audio


def test_run_hears_the_room_and_answers_into_the_speaker(pulse, sarai_env, make_speech, tmp_path):
    env = {**sarai_env, **pulse.env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sarai.daemon.cli", "run", "--json", "--max-turns", "1"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    err_lines: list[str] = []
    ready = threading.Event()

    def read_err():
        for line in proc.stderr:
            err_lines.append(line)
            if "Listening" in line:
                ready.set()

    threading.Thread(target=read_err, daemon=True).start()
    recording = tmp_path / "heard.wav"
    rec = None
    try:
        assert ready.wait(180), "sarai run never started listening:\n" + "".join(err_lines)
        rec = pulse.record_speaker(recording)
        time.sleep(0.5)
        pulse.play(make_speech(["Hello there, what is your name?"])).wait(30)
        out, _ = proc.communicate(timeout=240)
    finally:
        proc.kill()
        if rec is not None:
            time.sleep(0.3)
            rec.terminate()
            rec.wait(10)
    assert proc.returncode == 0, "".join(err_lines)
    (turn,) = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert "name" in turn["transcript"].lower()
    assert turn["reply"].strip()
    assert {"asr", "ttft", "first_audio", "total"} <= turn["timings"].keys()
    heard = read_audio(recording)
    assert np.abs(heard.samples).max() > 3000, "nothing came out of the speaker"


def _where_in(source: np.ndarray, block: np.ndarray) -> tuple[int, float]:
    """Where `block` lies in `source` (sample offset) and how well it matches (0..1)."""
    n = 1 << int(np.ceil(np.log2(len(source) + len(block))))
    c = np.fft.irfft(np.fft.rfft(source, n) * np.conj(np.fft.rfft(block, n)), n)
    c = c[: len(source) - len(block)]
    i = int(np.argmax(c))
    return i, float(c[i] / (np.linalg.norm(block) * np.linalg.norm(source[i:i + len(block)])))


def test_microphone_changes_block_size_without_a_gap(pulse, monkeypatch, tmp_path):
    from sarai.audio.devices import MicSource
    from sarai.audio.pcm import write_wav

    for key, value in pulse.env.items():
        monkeypatch.setenv(key, value)
    # Noise played into the room: each block can be placed in it, so a lost or repeated
    # stretch of audio where the new stream takes over shows as a jump.
    noise = (np.random.default_rng(7).standard_normal(16000 * 8) * 6000).astype(np.int16)
    write_wav(tmp_path / "noise.wav", noise, 16000)
    player = pulse.play(tmp_path / "noise.wav")
    mic = MicSource(block_ms=90)
    mic.start()
    try:
        first = [mic.read_timed(timeout=5) for _ in range(5)]
        assert all(b is not None and len(b[0]) == 1440 for b in first)
        mic.set_block_ms(30)
        assert mic.block_ms == 30
        after = [mic.read_timed(timeout=5) for _ in range(60)]
        assert all(b is not None for b in after), "audio stopped during the change"
        sizes = [len(b[0]) for b in after]
        switched = sizes.index(480)
        # The old stream's blocks stop as soon as the new one delivers: no interleaving.
        assert set(sizes[:switched]) <= {1440} and set(sizes[switched:]) == {480}
        # Capture stamps only move forward. (They may jump at the change: for the first
        # seconds of a stream opened alone on the source, PortAudio reports its latency
        # 0.2-0.67 s too long, while the audio itself runs on without a gap, as checked below.)
        blocks = first + after
        times = [b[1] for b in blocks]
        assert times == sorted(times)
        # The new stream's stamps run with its audio (no jump, whatever the callbacks' jitter).
        new = times[5 + switched:]
        assert abs((new[-1] - new[0]) - 0.03 * (len(new) - 1)) < 0.1
        placed = [_where_in(noise.astype(float), b[0].astype(float)) for b in blocks]
        assert min(score for _, score in placed) > 0.9, "the microphone did not hear the noise"
        for (at, _), (next_at, _), (block, _) in zip(placed, placed[1:], blocks, strict=False):
            # each block begins where the one before it ended (a sample of slack)
            jump = next_at - (at + len(block))
            assert abs(jump) <= 2, f"the audio jumps by {jump} samples"
    finally:
        mic.close()
        player.kill()
        player.wait()
