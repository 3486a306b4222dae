"""What every report halo writes shares (bench, serve bench, sweep): matplotlib loaded on
first use, a chart written as PNG and inlined as SVG, a run's facts, a table, the page style;
and the text tables results are shared as (`--format md|csv|jsonl`): markdown in llama-bench's
style, csv quoted as llama-bench quotes it, JSON lines."""

from __future__ import annotations

import html
import io
import json
import typing
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Sequence

import attrs

from .errors import HaloError
from .store import to_dict, write_atomic


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


# -- text tables: markdown in llama-bench's style, csv, JSON lines ------------------------------

def markdown_width(header: str, numeric: bool) -> int:
    """llama-bench's width of a column it has no rule for: the header's length, at least 10;
    negative (left-aligned) for text, positive (right-aligned) for numbers."""
    width = max(len(header), 10)
    return width if numeric else -width


def _pad(text: str, width: int) -> str:
    """printf's "%*s": pads to |width| bytes (so "±", two bytes in UTF-8, counts twice)."""
    room = abs(width) - len(text.encode())
    if room <= 0:
        return text
    return text + " " * room if width < 0 else " " * room + text


def markdown_table(columns: Sequence[tuple[str, int]], rows: Iterable[Sequence[str]],
                   cell_widths: Sequence[int] | None = None) -> list[str]:
    """Lines of a table in llama-bench's markdown style: (header, width) per column, width < 0
    left-aligned; the separator ends in ':' for right-aligned columns. `cell_widths` pads the
    rows' cells differently from the headers (llama-bench's "t/s" hack)."""
    widths = list(cell_widths) if cell_widths is not None else [w for _n, w in columns]
    lines = ["|" + "".join(f" {_pad(name, width)} |" for name, width in columns),
             "|" + "".join(f" {'-' * (abs(width) - 1)}{':' if width > 0 else '-'} |" for _name, width in columns)]
    for row in rows:
        lines.append("|" + "".join(f" {_pad(cell, width)} |" for cell, width in zip(row, widths)))
    return lines


def csv_cell(text: str) -> str:
    """llama-bench's csv_printer::escape_csv: every value quoted, quotes doubled."""
    return '"' + text.replace('"', '""') + '"'


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """csv as llama-bench writes it: the header bare, every value quoted."""
    return [",".join(header), *(",".join(csv_cell(v) for v in row) for row in rows)]


def _flat_fields(cls: type, prefix: str = "") -> list[tuple[str, tuple[str, ...]]]:
    """(column, attribute path) of every field of an attrs class, a field holding another
    attrs record (a Stat) spread into one column per field of it."""
    out = []
    for field in attrs.fields(attrs.resolve_types(cls)):
        inner = next((t for t in _record_types(field.type)), None)
        if inner is not None:
            out += [(f"{prefix}{field.name}_{name}", (field.name, *path)) for name, path in _flat_fields(inner)]
        else:
            out.append((f"{prefix}{field.name}", (field.name,)))
    return out


def _record_types(annotation) -> list[type]:
    """The attrs classes an annotation names (`Stat | None` -> [Stat]; a tuple of them is none:
    it is one column)."""
    if typing.get_origin(annotation) in (tuple, list):
        return []
    args = typing.get_args(annotation) or (annotation,)
    return [a for a in args if isinstance(a, type) and attrs.has(a)]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, (list, tuple)) and any(attrs.has(type(v)) for v in value):
        return json.dumps(to_dict(list(value)))  # (records in a list: one JSON array)
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return str(value)


def records_csv(records: Sequence[Any], cls: type) -> str:
    """attrs records of one class as csv: a column per field (a nested record's fields spread
    out as FIELD_SUBFIELD), empty for None."""
    columns = _flat_fields(cls)

    def cell(record, path):
        for name in path:
            record = getattr(record, name) if record is not None else None
        return _text(record)

    rows = ([cell(r, path) for _name, path in columns] for r in records)
    return "\n".join(csv_lines([name for name, _path in columns], rows)) + "\n"


def records_jsonl(records: Sequence[Any]) -> str:
    """attrs records as JSON lines, one record a line."""
    return "".join(json.dumps(to_dict(r)) + "\n" for r in records)


def records_as(fmt: str, records: Sequence[Any], cls: type, markdown) -> str:
    """`records` of type `cls` as `fmt`: md (through `markdown(records)`), csv or jsonl."""
    if fmt == "md":
        return markdown(records)
    if fmt == "csv":
        return records_csv(records, cls)
    return records_jsonl(records)
