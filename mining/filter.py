"""Threshold filtering of scored records: what falls below goes to the rejects with its reason.

Checks, in order (the first failing one is the reason): ``low_quality`` (``quality`` below
``min_quality``), ``domain_excluded`` (domain not in ``allowed_domains``), ``domain_uncertain``
(best domain probability below ``min_domain_score``). Size checks (``too_small``,
``extreme_aspect``) already happen at decode time with the same config.
"""

from __future__ import annotations

from typing import Any

from core.contracts import reject
from core.decode import STAGE  # "mine": filter and decode rejects carry one stage name
from mining.config import MiningConfig


def filter_reason(row: dict[str, Any], cfg: MiningConfig) -> tuple[str | None, str]:
    """(reason, detail) when ``row`` (a scored record) must be dropped, else (None, "")."""
    q = row.get("quality")
    if q is None or q < cfg.min_quality:
        return "low_quality", f"quality {q if q is None else round(q, 4)} < {cfg.min_quality}"
    if cfg.allowed_domains is not None and row.get("domain") not in cfg.allowed_domains:
        return "domain_excluded", f"domain {row.get('domain')} not in {list(cfg.allowed_domains)}"
    score = row.get("domain_score")
    if cfg.min_domain_score > 0 and (score is None or score < cfg.min_domain_score):
        return "domain_uncertain", f"domain score {score} < {cfg.min_domain_score}"
    return None, ""


def apply_filter(
    row: dict[str, Any], cfg: MiningConfig
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(kept row, None) or (None, reject row)."""
    reason, detail = filter_reason(row, cfg)
    if reason:
        return None, reject(row, STAGE, reason, detail)
    return row, None
