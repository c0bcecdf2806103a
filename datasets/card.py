"""Dataset card for a task-shard build: ``card.json`` + ``card.md`` (paper vs reached ratio per
dataset, counts, the reason for every missing dataset, rejects, template counts, token limit)."""

from __future__ import annotations

import json
from typing import Any

from core import storage


def build_card(summary: dict[str, Any], plan: dict[str, Any], written: dict[str, int],
               sample_rejects: dict[str, dict[str, int]], config: dict[str, Any]) -> dict[str, Any]:
    """The card as a dict. ``written`` = samples per task in the shards (this run + earlier ones)."""
    total = sum(written.values())
    templates = summary.get("templates", {})
    exhausted = set(plan.get("exhausted", []))
    rows = []
    for task, target in plan["targets"].items():
        n = written.get(task, 0)
        spec = config["tasks"][task]
        note = plan["skipped"].get(task)
        if not note and task in exhausted:
            note = f"all {plan['available'].get(task, 0)} candidates used: fewer than its share"
        rows.append({
            "task": task,
            "group": spec.get("group", ""),
            "paper_dataset": spec.get("paper", ""),
            "paper_ratio": round(target, 4),
            "paper_ratio_inferred": bool(spec.get("inferred", False)),
            "target_ratio": round(target, 4),
            "effective_target": round(plan["effective"].get(task, 0.0), 4),
            "available": plan["available"].get(task, 0),
            "planned": plan["counts"].get(task, 0),
            "written": n,
            "reached_ratio": round(n / total, 4) if total else 0.0,
            "rejected": sample_rejects.get(task, {}),
            "skipped": plan["skipped"].get(task),
            "note": note,
            "templates": templates.get(task, 0),
        })
    return {
        "title": "Instruct-Imagen multi-modal instruction tasks",
        "mixture_source": config.get("source", ""),
        "total_samples": total,
        "tasks": rows,
        "inputs": summary.get("inputs", {}),
        "options": summary.get("options", {}),
        "records": {
            "read": summary.get("read"),
            "kept": summary.get("kept"),
            "rejected": summary.get("rejected"),
        },
        "shards": summary.get("shards", {}),
        "tokens": summary.get("tokens", {}),
        "notes": summary.get("notes", []),
    }


def card_markdown(card: dict[str, Any]) -> str:
    lines = [
        f"# {card['title']}",
        "",
        f"Mixture: {card['mixture_source']}",
        "",
        f"Total samples: **{card['total_samples']}**",
        "",
        "paper = Table 1 ratio; effective = renormalised over the datasets built here; reached = share of "
        "written samples. Each task is sampled with its ratio as weight; one that runs out of candidates "
        "uses them all and the others share the rest.",
        "",
        "| task | paper dataset | paper | effective | reached | available | written | templates | rejected "
        "| missing or short, why |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in card["tasks"]:
        rej = ", ".join(f"{k}: {v}" for k, v in sorted(r["rejected"].items())) or "-"
        paper = f"{r.get('paper_ratio', r['target_ratio']):.3f}" + (
            " (inferred)" if r.get("paper_ratio_inferred") else ""
        )
        lines.append(
            f"| {r['task']} | {r['paper_dataset']} | {paper} | {r['effective_target']:.3f} | "
            f"{r['reached_ratio']:.3f} | {r['available']} | {r['written']} | "
            f"{r.get('templates', '-')} | {rej} | "
            f"{r.get('note') or r['skipped'] or '-'} |"
        )
    tok = card.get("tokens") or {}
    if tok:
        over = tok.get("template_overhead", {})
        lines += [
            "",
            "## Instruction length",
            "",
            f"- text-encoder token limit: {tok.get('limit')} (MiniLM WordPiece with [CLS]/[SEP]; "
            "the training configs' `text_encoder.max_len`); longest text written: "
            f"{tok.get('longest_written')} tokens",
            f"- most tokens a template adds around its fields: {max(over.values()) if over else '-'} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(over.items()))})",
            "- a longer instruction or context text is a counted `instruction_too_long` reject, never cut",
        ]
    rec = card["records"]
    lines += ["", "## Input records", "", f"- read: {rec['read']}, used in a sample: {rec['kept']}",
              f"- not used, by reason: {json.dumps(rec['rejected'], sort_keys=True)}"]
    if card["inputs"]:
        lines += ["", "## Inputs", ""] + [f"- {k}: {v}" for k, v in sorted(card["inputs"].items())]
    if card["options"]:
        lines += ["", "## Options", ""] + [f"- {k}: {v}" for k, v in sorted(card["options"].items())]
    if card["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in card["notes"]]
    return "\n".join(lines) + "\n"


def write_card(folder: str, card: dict[str, Any]) -> dict[str, str]:
    j = storage.atomic_write_bytes(storage.join(folder, "card.json"),
                                   json.dumps(card, indent=2, sort_keys=True).encode("utf-8"))
    m = storage.atomic_write_bytes(storage.join(folder, "card.md"), card_markdown(card).encode("utf-8"))
    return {"card_json": j, "card_md": m}
