"""`halo models`: fetch models and find their files."""

from __future__ import annotations

import click

from ..models import fetch_model
from .common import emit_json


@click.group()
def models():
    """Fetch models and find their files."""


@models.command("pull")
@click.argument("refs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def models_pull(refs, as_json):
    """Make each model local (download when needed): an alias, SOURCE:REF or a path."""
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
