"""`halo bench serve --workload agentic`: multi-turn sessions shaped like a coding agent's.

A session is what an agent such as a coding assistant sends a server, turn after turn:

  turn 1   the system prompt (the agent's instructions, a JSON schema of its tools written as
           text inside the system message, so that any chat template takes it without
           `--jinja` or the API's `tools`; then project notes from halo's corpus) and the
           user's task. The whole first prompt is `pp` tokens (exactly, on llama-server).
  turn k   everything before, byte for byte, then the assistant's *real* reply to turn k-1
           (the text the server streamed) and a user message holding a tool's output (a file
           read, a test run, a search, an edit's diff: corpus text standing in for it).

So every turn after the first extends the previous prompt and a server with a prompt cache
prefills only the new tokens: the records prove it (`cached_tokens`, llama-server's
`timings.cache_n`, per turn). The system prompt opens with the session's own id, so a
session's first turn shares nothing with another session beyond the chat template's opening
(and, by chance, the id's first token): it is prefilled from scratch, as a new agent session
is.

The generator is deterministic: the task, the tools called, the tool outputs and the reply
lengths of session `index` come from `seed` and `index` alone (every round of a cell, and
every concurrency level, runs the same sessions; only the id and the model's replies differ).
Its parameters:

  TURNS         turns per session (`--turns`, default 6): requests sent one after another,
                each after the reply to the one before
  pp            the first turn's prompt tokens (`--pp`; the CLI's default with --workload
                agentic is SYSTEM_TOKENS); at least what the instructions, the tool schema
                and the task take (about 800 tokens), whatever `pp` says
  TOOL_TOKENS   the corpus tokens of one tool output, drawn uniformly from [lo, hi]
                (`--tool-tokens LO,HI`, default 128,1024); its header and code fence add a
                few (at most WRAP_TOKENS)
  REPLY_SPREAD  a reply's max_tokens is tg × a factor drawn log-uniformly from this range
                (0.5, 2.0): its median is `--tg`, its range tg/2 to 2·tg (at least 2); with
                `ignore_eos` on llama-server each reply is exactly that long
"""

from __future__ import annotations

import json
import math
import random
from typing import Callable, Sequence

import attrs

TURNS = 6
SYSTEM_TOKENS = 4096
TOOL_TOKENS = (128, 1024)
REPLY_SPREAD = (0.5, 2.0)
WRAP_TOKENS = 64  # a tool output's header and fence, and each message's template tokens
MIN_FIRST_TURN = 1024  # at least what the instructions, the tool schema and a task take (~780 on SmolLM2)

