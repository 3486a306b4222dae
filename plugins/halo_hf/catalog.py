"""The model catalog format (plugins/halo_hf/models.conf) and the checks that keep names inside
$HALO_HOME/models.

    NAME|HF_REPO|FILE|SIZE_GB|CATEGORY|DESCRIPTION

CATEGORY may be a comma-separated list. A malformed line is reported with its line number and
skipped; the good lines are kept. A later line with the same NAME replaces the earlier one.
"""

from __future__ import annotations

import re

from halo_core.plugin_api import CatalogEntry

FIELDS = "NAME|HF_REPO|FILE|SIZE_GB|CATEGORY|DESCRIPTION"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_CATEGORY = re.compile(r"[a-z0-9][a-z0-9_-]*")


def unsafe_path(text: str) -> str | None:
    """Why `text` (a repo id or a file path in a repo) could leave the models folder, or None."""
    if "\\" in text:
        return "a backslash"
    if any(ord(c) < 32 or c == "\x7f" for c in text):
        return "a control character"
    if text.startswith("/"):
        return "an absolute path"
    parts = text.split("/")
    if ".." in parts:
        return "a '..' component"
    if "." in parts:
        return "a '.' component"
    if "" in parts:
        return "an empty path component"
    return None


def repo_problem(repo: str) -> str | None:
    """What is wrong with a Hugging Face repo id (OWNER/NAME), or None."""
    reason = unsafe_path(repo)
    if reason:
        return f"repo '{repo}' has {reason}"
    if not _REPO.fullmatch(repo) or ".." in repo or "--" in repo or len(repo) > 96:
        return f"repo '{repo}' is not OWNER/NAME"
    if repo.split("/")[0].lower() == "pypi":  # models/pypi/ holds the pypi source's files
        return f"repo owner '{repo.split('/')[0]}' is reserved for the pypi source's folder"
    return None


def file_problem(file: str) -> str | None:
    """What is wrong with a GGUF file path inside a repo, or None."""
    reason = unsafe_path(file)
    if reason:
        return f"file '{file}' has {reason}"
    if not file.lower().endswith(".gguf") or file.rsplit("/", 1)[-1].lower() == ".gguf":
        return f"file '{file}' is not a .gguf file"
    return None


def parse_catalog(text: str, origin: str = "models.conf") -> tuple[list[CatalogEntry], list[str]]:
    """(entries, problems) from catalog text; each problem reads "ORIGIN:LINE: what is wrong"."""
    entries: dict[str, CatalogEntry] = {}
    seen_at: dict[str, int] = {}
    problems: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) != 6:
            problems.append(f"{origin}:{lineno}: expected 6 fields {FIELDS}, got {len(fields)}")
            continue
        name, repo, file, size, category, description = fields
        categories = tuple(c.strip() for c in category.split(",") if c.strip())
        try:
            size_gb = float(size)
        except ValueError:
            size_gb = -1.0
        if not _NAME.fullmatch(name):
            problem = f"name '{name}' must be letters, digits, '.', '_' or '-'"
        elif repo_problem(repo) or file_problem(file):
            problem = repo_problem(repo) or file_problem(file)
        elif not size_gb >= 0:  # also catches nan
            problem = f"SIZE_GB '{size}' is not a number of gigabytes"
        elif not categories or not all(_CATEGORY.fullmatch(c) for c in categories):
            problem = f"CATEGORY '{category}' must be lowercase words separated by commas"
        else:
            problem = None
        if problem:
            problems.append(f"{origin}:{lineno}: {problem}")
            continue
        if name in seen_at:
            problems.append(f"{origin}:{lineno}: '{name}' is defined again (line {seen_at[name]} is replaced)")
        seen_at[name] = lineno
        entries[name] = CatalogEntry(name=name, ref=f"hf:{repo}/{file}", source="hf",
                                     categories=categories, size_gb=size_gb,
                                     description=description)
    return list(entries.values()), problems
