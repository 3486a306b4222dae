"""`halo bench`: benchmark llama.cpp (llama-bench) across models and backends."""

from __future__ import annotations

import os

import click
from rich.console import Console
from rich.table import Table

from ..bench import run_bench
from ..records import BenchResult, BenchSpec
from .common import emit_json, err_console, split_list


@click.group()
def bench():
    """Benchmark llama.cpp (llama-bench) across models and backends."""


def results_table(results: list[BenchResult]) -> Table:
    table = Table("model", "backend", "kv", "test", "t/s", title="llama-bench")
    for r in results:
        table.add_row(r.model, r.backend, r.kv, r.test, f"{r.avg_ts:.2f} ± {r.stddev_ts:.2f}")
    return table


@bench.command("run")
@click.option("-m", "--model", "models_", multiple=True, default=("smoke",), show_default=True,
              help="Model: alias, SOURCE:REF or GGUF path (repeat or comma-separate).")
@click.option("--backend", "backends_", multiple=True, default=("native",), show_default=True,
              help="Backend name (repeat or comma-separate).")
@click.option("--pp", type=click.IntRange(min=0), default=512, show_default=True,
              help="Prompt tokens for the pp test (0 skips it).")
@click.option("--tg", type=click.IntRange(min=0), default=128, show_default=True,
              help="Generated tokens for the tg test (0 skips it).")
@click.option("--reps", type=click.IntRange(min=1), default=5, show_default=True,
              help="Repetitions of each test.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (-t).")
@click.option("--tag", default="run", show_default=True, help="Name prefix of the run directory.")
@click.option("--llama-cpp-dir", type=click.Path(file_okay=False), default=None,
              help="Folder with llama.cpp binaries (same as $HALO_LLAMA_CPP_DIR).")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def bench_run(models_, backends_, pp, tg, reps, threads, tag, llama_cpp_dir, as_json):
    """Run llama-bench and save the run under $HALO_HOME/runs/bench/."""
    if pp == 0 and tg == 0:
        raise click.UsageError("--pp and --tg cannot both be 0")
    if llama_cpp_dir:
        os.environ["HALO_LLAMA_CPP_DIR"] = os.path.abspath(llama_cpp_dir)
    spec = BenchSpec(models=split_list(models_), backends=split_list(backends_), pp=pp, tg=tg,
                     reps=reps, tag=tag, threads=threads)
    with err_console.status("starting", spinner="dots") as spinner:
        run = run_bench(
            spec,
            on_status=lambda msg: spinner.update(msg),
            on_result=lambda r: err_console.print(
                f"  {r.model} · {r.backend} · {r.test}: {r.avg_ts:.2f} ± {r.stddev_ts:.2f} t/s"),
        )
    if as_json:
        emit_json({"path": run.path, "status": run.status, "spec": run.spec,
                   "results": run.results})
        return
    Console().print(results_table(run.results))
    click.echo(f"saved: {run.path}")
