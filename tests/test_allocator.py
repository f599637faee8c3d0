"""The daemon's allocator settings (models.memory.for_a_long_run), checked in a fresh process
with glibc's own report of its arenas, and the page faults of a turn's recognition."""

import subprocess
import sys
from pathlib import Path

import pytest

PROBE = r"""
import ctypes, ctypes.util, os, sys, tempfile, threading
import numpy as np
from sarai.models import memory

if sys.argv[1] == "tuned":
    assert memory.for_a_long_run()

def work():  # what a turn's threads do: big buffers freed, small objects kept between them
    kept = []
    for i in range(200):
        big = np.ones(300_000, np.float32)  # 1.2 MB, an audio or feature buffer
        kept.append(bytes(100 + i % 50))
        del big

threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.fdopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
fd, path = tempfile.mkstemp()
f = libc.fdopen(fd, b"w")
libc.malloc_info(0, f)
libc.fclose(f)
print(open(path).read().count("<heap nr="))
os.unlink(path)
"""


def _fresh_process(script: str, *args: str, timeout: float = 120) -> str:
    """What `script` prints, run in a Python of its own with `args`."""
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _arenas(mode: str) -> int:
    return int(_fresh_process(PROBE, mode))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_long_run_keeps_to_two_arenas_however_many_threads_allocate():
    assert _arenas("tuned") <= 2
    assert _arenas("default") > 2  # the probe does make threads take arenas of their own


FAULTS = r"""
import resource, sys
from pathlib import Path
from sarai.audio.asr import Transcriber
from sarai.audio.pcm import read_audio
from sarai.audio.settings import AsrSettings
from sarai.models import memory

assert memory.for_a_long_run()
if sys.argv[1] == "small-mmap":  # blocks from 128 KB mmap'd, as the daemon once set it up
    memory._lib().mallopt(memory._M_MMAP_THRESHOLD, 128 * 1024)
t = Transcriber(AsrSettings(language="es"), {"whisper-base": Path(sys.argv[2])})
audio = read_audio(Path(sys.argv[3])).samples
t.transcribe(audio)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(t.transcribe(audio).text)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, model: Path, wav: Path) -> tuple[str, int]:
    text, faults = _fresh_process(FAULTS, mode, str(model), str(wav), timeout=300).rsplit("\n", 1)
    return text, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_turns_recognition_reuses_memory_instead_of_faulting_in_fresh_pages(models_dir,
                                                                              recordings):  # noqa: ARG001
    """Whisper's buffers for a turn, hundreds between 128 KB and 16 MB, come from the heap
    again on the next turn; mmap'd afresh, each is pages the kernel must fault in and zero
    (on this Spanish prompt ~75,000, against ~14,000 from the heap, and ~40 % more CPU)."""
    from recordings import PROMPTS

    from sarai.models import starter

    model = starter.CATALOGUE["whisper-base"].path(models_dir)
    wav = PROMPTS["es"] / "conf-getpin.wav"
    (tuned_text, tuned), (small_text, small) = (_faults(m, model, wav)
                                                for m in ("tuned", "small-mmap"))
    assert tuned_text == small_text and "conferencia" in tuned_text.lower(), tuned_text
    assert small > 20_000  # the probe does fault in fresh pages when blocks are mmap'd
    assert tuned < small / 4, (tuned, small)  # ~14,000 against ~75,000
