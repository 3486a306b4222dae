"""The `hf` model source: GGUF files on Hugging Face, through huggingface_hub.

`hf:OWNER/REPO/FILE.gguf` (or a catalog name from plugins/halo_hf/models.conf) downloads into
$HALO_HOME/models/OWNER/REPO/FILE.gguf. For a split GGUF (`...-00001-of-0000N.gguf`) every part
is pulled. The download:

- asks the Hub's resolve endpoint for the file's metadata (huggingface_hub's
  `get_hf_file_metadata`: commit, ETag, size), so HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE
  mean what huggingface_hub says they mean; later parts are pinned to the first part's commit;
- checks free disk space for what is still missing before fetching a byte;
- streams into FILE.part with huggingface_hub's `http_get` (its progress bar on stderr, its
  retries with a Range request when the connection drops); an interrupted download keeps
  FILE.part and the next pull resumes it with a Range request, if the Hub's ETag is unchanged;
- checks integrity: the sha256 of the file must equal the ETag of an LFS file (a sha256), or
  the git blob sha1 of a small file; a mismatch deletes the download;
- writes FILE.json (ref, commit, etag, sha256, size) beside the file; a file with a matching
  sidecar is reused without asking the Hub, so offline use works.

`read_range` reads part of a file that is not downloaded with an HTTP Range request (what
`halo models synth` uses to read a GGUF header).

Repo ids and file names are checked before any request: no '..', '.', empty or absolute
components, no backslashes, and the target must stay inside $HALO_HOME/models.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

from halo_core.plugin_api import (
    __version__, CatalogEntry, LocalModel, ModelError, ModelSource, halo_home, hookimpl,
    human_size, write_json,
)

from .catalog import file_problem, parse_catalog, repo_problem, unsafe_path

SPLIT = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
_TRUE = {"1", "ON", "YES", "TRUE"}


def _offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it, also when set after it was imported."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.is_offline_mode() or env.upper() in _TRUE


def _endpoint() -> str:
    """HF_ENDPOINT as huggingface_hub reads it, also when set after it was imported."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _headers(url: str) -> dict[str, str]:
    """huggingface_hub's request headers (token included) for `url`; a CDN on another host
    gets no token, as in huggingface_hub."""
    from huggingface_hub.utils import build_hf_headers

    headers = build_hf_headers(library_name="halo", library_version=__version__)
    if urlparse(url).netloc != urlparse(_endpoint()).netloc:
        headers.pop("authorization", None)
    return headers


def models_dir() -> Path:
    return halo_home() / "models"


def parse_ref(ref: str) -> tuple[str, str]:
    """(repo, file) of "hf:OWNER/REPO/FILE.gguf"; refuses anything that could leave models/."""
    rest = ref.removeprefix("hf:")
    reason = unsafe_path(rest)
    if reason:
        raise ModelError(f"refusing model reference '{ref}': {reason} could point outside "
                         f"the models directory")
    parts = rest.split("/")
    repo, file = "/".join(parts[:2]), "/".join(parts[2:])
    problem = repo_problem(repo) if len(parts) >= 3 else "it has no file"
    problem = problem or file_problem(file)
    if problem:
        raise ModelError(f"bad hf model reference '{ref}': {problem} "
                         "(expected hf:OWNER/REPO/FILE.gguf)")
    root = os.path.normpath(models_dir())
    target = os.path.normpath(os.path.join(root, repo, file))
    if os.path.commonpath([root, target]) != root:
        raise ModelError(f"refusing model reference '{ref}': it resolves outside {root}")
    return repo, file


def split_parts(file: str) -> list[str]:
    """Every part of a split GGUF (from any part's name), else [file]."""
    match = SPLIT.match(file)
    if not match or int(match["count"]) < 1:
        return [file]
    count = int(match["count"])
    width = len(match["count"])
    return [f"{match['stem']}-{n:0{width}d}-of-{match['count']}.gguf" for n in range(1, count + 1)]


