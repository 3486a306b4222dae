"""The four extension points. A plugin subclasses one of these and registers an instance.

Every method marked REQUIRED is abstract; the others have defaults that suit most plugins.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Mapping

from .errors import HaloError, ModelError, TuneError

if TYPE_CHECKING:
    from .chat import EvalContext
from .records import (
    Availability,
    BackendDefaults,
    CatalogEntry,
    Change,
    Check,
    Endpoint,
    EvalResult,
    HostFacts,
    LocalModel,
    ToolCommand,
)

Progress = Callable[[int, int | None], None]
"""A progress callback: (done, total or None)."""


class Backend(ABC):
    """Somewhere llama.cpp's tools can run: a native build, a container, a remote box.

    A complete plugin that runs llama.cpp from a fixed folder::

        from pathlib import Path
        from halo_core.plugin_api import Availability, Backend, ToolCommand, hookimpl

        class OptLlama(Backend):
            name = "opt"
            description = "llama.cpp in /opt/llama"

            def availability(self):
                ok = Path("/opt/llama/llama-bench").exists()
                return Availability(ok, "" if ok else "/opt/llama/llama-bench not found",
                                    "build llama.cpp into /opt/llama")

            def command(self, tool):
                binary = Path("/opt/llama") / tool
                return ToolCommand([str(binary)], cache_key=f"{binary}:{binary.stat().st_mtime_ns}")

        @hookimpl
        def register_backends(register):
            register(OptLlama())

    The core builds every llama-bench / llama-server argv itself, translating halo's options
    to the flags the binary supports, so a backend only says how to start a tool.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    need: ClassVar[str] = ""
    """For `halo bench setup`: "required", "optional", or "" (not a setup item)."""

    option_help: ClassVar[Mapping[str, str]] = {}
    """The options `configure` takes (`--backend-opt KEY=VALUE`), each with a line of help."""

    @abstractmethod
    def availability(self) -> Availability:
        """REQUIRED. Whether this backend can run here, and if not, why and how to fix it."""

    @abstractmethod
    def command(self, tool: str) -> ToolCommand:
        """REQUIRED. How to start `tool` ("llama-bench", "llama-server"): argv prefix and env.

        Raise Unavailable when the tool cannot be found.
        """

    def configure(self, options: Mapping[str, str]) -> "Backend":
        """A backend using `options`, keys from `option_help` (`--backend-opt KEY=VALUE`).

        The default takes none; a backend with options returns a configured copy.
        """
        if options:
            raise HaloError(f"backend '{self.name}' takes no option '{next(iter(options))}'")
        return self

    def map_path(self, path: Path) -> str:
        """The path under which the tool sees a host file (containers remap /home etc.)."""
        return str(path)

    def defaults(self) -> BackendDefaults:
        """llama.cpp defaults for this backend (ngl, flash attention, mmap, ubatch)."""
        return BackendDefaults()

    def provenance(self) -> dict[str, str]:
        """Facts recorded with every run: build number, image, binary path."""
        return {}

    def release(self) -> str:
        """Give back what running tools here left behind, for `halo flush` (a toolbox backend
        stops its container); one line saying what was done, or "" when there was nothing."""
        return ""


