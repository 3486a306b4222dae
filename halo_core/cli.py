"""The `halo` command line: a thin layer over the library calls."""

from __future__ import annotations

import json
import os
import sys

import attrs
import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .bench import run_bench
from .errors import HaloError
from .models import fetch_model
from .plugins import get_host
from .records import BenchResult, BenchSpec
from .store import to_json

err_console = Console(stderr=True)


class HaloGroup(click.Group):
    """Turns HaloError from any subcommand into one clean line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except HaloError as exc:
            raise click.ClickException(str(exc)) from None


def _emit_json(value) -> None:
    click.echo(to_json(value), nl=False)


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    """--backend a,b --backend c -> (a, b, c)."""
    return tuple(v.strip() for item in values for v in item.split(",") if v.strip())


@click.group(cls=HaloGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="halo")
def cli():
    """halo: tune, benchmark, serve and evaluate local LLMs on llama.cpp."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def plugins(as_json):
    """List plugins: name, version, source, what each registers, load errors."""
    infos = get_host().info()
    if as_json:
        _emit_json(infos)
        return
    table = Table("plugin", "version", "source", "registers", "error")
    for info in infos:
        registers = "; ".join(f"{k}: {', '.join(v)}" for k, v in info.registers.items())
        table.add_row(info.name, info.version or "-", info.source, registers or "-",
                      info.error or "")
    Console().print(table)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def backends(as_json):
    """List backends and whether each can run here (and why not)."""
    rows = []
    for name, backend in sorted(get_host().backends().items()):
        availability = backend.availability()
        rows.append({"name": name, "description": backend.description,
                     "available": availability.available, "reason": availability.reason,
                     "hint": availability.hint})
    if as_json:
        _emit_json(rows)
        return
    table = Table("backend", "available", "description / why not")
    for row in rows:
        table.add_row(row["name"], "yes" if row["available"] else "no",
                      row["description"] if row["available"] else row["reason"])
    Console().print(table)


@cli.group()
def models():
    """Fetch models and find their files."""


@models.command("pull")
@click.argument("refs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def models_pull(refs, as_json):
    """Make each model local (download when needed): an alias, SOURCE:REF or a path."""
    got = [fetch_model(ref) for ref in refs]
    if as_json:
        _emit_json(got)
        return
    for model in got:
        click.echo(f"{model.name}\t{model.size / 1e6:.1f} MB\t{model.path}")


@models.command("path")
@click.argument("ref")
def models_path(ref):
    """Print the local file of a model, fetching it first if needed."""
    click.echo(fetch_model(ref).path)


@cli.group()
def bench():
    """Benchmark llama.cpp (llama-bench) across models and backends."""


def _results_table(results: list[BenchResult]) -> Table:
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
    spec = BenchSpec(models=_split(models_), backends=_split(backends_), pp=pp, tg=tg,
                     reps=reps, tag=tag, threads=threads)
    with err_console.status("starting", spinner="dots") as spinner:
        run = run_bench(
            spec,
            on_status=lambda msg: spinner.update(msg),
            on_result=lambda r: err_console.print(
                f"  {r.model} · {r.backend} · {r.test}: {r.avg_ts:.2f} ± {r.stddev_ts:.2f} t/s"),
        )
    if as_json:
        _emit_json({"path": run.path, "status": run.status, "spec": run.spec,
                    "results": run.results})
        return
    Console().print(_results_table(run.results))
    click.echo(f"saved: {run.path}")


def main(argv: list[str] | None = None) -> None:
    get_host().add_commands(cli)
    cli.main(args=argv, prog_name="halo")


if __name__ == "__main__":  # pragma: no cover
    main()
