"""The daemon's allocator settings (models.memory.for_a_long_run), checked in a fresh process
with glibc's own report of its arenas."""

import subprocess
import sys

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


def _arenas(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_long_run_keeps_to_two_arenas_however_many_threads_allocate():
    assert _arenas("tuned") <= 2
    assert _arenas("default") > 2  # the probe does make threads take arenas of their own
