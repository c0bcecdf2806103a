"""A real Spark standalone cluster (one master process, one worker process) and Beam's Spark job
server, for running the pipelines on Beam's SparkRunner.

Spark comes from pyspark's own distribution (``pyspark/bin/spark-class`` and ``pyspark/jars``).
Beam publishes no Spark job-server jar that Maven Central serves to these machines (the
``beam-runners-spark-3-job-server`` artifact is missing for every version), but the runner's own
jars are served: ``beam-runners-spark-3`` and ``beam-runners-java-job-service`` up to
:data:`BEAM_JAVA` (2.70's job-service jar is missing). ``python -m pipelines.spark_cluster
jobserver`` resolves those two artifacts and their dependencies with Maven into a cache folder; the
job server then runs as ``SparkJobServerDriver`` on that classpath plus pyspark's Spark jars. The
Python SDK (the apache-beam pin) submits to it over the portable job API and runs its own workers
(``LOOPBACK``). ``make test-spark`` (mk/runners.mk) assembles it, starts everything, runs
``tests/test_spark_runner.py`` and stops it; each step has a time bound and says why it skips (no
Java, no Maven, artifacts not served, no pyspark).

    python -m pipelines.spark_cluster jobserver      # resolve the job server; prints its folder
    python -m pipelines.spark_cluster up --state D   # master + worker + job server; D/cluster.json
    python -m pipelines.spark_cluster down --state D # stop them (by their process groups)

Every server listens on 127.0.0.1 only.
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

#: Newest Beam Java release whose Spark 3 runner, job-service and their dependencies Maven serves here.
BEAM_JAVA = os.environ.get("IIDATA_BEAM_JAVA_VERSION", "2.62.0")
JAR_ENV = "IIDATA_SPARK_JOB_SERVER_JAR"
CACHE_ENV = "IIDATA_SPARK_JOB_SERVER_DIR"
DRIVER = "org.apache.beam.runners.spark.SparkJobServerDriver"
ARTIFACTS = ("beam-runners-spark-3", "beam-runners-java-job-service")
# Spark 3.5 on Java 17 needs these packages opened (Spark's own launcher adds the same list).
OPENS = [f"--add-opens=java.base/{m}=ALL-UNNAMED" for m in (
    "java.lang", "java.lang.invoke", "java.lang.reflect", "java.io", "java.net", "java.nio", "java.util",
    "java.util.concurrent", "java.util.concurrent.atomic", "sun.nio.ch", "sun.nio.cs",
    "sun.security.action", "sun.util.calendar")]


def beam_version() -> str:
    import apache_beam

    return apache_beam.__version__


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path.home() / ".cache" / "iidata" / f"beam-spark-job-server-{BEAM_JAVA}"


def local_jar() -> Path | None:
    """``$IIDATA_SPARK_JOB_SERVER_JAR`` (a shaded job-server jar you copied in), or None."""
    p = Path(os.environ[JAR_ENV]) if os.environ.get(JAR_ENV) else None
    return p if p is not None and p.is_file() else None


def job_server_classpath() -> list[str] | None:
    """The job server's jars (a copied-in jar, or the resolved folder), or None when not assembled."""
    if (jar := local_jar()) is not None:
        return [str(jar)]
    done = cache_dir() / "jars"
    if (cache_dir() / "complete").is_file() and done.is_dir():
        return [str(done / "*")]
    return None


POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.iidata</groupId><artifactId>beam-spark-job-server</artifactId><version>{v}</version>
  <dependencies>{deps}
  </dependencies>
</project>
"""


def assemble(timeout: int = 600) -> tuple[Path | None, str]:
    """(folder, "") or (None, why): ``mvn dependency:copy-dependencies`` of :data:`ARTIFACTS` at
    :data:`BEAM_JAVA` into ``cache_dir()/jars`` (renamed into place when complete)."""
    if job_server_classpath() is not None:
        return cache_dir(), ""
    if shutil.which("mvn") is None:
        return None, "mvn is not installed"
    root = cache_dir()
    work = root.parent / f"{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    deps = "".join(f"\n    <dependency><groupId>org.apache.beam</groupId><artifactId>{a}</artifactId>"
                   f"<version>{BEAM_JAVA}</version></dependency>" for a in ARTIFACTS)
    (work / "pom.xml").write_text(POM.format(v=BEAM_JAVA, deps=deps))
    cmd = ["mvn", "-B", "-q", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
           f"-DoutputDirectory={work / 'jars'}", "-DincludeScope=runtime"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        shutil.rmtree(work, ignore_errors=True)
        return None, f"mvn dependency:copy-dependencies did not finish in {timeout} s"
    if done.returncode != 0 or not any((work / "jars").glob("beam-runners-spark-3-*.jar")):
        shutil.rmtree(work, ignore_errors=True)
        lines = [ln for ln in (done.stdout + done.stderr).splitlines() if "ERROR" in ln]
        return None, f"Beam {BEAM_JAVA} Spark runner not served by Maven ({(lines or ['?'])[0][:200]})"
    (work / "complete").write_text(f"{BEAM_JAVA}\n")
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(work, root)
    return root, ""


def spark_home() -> Path | None:
    """pyspark's folder, which holds the whole Spark distribution (``bin/spark-class``, ``jars/``)."""
    try:
        import pyspark
    except ImportError:
        return None
    p = Path(pyspark.__file__).parent
    return p if (p / "bin" / "spark-class").is_file() else None


