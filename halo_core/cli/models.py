"""`halo models`: the catalog, downloads, local files and whether a model fits."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..fit import KV_TYPES, fit_model
from ..models import fetch_model, list_models, remove_model
from ..records import FitReport
from ..rpc import parse_endpoints
from ..store import human_size
from .common import emit_json


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
    Console(width=max(Console().width, 160)).print(table)


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
    mem = r.memory
    where = (f"{mem.card}: VRAM {_size(mem.vram)} + GTT {_size(mem.gtt)}" if mem.source == "amdgpu"
             else "RAM: no amdgpu memory info")
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
        lines.append(f"total     {_size(r.total_bytes)} of {_size(mem.total)} GPU-addressable ({where})")
    else:
        parts = [f"{w.endpoint} {_size(w.total_memory)}" for w in r.workers]
        if r.cluster_bytes > sum(w.total_memory for w in r.workers):
            parts.insert(0, f"this machine {_size(mem.total)}")
        lines.append(f"total     {_size(r.total_bytes)} of {_size(r.cluster_bytes)} in the cluster: "
                     + " + ".join(parts))
    lines.append(("fits      yes, " + _size(r.headroom_bytes) + " to spare") if r.fits
                 else f"fits      NO, {_size(-r.headroom_bytes)} short")
    if r.boxes > 1:
        lines.append(f"boxes     {r.boxes} like this one ({_size(mem.total)} each), joined with "
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
    report = fit_model(ref, ctx=ctx, kv_type=kv_type, parallel=parallel, root=Path(sysroot),
                       rpc=parse_endpoints(rpc or ()))
    if as_json:
        emit_json(report)
    else:
        click.echo(_fit_text(report))
    if not report.fits:
        raise SystemExit(3)
