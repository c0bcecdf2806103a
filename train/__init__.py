"""Trainer for the compact Instruct-Imagen cascade: shard streaming, training, checkpoints, sampling.

``demo_run`` is the entry used by the demo orchestrator.
"""

from __future__ import annotations

from core import __version__  # noqa: F401  (one version; also sets the quiet environment)


def demo_run(shards: str, output: str, steps: int = 150, seed: int = 0, config: str = "tiny",
             overrides: dict | None = None) -> dict:
    """Train the tiny base model briefly on cluster or task shards (CPU, ~1-3 min) and write a sample grid.

    Returns ``{"steps", "final_loss", "samples_png", "checkpoint", ...}``. Rerunning with the same
    output resumes from its checkpoint (and returns at once when already done).
    """
    from core import storage
    from train.trainer import Trainer, deep_merge, load_config

    cfg = load_config(config, deep_merge({"train": {"steps": steps, "seed": seed}}, overrides or {}))
    trainer = Trainer(cfg, shards, output, progress=True)
    try:
        summary = trainer.train()
        if trainer.sample_batch is None:  # already finished: fetch one batch for the grid
            batch = next(iter(trainer.loader()))
            trainer.sample_batch = trainer.prepare(batch, None, dropout=False)
        summary["samples_png"] = trainer.write_samples()
        summary["log_csv"] = storage.join(output, "log.csv")
        summary["text_encoder"] = trainer.enc.name
    finally:
        trainer.close()
    return summary
