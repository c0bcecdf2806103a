"""A real ``dask.distributed`` cluster (a scheduler and 2 worker processes, loopback only) for Beam's
DaskRunner: ``--runner dask --dask_client_address tcp://127.0.0.1:PORT``.

``start()`` runs ``distributed.LocalCluster(processes=True, host="127.0.0.1")`` in a child process
(so the launcher's own Beam client never shares a process with the scheduler), waits until every
worker has registered (bounded by ``timeout``) and returns the scheduler address. ``stop()`` ends
that child by its process id. The tests and ``make dask-up`` / ``make dask-down`` use it:

    python -m pipelines.dask_cluster up --state D     # prints tcp://127.0.0.1:PORT; D/cluster.json
    python -m pipelines.dask_cluster down --state D   # stops it (by its process id)
    python -m pipelines.dask_cluster check            # "ok" or "SKIP: why"
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

DASK_PIN = "dask[distributed]==2026.8.0"


def skip_reason() -> str | None:
    """Why a Dask cluster cannot run here, or None."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        return f"dask.distributed is not installed (pip install -e '.[dask]', pins {DASK_PIN})"
    return None


@dataclass
class Cluster:
    address: str
    pid: int
    logs: str


def serve(n_workers: int, threads: int, address_file: str) -> None:
    """Child process: a LocalCluster until SIGTERM; its scheduler address goes to ``address_file``."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads, processes=True, host="127.0.0.1",
                           dashboard_address=None, scheduler_port=0, memory_limit="4GiB")
    tmp = address_file + ".tmp"
    Path(tmp).write_text(cluster.scheduler_address)
    os.replace(tmp, address_file)

    def _bye(*_):
        cluster.close(timeout=20)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _bye)
    while True:
        time.sleep(3600)


def _workers(address: str) -> int:
    from distributed import Client

    with Client(address, timeout=10) as c:
        return len(c.scheduler_info()["workers"])


def start(logs: str, n_workers: int = 2, threads: int = 2, timeout: float = 120) -> Cluster:
    """Start the scheduler and ``n_workers`` worker processes; waits until all have registered."""
    why = skip_reason()
    if why:
        raise RuntimeError(why)
    Path(logs).mkdir(parents=True, exist_ok=True)
    addr_file = str(Path(logs) / "address")
    Path(addr_file).unlink(missing_ok=True)
    code = f"from pipelines.dask_cluster import serve; serve({n_workers}, {threads}, {addr_file!r})"
    with open(Path(logs) / "cluster.log", "wb") as log:
        pid = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT,
                               cwd=str(Path(__file__).resolve().parent.parent), start_new_session=True).pid
    deadline = time.monotonic() + timeout
    cluster = None
    while time.monotonic() < deadline:
        if cluster is None and Path(addr_file).is_file():
            cluster = Cluster(Path(addr_file).read_text().strip(), pid, logs)
        if cluster is not None:
            try:
                if _workers(cluster.address) >= n_workers:
                    return cluster
            except OSError:
                pass
        try:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                break  # the child died
        except ChildProcessError:
            break
        time.sleep(1)
    stop(Cluster("", pid, logs))
    raise TimeoutError(f"dask scheduler + {n_workers} workers not up within {timeout:.0f} s (log in {logs})")


def stop(cluster: Cluster, timeout: float = 30) -> None:
    """SIGTERM the cluster's process group (scheduler, nannies, workers), then SIGKILL what is left."""
    try:
        os.killpg(cluster.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(cluster.pid, os.WNOHANG) != (0, 0):
                break
        except ChildProcessError:
            try:
                os.kill(cluster.pid, 0)
            except ProcessLookupError:
                break
        time.sleep(0.5)
    try:
        os.killpg(cluster.pid, signal.SIGKILL)  # workers left behind by a scheduler that did not close them
    except ProcessLookupError:
        pass


def beam_args(cluster: Cluster) -> list[str]:
    """Pipeline options that run a pipeline on ``cluster`` (with ``--runner dask``)."""
    return ["--dask_client_address", cluster.address]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.dask_cluster", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["up", "down", "check"])
    ap.add_argument("--state", default="out/dask", help="folder for cluster.json and the cluster log")
    ap.add_argument("--timeout", type=float, default=120, help="seconds allowed for start-up")
    ap.add_argument("--workers", type=int, default=2, help="worker processes")
    args = ap.parse_args(argv)
    state = Path(args.state) / "cluster.json"
    if args.action == "check":
        why = skip_reason()
        print(f"SKIP: {why}" if why else "ok")
        return 0
    if args.action == "up":
        cluster = start(str(Path(args.state) / "logs"), n_workers=args.workers, timeout=args.timeout)
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps(asdict(cluster)))
        print(cluster.address)
        return 0
    if state.is_file():
        stop(Cluster(**json.loads(state.read_text())))
        state.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
