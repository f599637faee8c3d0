"""Finding GGUF models already on this machine.

Three places: Ollama's store (manifests name the blobs that hold the weights and the
projector), the Hugging Face cache (snapshots link to blobs), and folders: the models folder
and any configured in `models.search_dirs`. What each file is comes from its GGUF header,
never from its name.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sarai.models.errors import ModelError
from sarai.models.ggufinfo import GGUFInfo, read_info

log = logging.getLogger(__name__)

_MODEL_LAYER = "application/vnd.ollama.image.model"
_PROJECTOR_LAYER = "application/vnd.ollama.image.projector"


@dataclass(frozen=True)
class Found:
    """A GGUF file somewhere on the machine, with where it was found and what it is."""

    path: Path
    source: str  # "folder", "starter", "huggingface", "ollama"
    label: str  # what that source calls it: an Ollama name, "org/repo/file", a file name
    projector: Path | None = None  # Ollama models can carry their mmproj as a second blob

    def info(self) -> GGUFInfo:
        return read_info(self.path)


def ollama_roots() -> list[Path]:
    """Where Ollama keeps models: $OLLAMA_MODELS, the user's store and the system service's."""
    roots = [Path.home() / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]
    if env := os.environ.get("OLLAMA_MODELS"):
        roots.insert(0, Path(env))
    return roots


def hf_cache() -> Path:
    if env := os.environ.get("HF_HUB_CACHE"):
        return Path(env)
    home = os.environ.get("HF_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "huggingface") / "hub"


def _ollama_name(parts: tuple[str, ...]) -> str:
    """manifests/<registry>/<namespace>/<model>/<tag> → the name `ollama run` takes."""
    *where, model, tag = parts
    if len(where) == 2 and where[0] == "registry.ollama.ai":
        return f"{model}:{tag}" if where[1] == "library" else f"{where[1]}/{model}:{tag}"
    return "/".join([*where, model]) + f":{tag}"


def _blob(root: Path, digest: str) -> Path:
    return root / "blobs" / digest.replace(":", "-")


def scan_ollama(roots: Iterable[Path] | None = None) -> Iterator[Found]:
    for root in roots if roots is not None else ollama_roots():
        manifests = root / "manifests"
        try:
            files = sorted(p for p in manifests.rglob("*") if p.is_file())
        except OSError:
            continue
        for mf in files:
            try:
                layers = json.loads(mf.read_text("utf-8")).get("layers", [])
            except (OSError, ValueError, AttributeError) as exc:
                log.debug("skipping Ollama manifest %s: %s", mf, exc)
                continue
            by_type = {layer.get("mediaType"): layer.get("digest", "") for layer in layers
                       if isinstance(layer, dict)}
            if _MODEL_LAYER not in by_type:
                continue
            weights = _blob(root, by_type[_MODEL_LAYER])
            if not weights.is_file():
                continue
            proj = by_type.get(_PROJECTOR_LAYER)
            projector = _blob(root, proj) if proj and _blob(root, proj).is_file() else None
            name = _ollama_name(mf.relative_to(manifests).parts)
            yield Found(weights, "ollama", name, projector)


def scan_hf_cache(root: Path | None = None) -> Iterator[Found]:
    root = root or hf_cache()
    try:
        repos = sorted(root.glob("models--*"))
    except OSError:
        return
    for repo in repos:
        name = repo.name.removeprefix("models--").replace("--", "/")
        for f in sorted((repo / "snapshots").glob("*/**/*.gguf")):
            if f.is_file():  # snapshot entries are symlinks into blobs/; a dangling one is skipped
                rel = f.relative_to(repo / "snapshots").parts[1:]
                yield Found(f, "huggingface", f"{name}/{'/'.join(rel)}")


def scan_folder(folder: Path, source: str = "folder") -> Iterator[Found]:
    try:
        files = sorted(folder.expanduser().rglob("*.gguf"))
    except OSError:
        return
    for f in files:
        if f.is_file():
            src = "starter" if "starter" in f.relative_to(folder.expanduser()).parts[:1] else source
            yield Found(f, src, f.name)


def discover(models_dir: Path, search_dirs: Iterable[Path] = (), *,
             ollama: Iterable[Path] | None = None, hf: Path | None = None) -> list[Found]:
    """Every GGUF file in the models folder, the configured folders, the HF cache and Ollama's
    store, each once (the first place a file is seen names it)."""
    seen: set[Path] = set()
    out: list[Found] = []
    sources: list[Iterable[Found]] = [scan_folder(models_dir)]
    sources += [scan_folder(Path(d)) for d in search_dirs]
    sources += [scan_hf_cache(hf), scan_ollama(ollama)]
    for source in sources:
        for found in source:
            try:
                real = found.path.resolve()
            except OSError:
                continue
            if real not in seen:
                seen.add(real)
                out.append(found)
    return out


def find_model(name: str, found: Iterable[Found]) -> Found | None:
    """The file a tier's `model` string names: an Ollama name, an "org/repo/file" from the
    HF cache, or a bare file name found in any of the places searched."""
    candidates = list(found)
    for f in candidates:
        if f.label == name or (f.source == "ollama" and f.label == f"{name}:latest"):
            return f
    for f in candidates:
        if f.path.name == name:
            return f
    return None


def describe(found: Found) -> tuple[GGUFInfo | None, str]:
    """The GGUF facts of a found file, or None and why they could not be read."""
    try:
        return found.info(), ""
    except ModelError as exc:
        return None, str(exc)
