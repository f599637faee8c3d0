"""`sarai models pull`: download a production model with progress, resume and checksum.

Files come from a Hugging Face-style server (`<base>/<repo>/resolve/<revision>/<file>`). The
checksum is the catalogue's pinned SHA-256 where there is one, else the one the server
announces for the file (`X-Linked-Etag`, Hugging Face's SHA-256 of LFS files), else one given
on the command line; a download nobody vouches for is refused. An interrupted download leaves
`<file>.partial`, and the next pull continues it with an HTTP Range request.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from sarai.models.errors import ModelError
from sarai.models.settings import Tier

PULL_URL_ENV = "SARAI_PULL_URL"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PullFile:
    repo: str  # "ggml-org/Qwen2.5-Omni-3B-GGUF"
    name: str  # file name in the repo, and in the models folder
    revision: str = "main"
    sha256: str | None = None  # pinned; otherwise the server's announcement is used
    size: int | None = None
    role: str = "model"  # "model" or "mmproj"


@dataclass(frozen=True)
class Pullable:
    name: str
    title: str
    tier: Tier | None
    files: tuple[PullFile, ...]

    @property
    def model(self) -> PullFile:
        return next(f for f in self.files if f.role == "model")

    @property
    def mmproj(self) -> PullFile | None:
        return next((f for f in self.files if f.role == "mmproj"), None)


_OMNI3 = "ggml-org/Qwen2.5-Omni-3B-GGUF"
_OMNI3_REV = "75f1b73b657a50f5092502799457ccb4a4a1f9df"
_OMNI7 = "ggml-org/Qwen2.5-Omni-7B-GGUF"

CATALOGUE: dict[str, Pullable] = {
    p.name: p
    for p in (
        Pullable("qwen2.5-omni-3b", "Qwen2.5-Omni-3B (Q4_K_M) with its audio/vision projector",
                 Tier.OMNI_FAST, (
                     PullFile(_OMNI3, "Qwen2.5-Omni-3B-Q4_K_M.gguf", _OMNI3_REV,
                              "4b0bd358c1e9ec55dd3055ef6d71c958c821533d85916a10cfa89c4552a86e29",
                              2_104_931_648),
                     PullFile(_OMNI3, "mmproj-Qwen2.5-Omni-3B-Q8_0.gguf", _OMNI3_REV,
                              "4e6c816cd33f7298d07cb780c136a396631e50e62f6501660271f8c6e302e565",
                              1_538_031_328, role="mmproj"),
                 )),
        Pullable("qwen2.5-omni-7b", "Qwen2.5-Omni-7B (Q4_K_M) with its audio/vision projector",
                 Tier.OMNI_QUALITY, (
                     PullFile(_OMNI7, "Qwen2.5-Omni-7B-Q4_K_M.gguf"),
                     PullFile(_OMNI7, "mmproj-Qwen2.5-Omni-7B-Q8_0.gguf", role="mmproj"),
                 )),
        Pullable("lfm2-1.2b", "LFM2-1.2B (Q4_K_M)", Tier.TINY, (
            PullFile("LiquidAI/LFM2-1.2B-GGUF", "LFM2-1.2B-Q4_K_M.gguf"),
        )),
    )
}


def lookup(name: str, tier: Tier | None = None) -> Pullable:
    """A catalogue entry, or any `org/repo/file.gguf` (bound to `tier` if given)."""
    if name in CATALOGUE:
        p = CATALOGUE[name]
        return p if tier is None else Pullable(p.name, p.title, tier, p.files)
    parts = name.split("/")
    if len(parts) >= 3 and name.endswith(".gguf"):
        repo, file = "/".join(parts[:2]), "/".join(parts[2:])
        return Pullable(name, name, tier, (PullFile(repo, file),))
    raise ModelError(f"unknown model '{name}'; known: {', '.join(CATALOGUE)} "
                     "(or give org/repo/file.gguf)")


def base_url(configured: str) -> str:
    return (os.environ.get(PULL_URL_ENV) or configured).rstrip("/")


def file_url(base: str, f: PullFile) -> str:
    return f"{base}/{f.repo}/resolve/{f.revision}/{f.name}"


@dataclass(frozen=True)
class Progress:
    file: str
    done: int
    total: int | None
    resumed_from: int
    rate_bps: float
    stage: str  # "download", "verify", "done", "skip"


Reporter = Callable[[Progress], None]


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _stamped_ok(path: Path, sha: str) -> bool:
    stamp = _stamp(path)
    if not path.is_file() or not stamp.is_file():
        return False
    st = path.stat()
    return stamp.read_text().split() == [sha, str(st.st_size), str(int(st.st_mtime))]


def _announced(client: httpx.Client, url: str) -> tuple[str | None, int | None]:
    """The SHA-256 and size the server vouches for, from a HEAD that does not follow the
    redirect to the CDN (the redirect itself carries Hugging Face's X-Linked-* headers)."""
    try:
        r = client.head(url, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise ModelError(f"cannot reach {url}: {type(exc).__name__}") from exc
    if r.status_code == 404:
        raise ModelError(f"{url} does not exist (404)")
    if r.status_code in (401, 403):
        raise ModelError(f"{url} needs permission ({r.status_code})")
    if r.status_code >= 400:
        raise ModelError(f"{url} answered {r.status_code}")
    etag = (r.headers.get("x-linked-etag") or r.headers.get("etag") or "").strip()
    etag = etag.removeprefix("W/").strip('"').lower()
    size = r.headers.get("x-linked-size") or (
        r.headers.get("content-length") if r.status_code < 300 else None
    )
    return (etag if _HEX64.match(etag) else None), (int(size) if size else None)


def download(f: PullFile, dest_dir: Path, base: str, *, sha256: str | None = None,
             report: Reporter | None = None, timeout: float = 30.0) -> Path:
    """Download one file into `dest_dir`, resuming a `.partial`, and verify its SHA-256."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / Path(f.name).name
    partial = target.with_name(target.name + ".partial")
    url = file_url(base, f)
    with httpx.Client(timeout=httpx.Timeout(timeout), headers={"User-Agent": "sarai"}) as client:
        announced, size = _announced(client, url)
        expected = (sha256 or f.sha256 or announced or "").lower()
        if not _HEX64.match(expected):
            raise ModelError(f"no checksum is known for {f.name}: the server did not announce "
                             "one; pass --sha256 with the published SHA-256")
        if f.sha256 and announced and announced != f.sha256:
            raise ModelError(f"the server announces a different file for {f.name} "
                             f"(sha256 {announced[:12]}…, expected {f.sha256[:12]}…)")
        total = f.size or size
        if _stamped_ok(target, expected):
            if report:
                report(Progress(f.name, target.stat().st_size, total, 0, 0.0, "skip"))
            return target
        offset = partial.stat().st_size if partial.is_file() else 0
        if total is not None and offset > total:
            partial.unlink()
            offset = 0
        digest = _fetch(client, url, partial, offset, total, f.name, report)
    if report:
        report(Progress(f.name, partial.stat().st_size, total, offset, 0.0, "verify"))
    got = digest.hexdigest()
    if got != expected:
        partial.unlink(missing_ok=True)
        raise ModelError(f"checksum mismatch for {f.name}: expected {expected[:12]}…, got "
                         f"{got[:12]}…; the download was deleted, pull again")
    partial.replace(target)
    st = target.stat()
    _stamp(target).write_text(f"{expected} {st.st_size} {int(st.st_mtime)}\n")
    if report:
        report(Progress(f.name, st.st_size, total, offset, 0.0, "done"))
    return target


def _hash_existing(partial: Path, offset: int) -> hashlib._Hash:
    digest = hashlib.sha256()
    if offset:
        with partial.open("rb") as old:
            while block := old.read(_CHUNK):
                digest.update(block)
    return digest


def _fetch(client: httpx.Client, url: str, partial: Path, offset: int, total: int | None,
           name: str, report: Reporter | None) -> hashlib._Hash:
    """GET from `offset` (Range) and append to `partial`; the SHA-256 of the whole file."""
    digest = _hash_existing(partial, offset)
    if total is not None and offset == total:
        return digest  # a complete .partial from a run that stopped before verifying
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    t0 = time.monotonic()
    try:
        with client.stream("GET", url, headers=headers, follow_redirects=True) as r:
            if r.status_code == 416 and offset:
                return digest  # nothing left to fetch; the checksum decides
            if r.status_code >= 400:
                raise ModelError(f"{url} answered {r.status_code}")
            if offset and r.status_code != 206:
                # The server ignored the Range: start over rather than append a second copy.
                digest = hashlib.sha256()
                offset = 0
            mode = "ab" if offset else "wb"
            done = offset
            last = 0.0
            with partial.open(mode) as out:
                for block in r.iter_bytes():  # as received: an interruption keeps it all
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    now = time.monotonic()
                    if report and (now - last > 0.5 or (total and done >= total)):
                        last = now
                        rate = (done - offset) / max(now - t0, 1e-6)
                        report(Progress(name, done, total, offset, rate, "download"))
    except httpx.HTTPError as exc:
        raise ModelError(f"download of {name} was interrupted ({type(exc).__name__}); "
                         "run the same pull again to resume") from exc
    if total is not None and partial.stat().st_size < total:
        raise ModelError(f"download of {name} stopped at {partial.stat().st_size} of {total} "
                         "bytes; run the same pull again to resume")
    return digest