def skip_reason() -> str | None:
    """Why a Spark cluster cannot run here, or None."""
    if shutil.which("java") is None:
        return "java is not installed"
    if spark_home() is None:
        return "pyspark (pinned in mk/runners.mk) is not installed"
    if job_server_classpath() is None:
        return f"Beam {BEAM_JAVA} Spark job server not assembled (make spark-jobserver, or set {JAR_ENV})"
    return None


@dataclass
class Cluster:
    master_url: str
    ui_port: int
    job_port: int
    pids: list[int]
    logs: str

    @property
    def job_endpoint(self) -> str:
        return f"127.0.0.1:{self.job_port}"


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


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _spawn(cmd: list[str], log: Path, env: dict) -> int:
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True).pid


def _wait(ready, cluster: Cluster, deadline: float, what: str) -> None:
    while not ready():
        if time.monotonic() > deadline:
            stop(cluster)
            raise TimeoutError(f"{what} not up in time (logs in {cluster.logs})")
        time.sleep(1)


def start(logs: str, timeout: float = 180, worker_memory: str = "2g") -> Cluster:
    """Start a master, one worker (1 core) and the job server on loopback; returns when the worker
    has registered and the job port answers. Start-up is bounded by ``timeout`` seconds in all."""
    home, classpath = spark_home(), job_server_classpath()
    if home is None or classpath is None:
        raise RuntimeError(skip_reason() or "Spark is not available")
    Path(logs).mkdir(parents=True, exist_ok=True)
    port, ui, wui, job, art, exp = (_free_port() for _ in range(6))
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_NO_DAEMONIZE": "1", "PYSPARK_PYTHON": sys.executable}
    url = f"spark://127.0.0.1:{port}"
    sc = str(home / "bin" / "spark-class")
    cluster = Cluster(url, ui, job, [], logs)
    deadline = time.monotonic() + timeout
    cluster.pids.append(_spawn([sc, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port",
                                str(port), "--webui-port", str(ui)], Path(logs) / "master.log", env))
    cluster.pids.append(_spawn([sc, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                                "--cores", "1", "--memory", worker_memory, "--webui-port", str(wui), url],
                               Path(logs) / "worker.log", env))
    _wait(lambda: _alive_workers(ui) >= 1, cluster, deadline, "Spark master + worker")
    cp = ":".join([*classpath, str(home / "jars" / "*")])
    cluster.pids.append(_spawn(["java", *OPENS, "-cp", cp, DRIVER, "--job-host", "127.0.0.1",
                                "--job-port", str(job), "--artifact-port", str(art), "--expansion-port",
                                str(exp), "--spark-master-url", url], Path(logs) / "job_server.log", env))
    _wait(lambda: _listening(job), cluster, deadline, "Beam Spark job server")
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


def beam_args(cluster: Cluster) -> list[str]:
    """Pipeline options (with ``--runner SparkRunner``) that submit to ``cluster``'s job server; the
    Python SDK workers run in the launcher (``LOOPBACK``) and the Spark executors call them."""
    return ["--job_endpoint", cluster.job_endpoint, "--environment_type", "LOOPBACK"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.spark_cluster", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["jobserver", "up", "down", "check"])
    ap.add_argument("--state", default="out/spark", help="folder for cluster.json and the process logs")
    ap.add_argument("--timeout", type=float, default=120, help="seconds for start-up / the Maven resolve")
    args = ap.parse_args(argv)
    state = Path(args.state) / "cluster.json"
    if args.action == "jobserver":
        if shutil.which("java") is None:
            print("SKIP: java is not installed")
            return 0
        folder, why = assemble(int(args.timeout))
        print(folder if folder else f"SKIP: {why}")
        return 0
    if args.action == "check":
        why = skip_reason()
        print(f"SKIP: {why}" if why else "ok")
        return 0
    if args.action == "up":
        cluster = start(str(Path(args.state) / "logs"), timeout=args.timeout)
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps(asdict(cluster)))
        print(f"{cluster.master_url} job endpoint {cluster.job_endpoint}")
        return 0
    if state.is_file():
        stop(Cluster(**json.loads(state.read_text())))
        state.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
