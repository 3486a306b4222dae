"""halo bench serve vs llama-benchy on the same llama-server and matrix, side by side in one run.

Starts one llama-server as `halo bench serve MODEL` would (the smoke model unless --model, one
slot per concurrent request) and, round after round, alternating which goes first, measures
the matrix with
  halo bench serve --endpoint URL --depths D --pp P --tg T --concurrency C --reps R
  llama-benchy --depth D --pp P --tg T --concurrency C --runs R --no-cache --exact-tg ...
llama-benchy runs offline: its tokenizer.json is built here from the GGUF's own vocabulary and
merges (gguf + tokenizers; its agreement with the server's /tokenize is printed), and its
book cache is seeded with halo's corpus. Install it apart from halo (it pulls transformers):

    python3 -m venv /tmp/benchy-venv && /tmp/benchy-venv/bin/pip install llama-benchy==0.4.0
    .venv/bin/python benchmarks/servebench_vs_benchy.py [--depths 0,1024] [--concurrency 1,4] [--rounds 2]

Per cell it prints the ratio halo / llama-benchy (goal: within +-5%) of
  pp   halo's pp t/s from the server's timings (what halo reports), and "pp est" halo's own
       records through llama-benchy's method (prompt tokens / (time to first token - latency)),
  tg   generated tokens after the first / time from the first to the last (both tools),
  TTFT time to the first content token, ms (llama-benchy's e2e_ttft),
and the noise floor: each tool against itself between rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

BOOK_URL = "http://halo.invalid/servebench-corpus.txt"  # never fetched: the cache is seeded


def tokenizer_from_gguf(gguf_path: Path, out: Path) -> Path:
    """A Hugging Face tokenizer.json from a GGUF's own BPE vocabulary (gpt2-style models)."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    fields = GGUFReader(str(gguf_path)).fields
    value = lambda key: fields[key].contents()  # noqa: E731
    if value("tokenizer.ggml.model") != "gpt2":
        sys.exit(f"{gguf_path.name}: only BPE (gpt2-style) vocabularies are converted here")
    tokens, types = value("tokenizer.ggml.tokens"), value("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in value("tokenizer.ggml.merges")]
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                                     fuse_unk=False))
    # llama.cpp's smollm/gpt2 pre-tokenizers: digits one by one, then the GPT-2 regex
    steps = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    if value("tokenizer.ggml.pre") in ("smollm", "qwen2", "llama3", "llama-bpe"):
        steps.insert(0, pre_tokenizers.Digits(individual_digits=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t, kind in zip(tokens, types) if kind == 3])
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    return out / "tokenizer.json"


