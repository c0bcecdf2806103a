"""Atomic checkpoints (model, EMA, optimizer, scheduler, RNG states, data positions) on Beam filesystems.

A checkpoint is one safetensors file, ``ckpt-NNNNNNNN.safetensors``: every tensor of the payload
is a safetensors entry and everything else (step, config, optimizer hyper-parameters, RNG states,
data positions) is JSON in the file's metadata, with each tensor replaced by a reference to its
entry. Loading never unpickles anything, so a crafted file cannot run code: a file that is not a
valid checkpoint of this layout raises ``CheckpointError`` (the CLIs print it as one line and exit
non-zero). ``latest.json`` names the newest complete checkpoint.
"""

from __future__ import annotations

import json
import random
import struct

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from core import storage

LATEST = "latest.json"
SUFFIX = ".safetensors"
FORMAT = "iidata-checkpoint/1"
_META_KEY = "iidata"
MAX_HEADER = 64 << 20  # a safetensors header larger than this is not one of ours


class CheckpointError(ValueError):
    """A checkpoint file that is missing, not a safetensors file of our layout, or not finite."""


# -- RNG states as plain values ---------------------------------------------------------------------
def rng_state() -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                       "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
             "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- payload <-> (JSON skeleton, tensors) ------------------------------------------------------------
def _flatten(obj, tensors: dict[str, torch.Tensor]):
    """JSON-able skeleton of ``obj``; tensors move to ``tensors`` and leave ``{"__tensor__": name}``."""
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors):06d}"
        tensors[name] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": name}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _flatten(v, tensors) for k, v in obj.items()}}
        # optimizer state is keyed by int parameter ids: keep the key types
        return {"__items__": [[k, _flatten(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_flatten(v, tensors) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, np.integer | np.floating | np.bool_):
        return obj.item()
    raise TypeError(
        f"checkpoint payload holds a {type(obj).__name__}: only tensors and plain values are stored"
    )


def _unflatten(node, tensors: dict[str, torch.Tensor]):
    if isinstance(node, list):
        return [_unflatten(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        if node["__tensor__"] not in tensors:
            raise CheckpointError(f"checkpoint references a missing tensor {node['__tensor__']!r}")
        return tensors[node["__tensor__"]]
    if "__dict__" in node:
        return {k: _unflatten(v, tensors) for k, v in node["__dict__"].items()}
    if "__items__" in node:
        return {
            k if not isinstance(k, list) else tuple(k): _unflatten(v, tensors) for k, v in node["__items__"]
        }
    if "__tuple__" in node:
        return tuple(_unflatten(v, tensors) for v in node["__tuple__"])
    raise CheckpointError("checkpoint metadata has an unknown node")


def dumps(payload: dict) -> bytes:
    """A payload (nested dicts/lists/tuples of tensors and plain values) -> safetensors bytes."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(payload, tensors)
    meta = {"format": FORMAT, _META_KEY: json.dumps(skeleton, sort_keys=False, allow_nan=True)}
    return st_save(tensors, metadata=meta)


def loads(data: bytes, name: str = "checkpoint") -> dict:
    """Inverse of ``dumps``; never unpickles. Raises ``CheckpointError`` on anything else."""
    if len(data) < 8:
        raise CheckpointError(f"{name}: not a checkpoint (only {len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(MAX_HEADER, len(data) - 8):
        raise CheckpointError(f"{name}: not a safetensors checkpoint (checkpoints are never unpickled; "
                              "pickled .pt files are refused)")
    try:
        header = json.loads(data[8 : 8 + n])
        meta = header.get("__metadata__") or {}
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{name}: safetensors file without this trainer's checkpoint metadata")
        tensors = st_load(data)
        return _unflatten(json.loads(meta[_META_KEY]), tensors)
    except CheckpointError:
        raise
    except (SafetensorError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{name}: unreadable checkpoint ({type(e).__name__}: {str(e)[:200]})") from e


def non_finite_tensors(state: dict, parts: tuple[str, ...] = ("model", "ema")) -> list[str]:
    """Names of floating-point tensors in ``state[part]`` holding NaN or Inf."""
    bad = []
    for part in parts:
        for k, v in (state.get(part) or {}).items():
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
                bad.append(f"{part}.{k}")
    return bad


def save(folder: str, step: int, payload: dict, keep: int = 3) -> str:
    """Write ``ckpt-{step}.safetensors`` atomically, then point ``latest.json`` at it; prune to ``keep``.

    Refuses (``CheckpointError``) a payload whose model or EMA weights are not finite, so a
    diverged run never replaces its last good checkpoint.
    """
    bad = non_finite_tensors(payload)
    if bad:
        raise CheckpointError(f"refusing to write a checkpoint with non-finite weights ({len(bad)} tensors, "
                              f"e.g. {bad[0]})")
    path = storage.join(folder, f"ckpt-{step:08d}{SUFFIX}")
    storage.atomic_write_bytes(path, dumps(payload))
    storage.atomic_write_bytes(
        storage.join(folder, LATEST), json.dumps({"step": step, "path": path}).encode()
    )
    if keep > 0:
        old = storage.list_files(folder, f"ckpt-*{SUFFIX}")[:-keep]
        if old:
            storage.FileSystems.delete(old)
    return path


def latest(folder: str) -> str | None:
    p = storage.join(folder, LATEST)
    if not storage.exists(p):
        return None
    try:
        path = json.loads(storage.read_bytes(p))["path"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{p}: not a latest.json pointer ({type(e).__name__})") from e
    if not isinstance(path, str):
        raise CheckpointError(f"{p}: not a latest.json pointer")
    return path


def resolve(path: str) -> str:
    """A checkpoint file, or a run / checkpoints folder (its latest checkpoint)."""
    if storage.exists(path) and not storage._is_dir(path):
        return path
    found = None
    if storage.exists(path):
        found = latest(path) or latest(storage.join(path, "checkpoints"))
    if found is None:
        raise CheckpointError(f"{path}: no checkpoint there")
    return found


def load(path: str, map_location="cpu") -> dict:
    """A checkpoint written by ``save``; ``CheckpointError`` for a missing, foreign or crafted file."""
    if not storage.exists(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    state = loads(storage.read_bytes(path), name=path)
    if not isinstance(state, dict) or not {"model", "step"} <= set(state):
        raise CheckpointError(f"{path}: checkpoint lacks model weights or step")
    if map_location not in (None, "cpu"):
        state = _to(state, map_location)
    return state


def _to(obj, device):
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to(v, device) for v in obj)
    return obj
