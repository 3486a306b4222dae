"""`halo models`: the catalog, downloads, local files and whether a model fits."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from ..llama.flags import KV_TYPES
from ..llama.fit import fit_model
from ..models.resolve import fetch_model, list_models, remove_model
from ..records import FitReport
from ..store import human_size
from .common import emit_json, err_console, print_table, sigterm_as_interrupt


@click.group()
def models():
    """List the catalog, fetch models, find and remove their files, check that they fit."""


def _size(n: int | None) -> str:
    return "-" if n is None else human_size(n)


@models.command("list")
@click.option("--category", default=None, help="Only this category (smoke, dense, moe, coding, ...).")
@click.option("--downloaded", is_flag=True, help="Only models already on this machine.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def models_list(category, downloaded, as_json):
    """List every source's catalog, with what is downloaded."""
    rows = list_models(category=category, downloaded=downloaded)
    if as_json:
        emit_json(rows)
        return
    table = Table("name", "source", "category", "size", "downloaded", "description")
    for row in rows:
        name = row.name + (f" (→ {row.shadowed_by})" if row.shadowed_by else "")
        size = f"{row.size_gb:g} GB" if row.size_gb is not None else "-"
        table.add_row(name, row.source, ",".join(row.categories), size,
                      _size(row.size) if row.downloaded else "", row.description)
    print_table(table)