def run_halo(args, url: str, home: Path) -> dict:
    """{(depth, c): {pp, pp_est, tg, ttft}} from one halo bench serve run."""
    argv = [sys.executable, "-m", "halo_core", "bench", "serve", "--endpoint", url, "--depths", args.depths,
            "--pp", str(args.pp), "--tg", str(args.tg), "--concurrency", args.concurrency,
            "--reps", str(args.reps), "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, HALO_HOME=str(home)))
    if done.returncode != 0:
        sys.exit(f"halo failed: {done.stderr.strip().splitlines()[-1:]}")
    out = json.loads(done.stdout)
    from halo_core.servebench.run import load_serve_run

    run = load_serve_run(Path(out["path"]))
    latency = json.loads((run.path / "run.json").read_text())["latency_ms"] / 1000
    cells = {}
    for c in run.cells:
        ok = [r for r in run.requests if r.cell == c.cell and r.ok]
        est = [r.prompt_tokens / (r.first_token_s - latency) for r in ok]
        cells[(c.depth, c.concurrency)] = {"pp": c.pp_ts.mean, "pp_est": statistics.mean(est),
                                           "tg": c.tg_ts.mean, "ttft": c.ttft_ms.mean}
    return cells


def run_benchy(args, url: str, model_id: str, tokenizer: Path, home: Path, out: Path) -> dict:
    argv = [args.benchy, "--base-url", f"{url}/v1", "--model", "smoke", "--served-model-name", model_id,
            "--tokenizer", str(tokenizer), "--book-url", BOOK_URL, "--pp", str(args.pp), "--tg", str(args.tg),
            "--depth", *args.depths.split(","), "--concurrency", *args.concurrency.split(","),
            "--runs", str(args.reps), "--no-cache", "--exact-tg", "--no-warmup", "--skip-coherence",
            "--latency-mode", "api", "--format", "json", "--save-result", str(out)]
    env = dict(os.environ, HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"llama-benchy failed: {(done.stdout + done.stderr).strip().splitlines()[-3:]}")
    cells = {}
    for b in json.loads(out.read_text())["benchmarks"]:
        cells[(b["context_size"], b["concurrency"])] = {
            "pp": b["pp_req_throughput"]["mean"], "tg": b["tg_req_throughput"]["mean"],
            "ttft": b["e2e_ttft"]["mean"]}
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchy", default="/tmp/benchy-venv/bin/llama-benchy")
    parser.add_argument("--model", default="smoke")
    parser.add_argument("--depths", default="0,1024")
    parser.add_argument("--pp", type=int, default=256)
    parser.add_argument("--tg", type=int, default=64)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not Path(args.benchy).is_file():
        sys.exit(f"{args.benchy} is missing: python3 -m venv /tmp/benchy-venv && "
                 "/tmp/benchy-venv/bin/pip install llama-benchy==0.4.0")

    import halo_core
    from halo_core.llama.server import ServerSpec, start_server
    from halo_core.llama.process import free_port
    from halo_core.servebench.run import ServeBenchSpec, corpus_text, matrix_server

    model = halo_core.fetch_model(args.model).path
    tmp = Path(tempfile.mkdtemp(prefix="halo-vs-benchy-"))
    tokenizer = tokenizer_from_gguf(model, tmp / "tokenizer")
    cache = tmp / "home" / ".cache" / "llama-benchy" / f"{hashlib.md5(BOOK_URL.encode()).hexdigest()}.txt"
    cache.parent.mkdir(parents=True)
    cache.write_text(corpus_text(400_000))

    depths, levels = [int(d) for d in args.depths.split(",")], [int(c) for c in args.concurrency.split(",")]
    spec = ServeBenchSpec(depths=depths, pp=args.pp, tg=args.tg, concurrency=levels)
    parallel, ctx = matrix_server(spec)  # as `halo bench serve MODEL` would start it
    server = start_server(ServerSpec(model=str(model), port=free_port(), parallel=parallel, ctx=ctx))
    url = server.info.url
    try:
        from tokenizers import Tokenizer

        text = corpus_text(20_000, seed=1)
        served = httpx.post(f"{url}/tokenize", json={"content": text}, timeout=60).json()["tokens"]
        local = Tokenizer.from_file(str(tokenizer)).encode(text, add_special_tokens=False).ids
        print(f"tokenizer.json from the GGUF vs the server's /tokenize on {len(text)} chars: "
              f"{len(local)} vs {len(served)} tokens, identical: {local == served}")
        model_id = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
        rounds = []
        for rnd in range(args.rounds):
            order = ("halo", "benchy") if rnd % 2 == 0 else ("benchy", "halo")
            got = {}
            for side in order:
                print(f"round {rnd + 1}: {side} ...", file=sys.stderr)
                got[side] = (run_halo(args, url, tmp / "halo-home") if side == "halo" else
                             run_benchy(args, url, model_id, tokenizer, tmp / "home", tmp / f"benchy-{rnd}.json"))
            rounds.append(got)
    finally:
        server.stop()

    print(f"\nSmolLM2-135M Q4_1 ({args.model}), llama-server -np {max(levels)}, pp {args.pp}, tg {args.tg}, "
          f"{args.reps} reps, {args.rounds} rounds; ratio = halo / llama-benchy (median over rounds)")
    header = f"{'depth':>6} {'c':>3} {'metric':>7} " + "".join(f"{'r' + str(i + 1) + ' halo':>11} {'benchy':>9} "
                                                           for i in range(args.rounds)) + f"{'ratio':>7}"
    print(header)
    for key in sorted(rounds[0]["halo"]):
        for metric, ours, theirs in (("pp", "pp", "pp"), ("pp est", "pp_est", "pp"), ("tg", "tg", "tg"),
                                     ("TTFT", "ttft", "ttft")):
            values = [(r["halo"][key][ours], r["benchy"][key][theirs]) for r in rounds if key in r["benchy"]]
            ratio = statistics.median(h / b for h, b in values)
            print(f"{key[0]:>6} {key[1]:>3} {metric:>7} " + "".join(f"{h:>11.1f} {b:>9.1f} " for h, b in values)
                  + f"{ratio:>7.3f}")
    if args.rounds > 1:
        for side, metrics in (("halo", ("pp", "tg", "ttft")), ("benchy", ("pp", "tg", "ttft"))):
            floor = [abs(b[side][k][m] / a[side][k][m] - 1) for a, b in zip(rounds, rounds[1:])
                     for k in a[side] for m in metrics if k in b[side]]
            print(f"noise floor, {side} vs itself between rounds: median |ratio - 1| = "
                  f"{100 * statistics.median(floor):.1f}%, max {100 * max(floor):.1f}%")


if __name__ == "__main__":
    main()
