"""Run logging: TensorBoard scalars and images (rank 0) plus a CSV log rewritten atomically."""

from __future__ import annotations

import csv
import io

import torch

from core import storage


class RunLogger:
    def __init__(self, output: str, enabled: bool = True, resume_step: int = 0, tensorboard: bool = True):
        self.enabled = enabled
        self.csv_path = storage.join(output, "log.csv")
        self.rows: list[dict] = []
        self.tb = None
        if not enabled:
            return
        if storage.exists(self.csv_path):
            text = storage.read_bytes(self.csv_path).decode()
            self.rows = [r for r in csv.DictReader(io.StringIO(text)) if int(r["step"]) <= resume_step]
        if tensorboard and "://" not in output:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(
                storage.join(output, "tb"), purge_step=resume_step + 1 if resume_step else None
            )

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
        self.rows.append({"step": step, **{k: f"{v:.6g}" for k, v in values.items()}})
        fields = list(dict.fromkeys(k for r in self.rows for k in r))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        w.writerows(self.rows)
        storage.atomic_write_bytes(self.csv_path, buf.getvalue().encode())

    def image(self, tag: str, step: int, grid: torch.Tensor) -> None:
        if self.enabled and self.tb is not None:
            self.tb.add_image(tag, grid, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
