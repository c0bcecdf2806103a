"""A real Spark standalone cluster (one master process, one worker process) for Beam's SparkRunner.

Spark comes from pyspark's own distribution (``pyspark/bin/spark-class``); Beam's Spark 3 job
server jar comes from Maven Central, in the Beam Java version that matches the installed
apache-beam. ``make test-spark`` (mk/runners.mk) fetches the jar, starts the cluster, runs
``tests/test_spark_runner.py`` on it and stops it; each step has a time bound and says why it
skips (no Java, no Maven, jar not served, no pyspark).

    python -m pipelines.spark_cluster jar            # fetch the job-server jar; prints its path
    python -m pipelines.spark_cluster up --state D   # start master + worker; D/cluster.json
    python -m pipelines.spark_cluster down --state D # stop them (by their process ids)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

JOB_SERVER = "beam-runners-spark-3-job-server"
JAR_ENV = "IIDATA_SPARK_JOB_SERVER_JAR"


def beam_version() -> str:
    import apache_beam

    return apache_beam.__version__


def local_jar(version: str | None = None) -> Path | None:
    """``$IIDATA_SPARK_JOB_SERVER_JAR``, or the jar in the local Maven repository, or None."""
    if os.environ.get(JAR_ENV):
        p = Path(os.environ[JAR_ENV])
        return p if p.is_file() else None
    v = version or beam_version()
    p = Path.home() / ".m2/repository/org/apache/beam" / JOB_SERVER / v / f"{JOB_SERVER}-{v}.jar"
    return p if p.is_file() else None


def fetch_jar(timeout: int = 600) -> tuple[Path | None, str]:
    """(jar, "") or (None, why): ``mvn dependency:get`` of the job server for this Beam version."""
    if (jar := local_jar()) is not None:
        return jar, ""
    if shutil.which("mvn") is None:
        return None, "mvn is not installed"
    art = f"org.apache.beam:{JOB_SERVER}:{beam_version()}"
    try:
        done = subprocess.run(
            ["mvn", "-B", "-q", "dependency:get", "-Dtransitive=false", f"-Dartifact={art}"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None, f"mvn dependency:get {art} did not finish in {timeout} s"
    if (jar := local_jar()) is not None:
        return jar, ""
    lines = [ln for ln in done.stdout.splitlines() if "ERROR" in ln]
    return None, f"{art} is not served by the configured Maven repository ({(lines or ['?'])[0][:200]})"


def spark_class() -> Path | None:
    """pyspark's ``bin/spark-class`` (pip's pyspark ships the whole Spark distribution), or None."""
    try:
        import pyspark
    except ImportError:
        return None
    p = Path(pyspark.__file__).parent / "bin" / "spark-class"
    return p if p.is_file() else None


def skip_reason() -> str | None:
    """Why a Spark cluster cannot run here, or None."""
    if shutil.which("java") is None:
        return "java is not installed"
    if spark_class() is None:
        return "pyspark (pinned in mk/runners.mk) is not installed"
    if local_jar() is None:
        return f"no {JOB_SERVER} {beam_version()} jar (make spark-jar, or set {JAR_ENV})"
    return None


@dataclass
class Cluster:
    master_url: str
    ui_port: int
    pids: list[int]
    logs: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as r:
            return int(json.load(r).get("aliveworkers", 0))
    except (OSError, ValueError):
        return 0


def start(logs: str, timeout: float = 120, worker_memory: str = "2g") -> Cluster:
    """Start a master and one worker (1 core) on loopback; waits until the worker has registered."""
    sc = spark_class()
    if sc is None:
        raise RuntimeError("pyspark is not installed")
    Path(logs).mkdir(parents=True, exist_ok=True)
    port, ui, wui = _free_port(), _free_port(), _free_port()
    env = {**os.environ, "SPARK_HOME": str(sc.parent.parent), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_NO_DAEMONIZE": "1", "PYSPARK_PYTHON": sys.executable}
    url = f"spark://127.0.0.1:{port}"
    cmds = [
        [str(sc), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
         "--webui-port", str(ui)],
        [str(sc), "org.apache.spark.deploy.worker.Worker", "--cores", "1", "--memory", worker_memory,
         "--webui-port", str(wui), url],
    ]
    pids = []
    for name, cmd in zip(("master", "worker"), cmds):
        with open(Path(logs) / f"{name}.log", "wb") as log:
            pids.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True).pid)
    cluster = Cluster(url, ui, pids, logs)
    deadline = time.monotonic() + timeout
    while _alive_workers(ui) < 1:
        if time.monotonic() > deadline:
            stop(cluster)
            raise TimeoutError(f"Spark master + worker not up within {timeout:.0f} s (logs in {logs})")
        time.sleep(1)
    return cluster


def stop(cluster: Cluster, timeout: float = 30) -> None:
    """SIGTERM each process group we started (worker first), then SIGKILL what is left."""
    for pid in reversed(cluster.pids):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout
    for pid in cluster.pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.5)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def beam_args(cluster: Cluster, jar: Path) -> list[str]:
    """Pipeline options that run a pipeline on ``cluster`` (Python workers in the launcher: LOOPBACK)."""
    return ["--spark_master_url", cluster.master_url, "--spark_job_server_jar", str(jar),
            "--environment_type", "LOOPBACK"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.spark_cluster", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["jar", "up", "down", "check"])
    ap.add_argument("--state", default="out/spark", help="folder for cluster.json and the process logs")
    ap.add_argument("--timeout", type=float, default=120, help="seconds allowed for start-up / the jar fetch")
    args = ap.parse_args(argv)
    state = Path(args.state) / "cluster.json"
    if args.action == "jar":
        jar, why = fetch_jar(int(args.timeout))
        print(jar if jar else f"SKIP: {why}")
        return 0
    if args.action == "check":
        why = skip_reason()
        print(f"SKIP: {why}" if why else "ok")
        return 0
    if args.action == "up":
        cluster = start(str(Path(args.state) / "logs"), timeout=args.timeout)
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps(asdict(cluster)))
        print(cluster.master_url)
        return 0
    if state.is_file():
        stop(Cluster(**json.loads(state.read_text())))
        state.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
