"""DDP: two gloo processes over an uneven shard count finish in bounded time with synchronised weights."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket

import torch

from tests.test_train_resume import EMB, tiny_overrides
from tests.test_train_toyshards import write_task_shards


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, port: int, shards: str, output: str, result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from train.trainer import Trainer, load_config

    tr = Trainer(load_config("tiny", tiny_overrides(4)), shards, output, progress=False)
    summary = tr.train()
    digest = float(sum(p.double().sum() for p in tr.model.parameters()))
    with open(f"{result}.{rank}", "w") as fh:
        json.dump(
            {"digest": digest, "steps": summary["steps"], "world": tr.world, "data": summary["data"]}, fh
        )
    tr.close()


def test_ddp_two_ranks_uneven_shards(tmp_path):
    shards = str(tmp_path / "s")
    write_task_shards(shards, n_shards=3, per_shard=2, size=16, emb_dim=EMB)  # 3 shards over 2 ranks
    ctx = mp.get_context("fork")
    port = free_port()
    result = str(tmp_path / "res")
    procs = [
        ctx.Process(target=worker, args=(r, port, shards, str(tmp_path / "out"), result)) for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=150)
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
    assert not hung, "DDP run did not finish in 150 s"
    assert all(p.exitcode == 0 for p in procs)
    r0, r1 = (json.load(open(f"{result}.{r}")) for r in range(2))
    assert r0["world"] == r1["world"] == 2 and r0["steps"] == r1["steps"] == 4
    assert abs(r0["digest"] - r1["digest"]) < 1e-9  # DDP kept the replicas identical
    from train.checkpoint import latest, load

    state = load(latest(str(tmp_path / "out" / "checkpoints")))
    assert sorted(state["data_positions"]) == [0, 1]  # both ranks' stream positions saved
