"""llama-bench's own output formats (`-o md`, `-o csv`, `-o jsonl`), rebuilt from its JSONL records.

This mirrors tools/llama-bench/llama-bench.cpp of llama.cpp build b11434: `markdown_printer`
(which columns, their widths and alignment, the size/params/test/"t/s" cells and the build
footer), `csv_printer` (llama-bench's field names as the header, every value quoted) and
`test::get_field_type` / `test::get_values` (how each field becomes text). The records are
the lines llama-bench printed with `-o jsonl`; a table of the records of one llama-bench
process is, line for line, the table that process would have printed with `-o md`.

llama-bench picks its optional markdown columns from its command line (a parameter given more
than one value, or one that is not its default). The records do not hold the command line, so
a column is shown here when its value differs from llama-bench's default in any record or
differs between records: the same choice, except for a parameter given explicitly at its
default value. The default thread count is the machine's (llama-bench counts its cores), so
the caller says whether threads were given (`threads_given`); llama-bench always shows them on
a CPU backend.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any, Sequence

from ..reporting import csv_lines, markdown_table, markdown_width

# test::get_field_type
_INT = {"build_number", "n_batch", "n_ubatch", "n_threads", "poll", "model_size", "model_n_params",
        "n_gpu_layers", "main_gpu", "n_prompt", "n_gen", "n_depth", "avg_ns", "stddev_ns",
        "no_op_offload", "n_cpu_moe", "fit_target", "fit_min_ctx", "flash_attn"}
_BOOL = {"f16_kv", "no_kv_offload", "cpu_strict", "embeddings", "no_host", "repack"}
_FLOAT = {"avg_ts", "stddev_ts"}

# markdown_printer::print_header: the optional columns in the order it adds them, each with
# cmd_params_defaults as the JSONL record writes it (n_threads: the machine's core count)
OPTIONAL_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("n_cpu_moe", 0), ("n_threads", None), ("cpu_mask", "0x0"), ("cpu_strict", False),
    ("poll", 50), ("n_batch", 2048), ("n_ubatch", 512), ("type_k", "f16"), ("type_v", "f16"),
    ("main_gpu", 0), ("split_mode", "layer"), ("no_kv_offload", False), ("flash_attn", -1),
    ("devices", "auto"), ("tensor_split", "0.00"), ("tensor_buft_overrides", "none"),
    ("load_mode", "auto"), ("lazy_mode", "auto"), ("embeddings", False), ("no_op_offload", 0),
    ("no_host", False), ("repack", True), ("fit_target", 0), ("fit_min_ctx", 0),
)

# markdown_printer::get_field_width: negative = left-aligned
_WIDTHS = {"model": -30, "t/s": 20, "size": 10, "params": 10, "n_gpu_layers": 3, "n_threads": 7,
           "n_batch": 7, "n_ubatch": 8, "type_k": 6, "type_v": 6, "split_mode": 6, "load_mode": 10,
           "flash_attn": 3, "devices": -12, "test": 15, "no_op_offload": 4, "no_host": 4, "repack": 3}

# markdown_printer::get_field_display_name
_DISPLAY = {"n_gpu_layers": "ngl", "split_mode": "sm", "n_threads": "threads", "no_kv_offload": "nkvo",
            "flash_attn": "fa", "load_mode": "lm", "embeddings": "embd", "no_op_offload": "nopo",
            "no_host": "noh", "repack": "rpk", "devices": "dev", "tensor_split": "ts",
            "tensor_buft_overrides": "ot", "fit_target": "fitt", "fit_min_ctx": "fitc"}

SAMPLE_FIELDS = ("samples_ns", "samples_ts")  # the lists JSONL adds after the fields


def parse_record(line: str) -> dict:
    """One line of `llama-bench -o jsonl` as a dict that keeps each number's text (floats as
    Decimal), so the fields print again exactly as llama-bench printed them."""
    record = json.loads(line, parse_float=Decimal)
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object: {line[:80]!r}")
    return record


def field_text(value: Any) -> str:
    """A record's value as test::get_values has it (std::to_string; bools as 1/0)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:f}"
    if value is None:
        return ""
    return str(value)


def field_width(field: str, numeric: bool | None = None) -> int:
    """markdown_printer::get_field_width; a field llama-bench does not know is left-aligned
    unless `numeric` (halo's own columns)."""
    if field in _WIDTHS:
        return _WIDTHS[field]
    if numeric is None:
        numeric = field in _INT or field in _BOOL or field in _FLOAT
    return markdown_width(field, numeric)


def is_cpu_backend(backends: str) -> bool:
    return any(name in backends for name in ("CPU", "BLAS", "ZenDNN"))


def _c_avg(values: list[float]) -> float:
    total = 0.0
    for v in values:  # std::accumulate, in order (Python's sum() compensates: not the same double)
        total += v
    return total / len(values) if values else 0.0


