"""Instruction templates per task (``datasets/templates/<task>.yaml``): loading, checking, rendering.

A template file declares the task's context items (marker, kind, text variants), a few
hand-written instruction phrasings (``instructions``) and a grammar (``slots`` + ``grammar``):
each grammar line names slots, and every combination of one phrase per slot, joined by a space,
is one more template (``expand``). A slot may be ``"@name"``, a shared list of
``datasets/templates/_slots.yaml``. A file with ``same_as: other`` uses ``other``'s templates.
The paper had 100 rephrasings per dataset; ``check`` requires >= 100 distinct templates, each
referring to every context marker exactly once and to no other marker, using only declared
``{fields}``, and no two templates equal after ``normalize`` (case, spacing, punctuation).
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from datasets.instruction import marker, markers_in

TEMPLATE_DIR = Path(__file__).with_name("templates")
MIN_TEMPLATES = 100
SLOTS_FILE = TEMPLATE_DIR / "_slots.yaml"


@dataclass(frozen=True)
class TaskTemplates:
    task: str
    group: str
    fields: tuple[str, ...]
    context: tuple[dict[str, Any], ...]  # each: marker, kind, texts
    instructions: tuple[str, ...]


def available_tasks() -> list[str]:
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.yaml") if not p.stem.startswith("_"))


@cache
def shared_slots() -> dict[str, tuple[str, ...]]:
    if not SLOTS_FILE.exists():
        return {}
    return {k: tuple(v) for k, v in (yaml.safe_load(SLOTS_FILE.read_text(encoding="utf-8")) or {}).items()}


def expand(slots: dict[str, Any], grammar: list[list[str]]) -> list[str]:
    """Every combination of one phrase per named slot, for each grammar line, joined by a space."""
    import itertools

    def phrases(name: str) -> tuple[str, ...]:
        val = slots[name]
        if isinstance(val, str) and val.startswith("@"):
            return shared_slots()[val[1:]]
        return tuple(val)

    out = []
    for line in grammar or []:
        for combo in itertools.product(*(phrases(n) for n in line)):
            out.append(" ".join(p.strip() for p in combo))
    return out


@cache
def load(task: str) -> TaskTemplates:
    """Templates of ``task`` (cached): hand-written instructions, then the grammar's, in file order."""
    path = TEMPLATE_DIR / f"{task}.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if doc.get("same_as"):
        base = load(doc["same_as"])
        return TaskTemplates(task=doc["task"], group=base.group, fields=base.fields, context=base.context,
                             instructions=base.instructions)
    ctx = tuple(
        {"marker": c["marker"], "kind": c["kind"], "texts": tuple(c["texts"])}
        for c in doc.get("context") or []
    )
    instructions = list(doc.get("instructions") or []) + expand(
        doc.get("slots") or {}, doc.get("grammar") or []
    )
    return TaskTemplates(
        task=doc["task"], group=doc["group"], fields=tuple(doc["fields"]), context=ctx,
        instructions=tuple(instructions),
    )


def normalize(text: str) -> str:
    """Lower case, markers and fields kept, other punctuation dropped, spaces collapsed (duplicate check)."""
    import re

    return " ".join(re.sub(r"[^a-z0-9\[\]#{}_ ]+", " ", text.lower()).split())


def _fields_of(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def check(tpl: TaskTemplates, min_templates: int = MIN_TEMPLATES) -> list[str]:
    """Problems found in ``tpl`` (empty list = valid)."""
    problems: list[str] = []
    expected = [marker(k + 1) for k in range(len(tpl.context))]
    got = [c["marker"] for c in tpl.context]
    if got != expected:
        problems.append(f"{tpl.task}: context markers {got}, expected {expected}")
    seen: dict[str, str] = {}
    for text in tpl.instructions:
        key = normalize(text)
        if key in seen:
            problems.append(f"{tpl.task}: {text!r} duplicates {seen[key]!r} after normalising")
        seen.setdefault(key, text)
    if len(seen) < min_templates:
        problems.append(f"{tpl.task}: {len(seen)} distinct instructions < {min_templates}")
    for text in tpl.instructions:
        used = markers_in(text)
        for m in used:
            if m not in expected:
                problems.append(f"{tpl.task}: {text!r} names {m}, which is no context item")
        for m in expected:
            if m not in used:
                problems.append(f"{tpl.task}: {text!r} never refers to context item {m}")
            elif text.count(m) > 1:
                problems.append(f"{tpl.task}: {text!r} refers to {m} {text.count(m)} times (once expected)")
        for name in _fields_of(text) - set(tpl.fields):
            problems.append(f"{tpl.task}: {text!r} uses undeclared field {{{name}}}")
    for c in tpl.context:
        if not c["texts"]:
            problems.append(f"{tpl.task}: context {c['marker']} has no texts")
        for text in c["texts"]:
            if not text.startswith(c["marker"]):
                problems.append(f"{tpl.task}: context text {text!r} must start with {c['marker']}")
            other = [m for m in markers_in(text) if m != c["marker"]]
            if other:
                problems.append(f"{tpl.task}: context text {text!r} names other markers {other}")
            for name in _fields_of(text) - set(tpl.fields):
                problems.append(f"{tpl.task}: context text {text!r} uses undeclared field {{{name}}}")
    return problems


def check_all() -> dict[str, list[str]]:
    """Problems per task for every template file."""
    return {t: check(load(t)) for t in available_tasks()}


def counts() -> dict[str, int]:
    """Distinct (normalised) instruction templates per task, for the dataset card."""
    return {t: len({normalize(x) for x in load(t).instructions}) for t in available_tasks()}


def pick(seed: int, *parts: str, n: int) -> int:
    """Deterministic index in [0, n) from a seed and strings (stable across processes)."""
    h = hashlib.sha256(("\x1f".join([str(seed), *parts])).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") % n


def _clean(value: Any) -> str:
    text = " ".join(str(value).split()).strip().rstrip(".").strip()
    first = text.split()[0] if text else ""
    if first[:1].isupper() and (len(first) == 1 or first[1:].islower()) and first.lower() in _LOWER_FIRST:
        text = text[0].lower() + text[1:]
    return text.replace("{", "(").replace("}", ")")


_LOWER_FIRST = {"a", "an", "the", "some", "two", "three", "several", "many", "this", "there", "one", "people"}


def render(
    task: str, values: dict[str, Any], seed: int, salt: str
) -> tuple[str, list[tuple[str, str, str]], int]:
    """(instruction, [(marker, context text, kind)], template index) for one sample.

    The phrasing is chosen by ``seed`` and ``salt`` (e.g. the target key), so reruns agree.
    """
    tpl = load(task)
    vals = {k: _clean(values.get(k, "")) for k in tpl.fields}
    idx = pick(seed, task, salt, n=len(tpl.instructions))
    instruction = tpl.instructions[idx].format(**vals)
    instruction = instruction.replace("..", ".").strip()
    ctx = []
    for c in tpl.context:
        j = pick(seed, task, salt, c["marker"], n=len(c["texts"]))
        ctx.append((c["marker"], c["texts"][j].format(**vals), c["kind"]))
    return instruction, ctx, idx