def _model_name(file: str) -> str:
    base = file.rsplit("/", 1)[-1]
    match = SPLIT.match(base)
    return match["stem"] if match else base.removesuffix(".gguf")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _partial(path: Path) -> tuple[Path, Path]:
    part = path.with_name(path.name + ".part")
    return part, _sidecar(part)


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _prune(folder: Path, stop: Path) -> None:
    """Remove empty folders from `folder` up to, not including, `stop`."""
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _free_space(folder: Path) -> int:
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _hashes(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file: the Hub's ETag is one or the other."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    sha1.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            sha256.update(block)
            sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest()


class _ProgressFile:
    """Reports bytes written so far to a halo progress callback; the rest is the real file."""

    def __init__(self, fh, progress, base: int, total: int | None):
        self._fh, self._progress, self._base, self._total = fh, progress, base, total

    def write(self, data):
        written = self._fh.write(data)
        self._progress(self._base + self._fh.tell(), self._total)
        return written

    def __getattr__(self, name):
        return getattr(self._fh, name)


class HfSource(ModelSource):
    name = "hf"
    description = "GGUF files on Hugging Face (huggingface_hub); catalog in plugins/halo_hf/models.conf"

    def __init__(self) -> None:
        self._catalog: tuple[tuple, list[CatalogEntry]] | None = None
        self._warned: set[str] = set()

    # -- catalog -------------------------------------------------------------------------

    def catalog_files(self) -> list[Path]:
        """The built-in catalog, then $HALO_HOME/models.conf when it exists (it wins by NAME)."""
        builtin = Path(str(resources.files(__name__).joinpath("models.conf")))
        user = halo_home() / "models.conf"
        return [builtin] + ([user] if user.is_file() else [])

    def catalog(self) -> list[CatalogEntry]:
        files = self.catalog_files()
        key = tuple((str(p), p.stat().st_mtime_ns) for p in files)
        if self._catalog is None or self._catalog[0] != key:
            merged: dict[str, CatalogEntry] = {}
            for path in files:
                entries, problems = parse_catalog(path.read_text(), str(path))
                for problem in problems:
                    if problem not in self._warned:
                        self._warned.add(problem)
                        print(f"halo: warning: {problem}", file=sys.stderr)
                merged.update((e.name, e) for e in entries)
            self._catalog = (key, list(merged.values()))
        return list(self._catalog[1])

    def aliases(self) -> dict[str, str]:
        return {entry.name: entry.ref for entry in self.catalog()}

    # -- local files ---------------------------------------------------------------------

    def _targets(self, ref: str) -> tuple[str, list[str], list[Path]]:
        repo, file = parse_ref(ref)
        parts = split_parts(file)
        return repo, parts, [models_dir() / repo / part for part in parts]

    def local(self, ref: str) -> LocalModel | None:
        repo, parts, paths = self._targets(ref)
        metas = []
        for path in paths:
            meta = _read_json(_sidecar(path))
            if meta is None or not path.is_file() or path.stat().st_size != meta.get("size"):
                return None
            metas.append(meta)
        first = f"hf:{repo}/{parts[0]}"  # any part names the whole model
        return LocalModel(_model_name(parts[0]), first, paths[0], sum(m["size"] for m in metas),
                          metas[0].get("sha256", ""), self.name)

    def remove(self, ref: str) -> list[Path]:
        _repo, _parts, paths = self._targets(ref)
        removed = []
        for path in paths:
            for candidate in (path, _sidecar(path), *_partial(path)):
                if candidate.is_file():
                    candidate.unlink()
                    removed.append(candidate)
        if not removed:
            raise ModelError(f"{ref} is not downloaded")
        _prune(paths[0].parent, models_dir())
        return removed

    # -- part of a file, without downloading it ---------------------------------------------

    def read_range(self, ref: str, start: int, end: int) -> tuple[bytes, int]:
        """Bytes [start, end) of the file with an HTTP Range request, and the file's size."""
        from huggingface_hub.utils import http_stream_backoff

        repo, file = parse_ref(ref)
        if _offline():
            raise ModelError(f"{ref} is not downloaded and offline mode is on (HF_HUB_OFFLINE)")
        key = (_endpoint(), repo, file)  # one metadata request for every range of a file
        known = self.__dict__.setdefault("_range_metadata", {})
        meta = known.get(key) or known.setdefault(key, self._metadata(*key, "main"))
        size = meta.size or 0
        end = min(end, size) if size else end
        headers = _headers(meta.location)
        headers["Range"] = f"bytes={start}-{end - 1}"
        data = bytearray()
        try:
            with http_stream_backoff("GET", meta.location, headers=headers) as response:
                if response.status_code not in (200, 206):
                    raise ModelError(f"{repo}/{file}: HTTP {response.status_code} for a Range request")
                skip = start if response.status_code == 200 else 0  # the server ignored Range
                for block in response.iter_bytes():
                    data += block
                    if len(data) >= skip + end - start:
                        break
        except ModelError:
            raise
        except Exception as exc:  # the HTTP client's connection errors, after its retries
            first = (str(exc).strip().splitlines() or [""])[0]
            raise ModelError(f"cannot read part of {repo}/{file}: {type(exc).__name__}: {first}") from None
        return bytes(data[skip:skip + end - start]), size

    # -- download ------------------------------------------------------------------------

    def fetch(self, ref, progress=None) -> LocalModel:
        model = self.local(ref)
        if model is not None:
            return model
        repo, parts, paths = self._targets(ref)
        if _offline():
            raise ModelError(f"{ref} is not downloaded and offline mode is on (HF_HUB_OFFLINE)")
        endpoint = _endpoint()
        metas, revision = [], "main"
        for part in parts:
            meta = self._metadata(endpoint, repo, part, revision)
            revision = meta.commit_hash  # every part from the commit the first one came from
            metas.append(meta)

        missing = 0
        for path, meta in zip(paths, metas):
            if not (path.is_file() and (_read_json(_sidecar(path)) or {}).get("etag") == meta.etag):
                missing += (meta.size or 0) - self._resumable(path, meta.etag)
        free = _free_space(paths[0].parent)
        if missing > free:
            raise ModelError(f"not enough disk space for {ref}: {human_size(missing)} to download, "
                             f"{human_size(free)} free in {models_dir()}")

        total = sum(m.size or 0 for m in metas) or None
        done = 0
        for part, path, meta in zip(parts, paths, metas):
            saved = _read_json(_sidecar(path)) or {}
            if not (path.is_file() and saved.get("etag") == meta.etag
                    and saved.get("size") == path.stat().st_size):
                if not self._adopt(ref, repo, part, path, meta):
                    self._download(ref, repo, part, path, meta, progress, done, total)
            done += path.stat().st_size
        model = self.local(ref)
        assert model is not None
        return model

    def _metadata(self, endpoint: str, repo: str, file: str, revision: str):
        from huggingface_hub import constants, errors, get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(repo, file, revision=revision, endpoint=endpoint)
        try:
            meta = get_hf_file_metadata(url, timeout=constants.HF_HUB_ETAG_TIMEOUT,
                                        library_name="halo", library_version=__version__)
        except errors.GatedRepoError:
            raise ModelError(f"{repo} on {endpoint} is gated: accept its terms on the Hub and "
                             "set HF_TOKEN") from None
        except errors.RepositoryNotFoundError:
            raise ModelError(f"repo {repo} not found on {endpoint} (or it is private: set "
                             "HF_TOKEN)") from None
        except (errors.RemoteEntryNotFoundError, errors.RevisionNotFoundError):
            raise ModelError(f"{repo} on {endpoint} has no file {file}") from None
        except errors.OfflineModeIsEnabled:
            raise ModelError(f"hf:{repo}/{file} is not downloaded and offline mode is on "
                             "(HF_HUB_OFFLINE)") from None
        except Exception as exc:  # network errors of whichever HTTP client the hub library uses
            first = (str(exc).strip().splitlines() or [""])[0]
            raise ModelError(f"cannot reach {endpoint} for {repo}/{file}: "
                             f"{type(exc).__name__}: {first}") from None
        if meta.commit_hash is None or meta.etag is None:
            raise ModelError(f"{endpoint} did not answer like a Hugging Face Hub for {repo}/{file} "
                             "(no X-Repo-Commit or ETag header): check HF_ENDPOINT")
        return meta

    def _resumable(self, path: Path, etag: str) -> int:
        """Bytes of an earlier, interrupted download of the same file version (else 0)."""
        part, part_meta = _partial(path)
        if part.is_file() and (_read_json(part_meta) or {}).get("etag") == etag:
            return part.stat().st_size
        return 0

    def _download(self, ref, repo, file, path: Path, meta, progress, done, total) -> None:
        from huggingface_hub import errors
        from huggingface_hub.file_download import http_get

        part, part_meta = _partial(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        resume = self._resumable(path, meta.etag)
        if resume == 0 or (meta.size is not None and resume > meta.size):
            resume = 0
            write_json(part_meta, {"ref": ref, "repo": repo, "file": file,
                                   "commit": meta.commit_hash, "etag": meta.etag,
                                   "size": meta.size})
        url = meta.location
        headers = _headers(url)
        verb = f"resuming at {resume / 1e6:.1f} MB" if resume else "downloading"
        print(f"halo: {verb} {repo}/{file} ({human_size(meta.size or 0)})", file=sys.stderr)
        with open(part, "r+b" if part.exists() else "wb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ModelError(f"{file} is being downloaded by another halo process") from None
            fh.truncate(resume)
            fh.seek(resume)
            sink = _ProgressFile(fh, progress, done, total) if progress else fh
            try:
                http_get(url, sink, resume_size=resume, headers=headers,
                         expected_size=meta.size, displayed_filename=file.rsplit("/", 1)[-1])
            except errors.HfHubHTTPError as exc:
                raise self._interrupted(ref, part, exc) from None
            except OSError as exc:
                if "Consistency check failed" in str(exc):  # a clean end at the wrong size
                    fh.truncate(0)
                    raise ModelError(f"{repo}/{file}: the Hub sent another size than it "
                                     f"announced ({meta.size} bytes); run the pull again") from None
                raise self._interrupted(ref, part, exc) from None
            except Exception as exc:  # the HTTP client's connection errors, after its retries
                raise self._interrupted(ref, part, exc) from None
            fh.flush()
            os.fsync(fh.fileno())
        self._verify(ref, repo, file, path, part, part_meta, meta)

    def _interrupted(self, ref: str, part: Path, exc: Exception) -> ModelError:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        first = (str(exc).strip().splitlines() or [""])[0]
        reason = f"HTTP {status}" if status else f"{type(exc).__name__}: {first}"
        size = part.stat().st_size if part.exists() else 0
        return ModelError(f"download of {ref} interrupted ({reason}); "
                          f"{size / 1e6:.1f} MB kept, run the same command again to resume")

    def _check(self, repo: str, file: str, path: Path, etag: str) -> tuple[bool, str, str, str]:
        """(matches, hash kind, its value, sha256) of a local file against the Hub's ETag."""
        print(f"halo: checking {repo}/{file} against the Hub's hash", file=sys.stderr)
        sha256, sha1 = _hashes(path)
        etag = etag.lower()
        if re.fullmatch(r"[0-9a-f]{64}", etag):
            return sha256 == etag, "sha256", sha256, sha256
        if re.fullmatch(r"[0-9a-f]{40}", etag):
            return sha1 == etag, "git sha1", sha1, sha256
        print(f"halo: warning: {repo}/{file}: the Hub's ETag '{etag}' is no hash; "
              "only the size was checked", file=sys.stderr)
        return True, "", "", sha256

    def _save(self, ref, repo, file, path: Path, meta, sha256: str) -> None:
        write_json(_sidecar(path), {"ref": ref, "repo": repo, "file": file,
                                    "commit": meta.commit_hash, "etag": meta.etag,
                                    "sha256": sha256, "size": path.stat().st_size})

    def _adopt(self, ref, repo, file, path: Path, meta) -> bool:
        """Keep a file that is already there without a sidecar (e.g. from `hf download
        --local-dir`) when it is the Hub's file; the caller downloads it otherwise."""
        if not path.is_file() or meta.size is None or path.stat().st_size != meta.size:
            return False
        ok, kind, _got, sha256 = self._check(repo, file, path, meta.etag)
        if ok and kind:
            self._save(ref, repo, file, path, meta, sha256)
        return ok and bool(kind)

    def _verify(self, ref, repo, file, path, part, part_meta, meta) -> None:
        ok, kind, got, sha256 = self._check(repo, file, part, meta.etag)
        if not ok:
            part.unlink(missing_ok=True)
            part_meta.unlink(missing_ok=True)
            _prune(path.parent, models_dir())
            raise ModelError(f"{repo}/{file} is corrupt: its {kind} is {got}, the Hub says "
                             f"{meta.etag.lower()}; the download was deleted")
        os.replace(part, path)
        self._save(ref, repo, file, path, meta, sha256)
        part_meta.unlink(missing_ok=True)


@hookimpl
def register_model_sources(register):
    register(HfSource())