@models.command("pull")
@click.argument("refs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def models_pull(refs, as_json):
    """Make each model local (download when needed): a catalog name, SOURCE:REF or a path."""
    got = [fetch_model(ref) for ref in refs]
    if as_json:
        emit_json(got)
        return
    for model in got:
        click.echo(f"{model.name}\t{model.size / 1e6:.1f} MB\t{model.path}")


@models.command("path")
@click.argument("ref")
def models_path(ref):
    """Print the local file of a model, fetching it first if needed."""
    click.echo(fetch_model(ref).path)


@models.command("rm")
@click.argument("refs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def models_rm(refs, as_json):
    """Delete the downloaded files of each model (never a file halo did not download)."""
    removed = [path for ref in refs for path in remove_model(ref)]
    if as_json:
        emit_json(removed)
        return
    for path in removed:
        click.echo(f"removed {path}")


def _fit_text(r: FitReport) -> str:
    kv_heads = sorted(set(r.n_head_kv))
    kv_text = str(kv_heads[0]) if len(kv_heads) == 1 else "/".join(map(str, kv_heads)) + " per layer"
    kv = r.type_k if r.type_k == r.type_v else f"{r.type_k}/{r.type_v}"
    layers = f"{r.kv_layers} of {r.n_layer} layers keep KV"
    if r.swa_layers:
        layers += f" ({r.swa_layers} sliding-window, {r.n_swa} tokens)"
    if r.recurrent_layers:
        layers += f", {r.recurrent_layers} recurrent"
    where = ", ".join(f"{g.card}{' ' + g.name if g.name else ''}: VRAM {_size(g.vram_total or 0)}"
                      + (f" + GTT {_size(g.gtt_total)}" if g.gtt_total is not None else "")
                      for g in r.gpus) or "RAM: no GPU memory info"
    lines = [
        f"model     {r.model} ({r.arch}) {r.path}",
        f"layout    {r.n_layer} layers, {r.n_head} heads, {kv_text} KV heads, "
        f"head dim {r.head_dim_k}/{r.head_dim_v} (K/V); {layers}",
        f"weights   {_size(r.weights_bytes)}",
        f"KV cache  {_size(r.kv_bytes)}  (ctx {r.ctx}, {kv}, parallel {r.parallel})",
    ]
    if r.recurrent_bytes:
        lines.append(f"recurrent {_size(r.recurrent_bytes)}")
    if r.cluster_bytes is None:
        lines.append(f"total     {_size(r.total_bytes)} of {_size(r.memory)} GPU-addressable ({where})")
    else:
        parts = [f"{w.endpoint} {_size(w.total_memory)}" for w in r.workers]
        if r.cluster_bytes > sum(w.total_memory for w in r.workers):
            parts.insert(0, f"this machine {_size(r.memory)}")
        lines.append(f"total     {_size(r.total_bytes)} of {_size(r.cluster_bytes)} in the cluster: "
                     + " + ".join(parts))
    lines.append(("fits      yes, " + _size(r.headroom_bytes) + " to spare") if r.fits
                 else f"fits      NO, {_size(-r.headroom_bytes)} short")
    if r.boxes > 1:
        lines.append(f"boxes     {r.boxes} like this one ({_size(r.memory)} each), joined with "
                     "`halo rpc serve` on the others and --rpc")
    lines += [f"note      {n}" for n in r.notes]
    return "\n".join(lines)


@models.command("fit")
@click.argument("ref")
@click.option("--ctx", type=click.IntRange(min=1), default=None,
              help="KV cache cells, llama.cpp's -c (default: the model's trained context).")
@click.option("--kv-type", default="f16", show_default=True,
              help=f"KV cache type, or K:V types ({', '.join(KV_TYPES)}).")
@click.option("--parallel", type=click.IntRange(min=1), default=1, show_default=True,
              help="Slots sharing the context (llama-server -np).")
@click.option("--sysroot", type=click.Path(file_okay=False, exists=True), default="/",
              show_default=True, help="Read /sys and /proc under this folder.")
@click.option("--rpc", default=None, metavar="HOST:PORT,...",
              help="Answer for a cluster: this machine plus these llama.cpp RPC workers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def models_fit(ref, ctx, kv_type, parallel, sysroot, rpc, as_json):
    """Whether a downloaded model's weights + KV cache fit GPU-addressable memory (of this
    machine, or of a cluster with --rpc), and how many such machines it needs.

    Exit code 0 when it fits, 3 when it does not."""
    endpoints = ()
    if rpc:  # (the RPC module, and httpx with it, only when asked for)
        from ..llama.rpc import parse_endpoints

        endpoints = parse_endpoints(rpc)
    report = fit_model(ref, ctx=ctx, kv_type=kv_type, parallel=parallel, root=Path(sysroot), rpc=endpoints)
    if as_json:
        emit_json(report)
    else:
        click.echo(_fit_text(report))
    if not report.fits:
        raise SystemExit(3)


SHAPE_HELP = "llama: 8b, tiny; qwen3moe: 30b-a3b, tiny"  # synth.shape_names(), kept in step by a test


@models.command("synth")
@click.argument("ref", required=False)
@click.option("--arch", default=None, help="Architecture of a built-in shape (llama, qwen3moe).")
@click.option("--shape", default=None, help=f"Built-in shape ({SHAPE_HELP}); 8b is "
              "Llama-3.1-8B's, 30b-a3b Qwen3-30B-A3B's.")
@click.option("--quant", default=None,
              help="llama.cpp file type whose per-tensor types a built-in shape gets "
                   "(default Q4_K_M; also Q4_K_S, Q5_K_M, Q5_K_S, Q6_K, Q8_0, Q4_0, F16, ...).")
@click.option("--vocab-from", default=None,
              help="Copy the tokenizer of this model (a built-in shape gets a generated "
                   "byte-level vocabulary otherwise).")
@click.option("--name", default=None, help="File name under $HALO_HOME/models/synth/ "
              "(default: from the model or shape).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Random seed of the weights.")
@click.option("--force", is_flag=True, help="Write it again even when it is there.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def models_synth(ref, arch, shape, quant, vocab_from, name, seed, force, as_json):
    """Write a model with REF's tensor shapes and types (or a built-in shape's) and random
    weights, for benchmarks without the download.

    REF is a catalog name, hf:…, or a path: its GGUF header is read (for a model that is not
    downloaded, a few MB through HTTP Range requests). Or give --arch and --shape instead.
    The result is synth:NAME. Its speed is the real model's; its replies are noise, so
    `halo eval` refuses it and speculative-decoding acceptance on it means nothing."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from ..models.synth import DEFAULT_QUANT, shape_names, synth_model

    if ref is not None and (arch or shape or quant or vocab_from):
        raise click.UsageError("give REF, or --arch and --shape (with --quant, --vocab-from), "
                               "not both")
    if ref is None and not (arch and shape):
        raise click.UsageError("give a model REF, or --arch and --shape "
                               f"(built-in shapes: {shape_names()})")
    with sigterm_as_interrupt(), Progress(
            "{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task(f"writing {name or ref or f'{arch} {shape}'}", total=None)
        result = synth_model(ref, arch=arch, shape=shape, quant=quant or DEFAULT_QUANT,
                             vocab_from=vocab_from, name=name, seed=seed, force=force,
                             progress=lambda done, total: bar.update(task, completed=done,
                                                                     total=total))
    if as_json:
        emit_json(result)
        return
    types = ", ".join(f"{n} {t}" for t, n in result.types.items())
    click.echo(f"{result.ref}\t{human_size(result.size)}\t{result.path}")
    click.echo(f"  shape: {result.origin}; {result.arch}, {result.tensors} tensors ({types}); "
               f"written in {result.seconds:.1f} s")
    for note in result.notes:
        click.echo(f"  note: {note}")
    click.echo("  random weights: bench it (halo bench run -m " + result.ref + "); replies are "
               "noise, eval is refused, draft acceptance means nothing")
