"""Speech in and out: capture, VAD, recognition (faster-whisper), synthesis (Piper).

Importing this package makes sure nothing here reaches the network. onnxruntime (which
Piper loads) ships Microsoft's telemetry uploader in its Linux wheels from 1.29: on import it
writes a device id and an event queue under ~/.cache/Microsoft and, about nine seconds later,
starts resolving an upload host. Only ORT_DISABLE_TELEMETRY in the environment before the
first `import onnxruntime` in the process stops it (`disable_telemetry_events()` does not),
so it is set here, before any module of this package can import Piper or faster-whisper.
The Hugging Face hub is kept offline too: SARAi loads models only from local folders, and a
missing file must be an error, not a download; those two settings are only defaults, which
the environment may override. The telemetry switch is not.
"""

import os

os.environ["ORT_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
