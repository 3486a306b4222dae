"""What every HTML report halo writes shares (bench, serve bench, sweep): matplotlib loaded on
first use, a chart written as PNG and inlined as SVG, a run's facts, a table, the page style."""

from __future__ import annotations

import html
import io
from pathlib import Path

from .errors import HaloError
from .store import write_atomic


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise HaloError("halo's reports need matplotlib: pip install 'halo-llm[report]'") from None
    return plt


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def facts_html(name: str, facts: list[tuple[str, object]]) -> str:
    """A run's heading and its (name, value) facts as a list, the empty ones left out."""
    items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in facts if v)
    return f"<h3>{html.escape(name)}</h3><ul>{items}</ul>"


def html_table(table_id: str, head: list[str], rows: list[list[str | None]]) -> str:
    """An HTML table; a column with no value (None) in any row is left out."""
    keep = [i for i in range(len(head)) if any(row[i] is not None for row in rows)]
    th = "".join(f"<th>{html.escape(head[i])}</th>" for i in keep)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(row[i] or '')}</td>" for i in keep) + "</tr>"
                   for row in rows)
    return f"<table id='{table_id}'><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def figure(out_dir: Path, chart_id: str, title: str, fig) -> str:
    """Write `fig` as out_dir/<chart_id>.png, close it, and return it as an inline-SVG <figure>."""
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    write_atomic(out_dir / f"{chart_id}.png", png.getvalue())
    html_ = (f"<figure class='chart' id='{chart_id}'><figcaption>{html.escape(title)}</figcaption>"
             f"{_svg(fig)}</figure>")
    pyplot().close(fig)
    return html_


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
figure{margin:1.5em 0;border:1px solid #ddd;padding:.5em}figcaption{font-weight:600}
figure svg{max-width:100%;height:auto}table{border-collapse:collapse;font-size:.85em}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}th{background:#f3f3f3}"""
