"""Kernel parameters in /etc/default/grub, and the command that turns it into grub.cfg.

halo edits only the GRUB_CMDLINE_LINUX_DEFAULT / GRUB_CMDLINE_LINUX assignments, keeps every
other byte of the file, and refuses a file it cannot edit safely (an unterminated quote, a
command substitution) with one line naming the place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import attrs

from halo_core.plugin_api import HostFacts, TuneError, host_path

GRUB_FILE = "/etc/default/grub"
CMDLINE_VARS = ("GRUB_CMDLINE_LINUX_DEFAULT", "GRUB_CMDLINE_LINUX")
_ASSIGN = re.compile(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


@attrs.frozen
class Assignment:
    """One `NAME="value"` line: where it is and how it is quoted, to rewrite only its value."""

    name: str
    line: int  # index into the file's lines
    prefix: str
    quote: str  # '"', "'" or ""
    value: str
    suffix: str  # what follows the closing quote (spaces, a comment, the newline)


def _split_value(name: str, rest: str, number: int) -> tuple[str, str, str]:
    where = f"{GRUB_FILE}: line {number}: {name}"
    if rest[:1] in ('"', "'"):
        quote = rest[0]
        end = 1
        while True:
            end = rest.find(quote, end)
            if end < 0:
                raise TuneError(f"{where} has no closing {quote} (a value over several lines "
                                f"is not supported): fix the file, then run halo tune again")
            if quote == "'" or rest[end - 1] != "\\":
                break
            end += 1
        value, suffix = rest[1:end], rest[end + 1:]
    else:
        quote = ""
        match = re.match(r"([^\s#;]*)(.*)$", rest, re.S)
        value, suffix = match.group(1), match.group(2)
    if suffix.strip() and not suffix.strip().startswith("#"):
        raise TuneError(f"{where} has text after its value ({suffix.strip()!r}): fix the file, "
                        f"then run halo tune again")
    if "$(" in value or "`" in value:
        raise TuneError(f"{where} runs a command substitution, which halo cannot edit safely: "
                        f"set the value literally, then run halo tune again")
    return quote, value, suffix


def parse(text: str) -> dict[str, Assignment]:
    """The kernel command-line assignments of a GRUB defaults file (the last one wins)."""
    if "\x00" in text:
        raise TuneError(f"{GRUB_FILE} is not a text file")
    found: dict[str, Assignment] = {}
    for index, line in enumerate(text.splitlines(keepends=True)):
        match = _ASSIGN.match(line.rstrip("\n"))
        if not match or match.group(2) not in CMDLINE_VARS:
            continue
        quote, value, suffix = _split_value(match.group(2), match.group(3), index + 1)
        found[match.group(2)] = Assignment(match.group(2), index, match.group(1), quote, value,
                                           suffix + ("\n" if line.endswith("\n") else ""))
    return found


def params(text: str) -> dict[str, str]:
    """The parameters the file puts on the command line, as {name: value}."""
    out: dict[str, str] = {}
    found = parse(text)
    for name in reversed(CMDLINE_VARS):  # LINUX first, then LINUX_DEFAULT after it, as GRUB does
        assignment = found.get(name)
        for token in (assignment.value.split() if assignment else []):
            key, _, value = token.partition("=")
            out[key] = value
    return out


def edit(text: str, drop: Callable[[str], bool], add: list[str]) -> str:
    """The file with every token for which `drop(key)` holds removed from both variables and
    `add` present in GRUB_CMDLINE_LINUX_DEFAULT (else GRUB_CMDLINE_LINUX); unchanged when the
    tokens are already as asked."""
    found = parse(text)
    lines = text.splitlines(keepends=True)
    target = next((n for n in CMDLINE_VARS if n in found), None)
    if target is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        return "".join(lines) + f'GRUB_CMDLINE_LINUX="{" ".join(add)}"\n'
    for name, assignment in found.items():
        tokens = assignment.value.split()
        kept = []
        for token in tokens:
            key = token.partition("=")[0]
            wanted = name == target and token in add and token not in kept
            if wanted or not drop(key):
                kept.append(token)
        if name == target:
            kept += [token for token in add if token not in kept]
        if kept == tokens:
            continue
        quote = assignment.quote or '"'
        lines[assignment.line] = (f"{assignment.prefix}{name}={quote}{' '.join(kept)}{quote}"
                                  f"{assignment.suffix}")
    return "".join(lines)


def _family(facts: HostFacts) -> set[str]:
    return {facts.os_id, *facts.os_like}


def mkconfig(root: Path, facts: HostFacts, text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(argv, files it rewrites) of the distribution's command that regenerates grub.cfg.

    Fedora with BLS entries needs --update-bls-cmdline (Fedora 39 and later) for the new
    parameters to reach /boot/loader/entries/*.conf.
    """
    family = _family(facts)
    if family & {"debian", "ubuntu"}:
        return ("update-grub",), ("/boot/grub/grub.cfg",)
    redhat = family & {"fedora", "rhel", "centos"}
    if redhat or family & {"suse", "opensuse"} or (
            not family & {"arch"} and host_path(root, "/boot/grub2").is_dir()):
        argv = ["grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"]
        writes = ["/boot/grub2/grub.cfg"]
        if host_path(root, "/boot/grub2/grubenv").is_file():
            writes.append("/boot/grub2/grubenv")
        bls = re.search(r"^\s*GRUB_ENABLE_BLSCFG=\"?true\"?\s*$", text, re.M)
        if redhat and bls:
            argv.append("--update-bls-cmdline")
            entries = host_path(root, "/boot/loader/entries")
            if entries.is_dir():
                writes += [f"/boot/loader/entries/{p.name}" for p in sorted(entries.glob("*.conf"))]
        return tuple(argv), tuple(writes)
    return ("grub-mkconfig", "-o", "/boot/grub/grub.cfg"), ("/boot/grub/grub.cfg",)
