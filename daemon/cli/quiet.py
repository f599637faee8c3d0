"""Keeping the libraries' own messages out of the user's terminal.

llama.cpp, ALSA ("underrun occurred"), GTK and onnxruntime write straight to file descriptor
2 from C, between SARAi's own lines. Here descriptor 2 becomes a pipe whose lines go to the
log as DEBUG records of `sarai.native` (shown with --debug, kept in the daemon's log file when
it logs at DEBUG), while Python's `sys.stderr`, where SARAi's messages and logging go, keeps
the original stream.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import threading

log = logging.getLogger("sarai.native")

_PIPE_BYTES = 1 << 20
_installed = False


def keep_library_noise_out() -> None:
    """Send what is written to descriptor 2 from now on to the log (once per process)."""
    global _installed
    if _installed:
        return
    try:
        original = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:  # no stderr at all: nothing to keep clean
        return
    with contextlib.suppress(OSError):  # a roomy pipe, so a burst never waits for the reader
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    # A writer must never block on a full pipe (say, while the interpreter shuts down and the
    # reader no longer runs): a line of library chatter lost is better than a hang.
    flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    sys.stderr.flush()
    os.set_inheritable(original, False)
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(original, "w", buffering=1, encoding="utf-8",  # noqa: SIM115
                      errors="backslashreplace", closefd=True)
    threading.Thread(target=_forward, args=(read_end,), name="native-stderr",
                     daemon=True).start()
    _quiet_llama()
    _installed = True


def _forward(fd: int) -> None:
    with open(fd, "rb", buffering=0) as pipe:
        pending = b""
        while chunk := pipe.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    log.debug("%s", line.decode("utf-8", "replace").rstrip())


def _quiet_llama() -> None:
    """llama-cpp-python prints llama.cpp's log through Python's sys.stderr: send it to the
    log instead, once llama_cpp is imported (by whichever command loads a model)."""
    import importlib.abc
    import importlib.util

    class _Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):  # noqa: ARG002
            if name != "llama_cpp._logger":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            loader = spec.loader
            original_exec = loader.exec_module

            def exec_module(module):
                original_exec(module)
                _route_llama_logger(module)

            loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    if "llama_cpp._logger" in sys.modules:
        _route_llama_logger(sys.modules["llama_cpp._logger"])
    else:
        sys.meta_path.insert(0, _Hook())


class _Descriptor2:
    """`sys` as llama_cpp._logger sees it, but with stderr on descriptor 2 (the pipe)."""

    def __init__(self) -> None:
        self.stderr = open(2, "w", buffering=1, encoding="utf-8",  # noqa: SIM115
                           errors="replace", closefd=False)

    def __getattr__(self, name: str):
        return getattr(sys, name)


def _route_llama_logger(module) -> None:
    module.sys = _Descriptor2()