def speed_cell(record: dict) -> str:
    """The "t/s" cell: "avg ± stddev" of the per-repetition speeds, computed from samples_ns
    as llama-bench does (test::get_ts, ::avg, ::stdev), else from its avg_ts/stddev_ts."""
    samples = record.get("samples_ns")
    if not samples:
        return f"{float(record.get('avg_ts') or 0):.2f} ± {float(record.get('stddev_ts') or 0):.2f}"
    tokens = int(record.get("n_prompt") or 0) + int(record.get("n_gen") or 0)
    ts = [1e9 * tokens / float(int(t)) for t in samples]
    mean = _c_avg(ts)
    if len(ts) <= 1:
        stdev = "0.00"
    else:
        n = float(len(ts))
        sq_sum = 0.0
        for v in ts:  # std::inner_product, in order
            sq_sum += v * v
        inner = sq_sum / (n - 1) - mean * mean * n / (n - 1)
        # sqrt of a negative (equal samples, rounding) is -nan in C, which printf writes so
        stdev = f"{math.sqrt(inner):.2f}" if inner >= 0 else "-nan"
    return f"{mean:.2f} ± {stdev}"


def test_cell(record: dict) -> str:
    n_prompt, n_gen = int(record.get("n_prompt") or 0), int(record.get("n_gen") or 0)
    depth = int(record.get("n_depth") or 0)
    if n_prompt > 0 and n_gen == 0:
        name = f"pp{n_prompt}"
    elif n_gen > 0 and n_prompt == 0:
        name = f"tg{n_gen}"
    else:
        name = f"pp{n_prompt}+tg{n_gen}"
    return f"{name} @ d{depth}" if depth > 0 else name


def size_cell(size: int) -> str:
    if size < 1024 * 1024 * 1024:
        return f"{size / 1024.0 / 1024.0:.2f} MiB"
    return f"{size / 1024.0 / 1024.0 / 1024.0:.2f} GiB"


def params_cell(n_params: int) -> str:
    if n_params < 1000 * 1000 * 1000:
        return f"{n_params / 1e6:.2f} M"
    return f"{n_params / 1e9:.2f} B"


def markdown_fields(records: Sequence[dict], *, threads_given: bool = False) -> list[str]:
    """The fields markdown_printer::print_header would choose for these records."""
    backends = {str(r.get("backends", "")) for r in records}
    fields = ["model", "size", "params", "backend"]
    if not all(is_cpu_backend(b) for b in backends):
        fields.append("n_gpu_layers")
    for field, default in OPTIONAL_COLUMNS:
        values = [r[field] for r in records if field in r]
        if not values:
            continue  # a build without this parameter
        varies = len({json.dumps(v, default=str) for v in values}) > 1
        if field == "n_threads":
            show = varies or threads_given or any(is_cpu_backend(b) for b in backends)
        else:
            show = varies or any(v != default for v in values)
        if show:
            fields.append(field)
    return fields + ["test", "t/s"]


def markdown(records: Sequence[dict], *, threads_given: bool = False,
             extra: Sequence[tuple[str, Sequence[str], bool]] = ()) -> str:
    """`llama-bench -o md` of these records: the table, a blank line, "build: COMMIT (NUMBER)".

    `extra` are columns appended after "t/s": (header, one cell per record, numeric), aligned
    as llama-bench aligns its own (numbers right, text left)."""
    fields = markdown_fields(records, threads_given=threads_given)
    columns = [(_DISPLAY.get(f, f), field_width(f)) for f in fields]
    columns += [(name, markdown_width(name, numeric)) for name, _cells, numeric in extra]
    # print_test's HACK: the "t/s" cells get one byte more, for the two bytes of "±"
    cell_widths = [w + 1 if f == "t/s" else w for f, (_n, w) in zip(fields, columns)]
    cell_widths += [w for _n, w in columns[len(fields):]]
    rows = []
    for i, record in enumerate(records):
        row = []
        for field in fields:
            if field == "model":
                row.append(str(record.get("model_type", "")))
            elif field == "size":
                row.append(size_cell(int(record.get("model_size") or 0)))
            elif field == "params":
                row.append(params_cell(int(record.get("model_n_params") or 0)))
            elif field == "backend":
                row.append(str(record.get("backends", "")))
            elif field == "test":
                row.append(test_cell(record))
            elif field == "t/s":
                row.append(speed_cell(record))
            else:
                row.append(field_text(record.get(field)))
        rows.append(row + [cells[i] for _name, cells, _numeric in extra])
    builds = []
    for record in records:
        build = f"{record.get('build_commit', '')} ({int(record.get('build_number') or 0)})"
        if build not in builds:
            builds.append(build)
    return "\n".join(markdown_table(columns, rows, cell_widths)) + f"\n\nbuild: {', '.join(builds)}\n"


def csv(records: Sequence[dict]) -> str:
    """`llama-bench -o csv` of these records: its field names (the records' keys, in order,
    without the sample lists), then one quoted row per record."""
    header: list[str] = []
    for record in records:
        header += [k for k in record if k not in SAMPLE_FIELDS and k not in header]
    return "\n".join(csv_lines(header, ([field_text(r.get(k)) for k in header] for r in records))) + "\n"