class ModelSource(ABC):
    """Turns a model reference ("pypi:pkg/file.gguf", "smoke", a path) into a local GGUF file.

    A complete plugin serving GGUFs from a shared folder::

        from pathlib import Path
        from halo_core.plugin_api import LocalModel, ModelSource, hookimpl, sha256_file

        class NasSource(ModelSource):
            name = "nas"

            def fetch(self, ref, progress=None):
                path = Path("/mnt/nas/models") / ref.split(":", 1)[1]
                return LocalModel(path.name, ref, path, path.stat().st_size,
                                  sha256_file(path), self.name)

        @hookimpl
        def register_model_sources(register):
            register(NasSource())

    References of the form "NAME:rest" go to the source called NAME; bare names are looked
    up in every source's `aliases()`; anything else is offered to `handles()` in turn. When
    several sources claim one alias, the lowest `alias_priority` wins, then the source name
    that sorts first. `catalog()` feeds `halo models list`, `remove()` feeds `halo models rm`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    alias_priority: ClassVar[int] = 100
    """Lower wins when two sources claim one alias (the embedded `smoke` model uses 10)."""

    @abstractmethod
    def fetch(self, ref: str, progress: Progress | None = None) -> LocalModel:
        """REQUIRED. Make the model local (download, extract, verify; reuse when present)."""

    def aliases(self) -> dict[str, str]:
        """Short names this source answers for, mapped to full references."""
        return {}

    def handles(self, ref: str) -> bool:
        """Whether this source takes a reference that has no "NAME:" prefix nor alias."""
        return False

    def local(self, ref: str) -> LocalModel | None:
        """The model if it is already on this machine, without fetching anything."""
        return None

    def catalog(self) -> list[CatalogEntry]:
        """Named models this source offers, for `halo models list` (usually its aliases)."""
        return []

    def remove(self, ref: str) -> list[Path]:
        """Delete the local copy of `ref` and return the paths removed.

        The default refuses: a source deletes only what it downloaded itself.
        """
        raise ModelError(f"the {self.name} source does not delete models")

    def read_range(self, ref: str, start: int, end: int) -> tuple[bytes, int]:
        """Bytes [start, end) of the file `ref` names and the file's whole size, without
        downloading it (`halo models synth` reads a GGUF header this way).

        The default refuses: the model has to be fetched first.
        """
        raise ModelError(f"{ref} is not on this machine and the {self.name} source cannot read "
                         f"part of it remotely: fetch it first (halo models pull {ref})")


class Tuner(ABC):
    """One area of system tuning, read and written through a sysroot (default "/").

    A complete plugin::

        from halo_core.plugin_api import Change, Check, Tuner, hookimpl

        class Swappiness(Tuner):
            name = "swappiness"

            def verify(self, root):
                value = (root / "proc/sys/vm/swappiness").read_text().strip()
                ok = value == "10"
                return [Check("swappiness", "PASS" if ok else "WARN", f"vm.swappiness={value}",
                              "" if ok else "halo tune --only swappiness --apply")]

            def plan(self, root):
                value = (root / "proc/sys/vm/swappiness").read_text().strip()
                if value == "10":
                    return []
                return [Change(self.name, "sysctl", "vm.swappiness", "lower swappiness",
                               before=value, after="10")]

        @hookimpl
        def register_tuners(register):
            register(Swappiness())
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @abstractmethod
    def verify(self, root: Path) -> list[Check]:
        """REQUIRED. What is in effect now, as PASS/WARN/FAIL checks with their fixes."""

    @abstractmethod
    def plan(self, root: Path) -> list[Change]:
        """REQUIRED. The changes this tuner would make; empty when nothing needs doing.

        Read the current state through `root` and plan only what differs, so that planning
        again after an apply returns []. Raise TuneError (one line) for a
        value or file that must not be written; nothing is applied then.
        """

    def applies(self, facts: HostFacts) -> Availability:
        """Whether this tuner is made for the host that `facts` (read through the sysroot)
        describe. One that is not is left out of `halo audit`, `verify` and `tune` (listed
        as skipped, with `reason`); `halo tune --only` refuses it unless --force. Default:
        any host."""
        return Availability(True)

    def readings(self, root: Path) -> Mapping | None:
        """The raw values `verify` judges, JSON-able (what a driver reports), for
        `halo audit --json`; None (the default) when the checks say it all."""
        return None

    def guidance(self, root: Path) -> str:
        """Advice for what halo cannot change itself (BIOS settings)."""
        return ""

    def configure(self, settings: Mapping[str, str]) -> "Tuner":
        """A tuner using `settings` (from `halo tune --set NAME.KEY=VALUE`), or TuneError.

        The default accepts none; a tuner with settings returns a configured copy.
        """
        if settings:
            raise TuneError(f"tuner '{self.name}' has no setting '{next(iter(settings))}'")
        return self


class EvalSuite(ABC):
    """One benchmark run against an OpenAI-compatible endpoint.

    A complete plugin::

        import httpx
        from halo_core.plugin_api import Availability, EvalResult, EvalSample, EvalSuite, hookimpl

        class Echo(EvalSuite):
            name = "echo"

            def availability(self):
                return Availability(True)

            def run(self, endpoint, *, limit=None, workdir=None, context=None):
                r = httpx.post(f"{endpoint.base_url}/v1/chat/completions", json={
                    "model": endpoint.model,
                    "messages": [{"role": "user", "content": "Say OK"}]})
                ok = "ok" in r.json()["choices"][0]["message"]["content"].lower()
                sample = EvalSample("echo-1", float(ok), ok)
                return EvalResult(self.name, {"accuracy": float(ok)}, [sample])

        @hookimpl
        def register_eval_suites(register):
            register(Echo())
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @abstractmethod
    def availability(self) -> Availability:
        """REQUIRED. Whether the suite's framework and data are here; if not, how to install."""

    presets: ClassVar[tuple[str, ...]] = ()
    """Presets this suite joins (`halo eval --suite quick`), beside configs/eval-presets.toml."""

    frameworks: ClassVar[tuple[str, ...]] = ()
    """Distributions the suite runs on (e.g. "evalplus"); their versions go in the run's metadata."""

    data: ClassVar[str] = ""
    """Where the default data comes from, and whether that needs the network (`halo eval suites`)."""

    @abstractmethod
    def run(self, endpoint: Endpoint, *, limit: int | None = None, workdir: Path | None = None,
            context: "EvalContext | None" = None) -> EvalResult:
        """REQUIRED. Run the suite (at most `limit` samples) and return scores and samples.

        `workdir` is the suite's folder in the run directory (framework logs go there).
        `context` (an EvalContext, given by `halo eval`) offers `chat(requests)`:
        halo's parallel, retried, resumable client; use it rather than your own HTTP calls so
        --concurrency and --resume work. It returns the replies of the requests that ran:
        score those. A request that could not run is left out; halo records it as a failed
        sample beside the scores, and --resume sends it again. A sample you could not run
        some other way is returned with `error` set.
        """


INTERFACES: dict[str, type] = {
    "backends": Backend,
    "model_sources": ModelSource,
    "tuners": Tuner,
    "eval_suites": EvalSuite,
}
