"""Has the speaker finished? Smart Turn v3.2 judges it from the sound of the turn's end.

Words alone cannot tell a finished sentence from a pause in the middle of one when the
recogniser puts a full stop at every pause ("I was thinking." … "about the weekend"). Smart
Turn (pipecat-ai's end-of-turn model, BSD 2-Clause, built on Whisper tiny's encoder) hears
the intonation and rhythm of the last eight seconds and gives the probability that the turn
is complete. It is an 8.7 MB ONNX file that `sarai setup` takes out of the pipecat-ai wheel
(see sarai.models.starter); it runs here with onnxruntime and numpy only, in about 100 ms
of one core.

The input is what pipecat feeds it: the utterance from just before speech began (SARAi's
pre-roll) to a short silence after it, as float32, cut to its last 8 s or padded with zeros
at the start, turned into Whisper's log-mel features (sarai.audio.smart_turn_features).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sarai.audio.errors import AudioError
from sarai.audio.pcm import SAMPLE_RATE

log = logging.getLogger(__name__)

WINDOW_S = 8


class SmartTurn:
    """A loaded Smart Turn model; `probability(samples)` is thread-safe."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        path = Path(path)
        if not path.is_file():
            raise AudioError(f"end-of-turn model not found: {path}; run 'sarai setup'")
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        so.intra_op_num_threads = threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(path), sess_options=so,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own hierarchy
            raise AudioError(f"cannot load end-of-turn model {path.name}: {exc}") from exc
        inputs = {i.name: i.shape for i in self._session.get_inputs()}
        if list(inputs) != ["input_features"]:
            raise AudioError(f"{path.name} is not a Smart Turn v3 model (its inputs are "
                             f"{', '.join(inputs) or 'none'})")
        self.name = path.stem

    @staticmethod
    def features(samples: np.ndarray) -> np.ndarray:
        """The model's input for 16 kHz mono audio (int16 or float32): [1, 80, 800]."""
        from sarai.audio.smart_turn_features import compute_whisper_log_mel_features

        audio = (samples.astype(np.float32) / 32768.0 if samples.dtype == np.int16
                 else samples.astype(np.float32, copy=False))
        n = WINDOW_S * SAMPLE_RATE
        audio = audio[-n:]
        if len(audio) < n:
            audio = np.pad(audio, (n - len(audio), 0))  # silence before, as pipecat pads
        return compute_whisper_log_mel_features(audio, do_normalize=True)[None]

    def probability(self, samples: np.ndarray) -> float:
        """How likely the speaker has finished, from 0 to 1, after `samples` (16 kHz mono,
        from just before speech began to a short silence after it)."""
        feats = self.features(samples)
        out = self._session.run(None, {"input_features": feats})[0]
        return float(np.asarray(out).reshape(-1)[0])