TOOLS = (
    {"name": "read_file", "description": "Read a file of the repository and return its text.",
     "parameters": {"type": "object", "required": ["path"], "properties": {
         "path": {"type": "string", "description": "Path relative to the repository root."},
         "start_line": {"type": "integer", "description": "First line to return (1-based)."},
         "end_line": {"type": "integer", "description": "Last line to return."}}}},
    {"name": "search", "description": "Search the repository for a regular expression.",
     "parameters": {"type": "object", "required": ["pattern"], "properties": {
         "pattern": {"type": "string", "description": "A Python regular expression."},
         "glob": {"type": "string", "description": "Only files matching this glob, e.g. '*.py'."}}}},
    {"name": "run_tests", "description": "Run the test suite, or some of it, and return its output.",
     "parameters": {"type": "object", "properties": {
         "selector": {"type": "string", "description": "A pytest node id or -k expression."},
         "timeout_s": {"type": "integer", "description": "Seconds before the run is stopped."}}}},
    {"name": "edit_file", "description": "Replace one exact piece of text in a file with another.",
     "parameters": {"type": "object", "required": ["path", "old", "new"], "properties": {
         "path": {"type": "string"}, "old": {"type": "string", "description": "Text that occurs once."},
         "new": {"type": "string"}}}},
    {"name": "list_dir", "description": "List a directory of the repository.",
     "parameters": {"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}}}},
)

INSTRUCTIONS = """\
You are a coding agent working in a Python repository on the user's machine. You solve the \
user's task by calling tools, one call per reply, and you see each tool's output in the next \
message. Read the code before you change it. Keep edits small and run the tests after each \
one. Never guess the contents of a file: read it. When the task is done, reply with a short \
summary of what you changed and why, and no tool call.

To call a tool, reply with one JSON object on a line of its own, exactly:
{"tool": "<name>", "arguments": {<the arguments>}}

The tools, as a JSON schema:
"""

TASKS = (
    "The test tests/test_config.py::test_round_trip fails with a KeyError on 'timeout'. "
    "Find the cause and fix it without changing the test.",
    "Add a --dry-run flag to the `sync` command that prints what it would copy and copies nothing.",
    "Loading a large project takes minutes since last week's change to the cache. Find out why "
    "and make it fast again.",
    "The CSV export drops rows whose description contains a newline. Fix the export and add a test.",
    "Rename the function parse_opts to parse_options everywhere, keeping a deprecated alias.",
    "A user reports that the server returns HTTP 500 when the request body is empty. Reproduce it "
    "with a test, then return a 400 with a clear message instead.",
)

MODULES = ("config", "cache", "cli", "export", "server", "models", "sync", "utils", "parser", "store")


@attrs.frozen
class AgentTurn:
    """One turn of a session: the user message it appends (the task, or a tool's output), the
    tool whose output that is ("" for the task) and the reply's max_tokens."""

    message: str
    tool: str
    max_tokens: int


@attrs.frozen
class AgentSession:
    """One coding-agent session: its system prompt and its turns (AgentTurn)."""

    index: int
    uid: str
    system: str
    turns: tuple[AgentTurn, ...] = attrs.field(converter=tuple)

    def messages(self, replies: Sequence[str]) -> list[dict]:
        """The chat messages of turn len(replies) + 1: the system prompt, then each earlier
        turn's message followed by the assistant's reply to it, then this turn's message."""
        out = [{"role": "system", "content": self.system}]
        for turn, reply in zip(self.turns, replies):
            out += [{"role": "user", "content": turn.message}, {"role": "assistant", "content": reply}]
        return out + [{"role": "user", "content": self.turns[len(replies)].message}]


def reply_tokens(tg: int, rng: random.Random) -> int:
    """A reply's max_tokens: tg × a factor drawn log-uniformly from REPLY_SPREAD, at least 2."""
    lo, hi = (math.log(f) for f in REPLY_SPREAD)
    return max(2, round(tg * math.exp(rng.uniform(lo, hi))))


def system_prompt(uid: str, notes: str) -> str:
    """The session's system prompt: its id first (so that it shares only the chat template's
    opening with another session's; the id's first token can match another id's by chance), the
    instructions, the tool schema, project notes."""
    schema = json.dumps(list(TOOLS), indent=1)
    return f"{uid} is this session's id.\n{INSTRUCTIONS}{schema}\n\nNotes on this project, from its maintainers:\n{notes.strip()}\n"


def _tool_output(tool: str, rng: random.Random, text: str) -> str:
    path = f"src/project/{rng.choice(MODULES)}.py"
    if tool == "read_file":
        head = f'read_file({{"path": "{path}"}}) returned:\n```python\n'
    elif tool == "search":
        head = f'search({{"pattern": "def {rng.choice(MODULES)}_", "glob": "*.py"}}) returned:\n```\n{path}:{rng.randint(1, 400)}: '
    elif tool == "run_tests":
        failed = rng.randint(1, 5)
        head = f'run_tests({{"selector": "tests/test_{rng.choice(MODULES)}.py"}}) returned:\n```\n' \
               f"===== {failed} failed, {rng.randint(5, 80)} passed =====\nFAILED {path} - AssertionError: "
    elif tool == "edit_file":
        head = f'edit_file({{"path": "{path}", ...}}) returned:\n```diff\n--- a/{path}\n+++ b/{path}\n'
    else:
        head = f'list_dir({{"path": "src/project"}}) returned:\n```\n'
    return f"{head}{text.strip()}\n```"


def make_session(seed: int, index: int, uid: str, notes_tokens: int, turns: int, tg: int,
                 tool_tokens: tuple[int, int], text: Callable[[int, random.Random], str]) -> AgentSession:
    """Session `index` of a run seeded by `seed`, behind the id `uid`, its project notes
    `notes_tokens` tokens of corpus text; `text(n, rng)` gives n tokens of corpus text. The
    turns do not depend on `notes_tokens` or on what `text` draws (each has its own random
    stream), so the notes can be resized until the first prompt is exact."""
    rng = random.Random(f"{seed}|agentic|{index}")  # the shape: task, tools, sizes, reply lengths
    place = random.Random(f"{seed}|agentic|{index}|text")  # where in the corpus the text comes from
    notes = text(notes_tokens, random.Random(f"{seed}|agentic|{index}|notes")) if notes_tokens > 0 else ""
    out = [AgentTurn(rng.choice(TASKS), "", reply_tokens(tg, rng))]
    names = [t["name"] for t in TOOLS]
    for _ in range(turns - 1):
        tool = rng.choice(names)
        size = rng.randint(*tool_tokens)
        out.append(AgentTurn(_tool_output(tool, rng, text(size, place)), tool, reply_tokens(tg, rng)))
    return AgentSession(index, uid, system_prompt(uid, notes), out)


def longest_session(pp: int, tg: int, turns: int, tool_tokens: tuple[int, int]) -> int:
    """The most tokens a session can hold at its end (its last prompt and reply): what one slot
    of the server needs."""
    reply = math.ceil(tg * REPLY_SPREAD[1])
    return (max(pp, MIN_FIRST_TURN) + (turns - 1) * (tool_tokens[1] + WRAP_TOKENS)
            + turns * (reply + WRAP_TOKENS))
