"""The deployment files (deploy/compose, deploy/k8s, deploy/Dockerfile) agree with the code.

Pure parsing, no container: every CX_* variable they set is a setting, every
command a ``cxstream`` subcommand, every probe and scrape path one the
process routes (read from the aiohttp route tables and the worker's
``@app.page`` registrations), every port the one its env variable sets.
"""

from __future__ import annotations

import ast
import ipaddress
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer

yaml = pytest.importorskip("yaml", reason="PyYAML is in the test extra: pip install -e '.[test]'")

from pipeline.cli import cli  # noqa: E402
from pipeline.collector.server import make_app, make_metrics_app  # noqa: E402
from pipeline.deliver.config import parse_destinations  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.webtoken import OPEN_PATHS, TOKEN_FILE  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose" / "docker-compose.yml"
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))
HAPROXY_CFG = DEPLOY / "compose" / "haproxy.cfg"

SETTING_NAMES = frozenset(f"CX_{name.upper()}" for name in Settings.model_fields)
SUBCOMMANDS = frozenset(typer.main.get_command(cli).commands)
# The alert rules select these jobs (deploy/prometheus/alerts.yml).
SCRAPE_JOBS = {"cxstream-collector": "collector", "cxstream-worker": "worker"}
# The settings naming the addresses each process listens on.
BINDS = {
    "collector": ("collector_host", "collector_metrics_host"),
    "worker": ("worker_web_bind",),
    "dashboard": ("dashboard_bind",),
}


# --- what the code serves ---------------------------------------------------------------------


def _get_paths(app) -> frozenset[str]:  # noqa: ANN001 - an aiohttp Application
    return frozenset(r.resource.canonical for r in app.router.routes() if r.method == "GET")


def _collector_routes() -> tuple[frozenset[str], frozenset[str]]:
    """GET paths of the collector's public port and of its metrics port, from their route tables."""
    app = make_app(Settings(pii_salt="a-test-salt"), producer=None)
    return _get_paths(app), _get_paths(make_metrics_app(app))


def _worker_routes() -> frozenset[str]:
    """Paths the worker registers with ``@app.page(...)`` in pipeline/runtime/worker.py."""
    tree = ast.parse((ROOT / "pipeline" / "runtime" / "worker.py").read_text())
    paths = set()
    for node in ast.walk(tree):
        for deco in getattr(node, "decorator_list", []):
            if (
                isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute) and deco.func.attr == "page"
                and deco.args and isinstance(deco.args[0], ast.Constant)
            ):  # fmt: skip
                paths.add(deco.args[0].value)
    return frozenset(paths)


COLLECTOR_PATHS, COLLECTOR_METRICS_PATHS = _collector_routes()
WORKER_PATHS = _worker_routes()


@dataclass
class Process:
    """One cxstream process of a manifest: its subcommand and the settings its env gives it."""

    where: str
    command: str
    env: dict[str, str] = field(default_factory=dict)

    def setting(self, name: str) -> str:
        """The value of ``CX_<NAME>`` for this process: its env, else the setting's default."""
        key = f"CX_{name.upper()}"
        return self.env[key] if key in self.env else str(Settings.model_fields[name].default)

    def port(self, name: str) -> int:
        return int(self.setting(name))

    def listeners(self) -> dict[int, frozenset[str]]:
        """Port -> GET paths served there, for this process's settings."""
        if self.command == "collector":
            return {self.port("collector_port"): COLLECTOR_PATHS, self.port("collector_metrics_port"): COLLECTOR_METRICS_PATHS}
        if self.command == "worker":
            return {self.port("worker_web_port"): WORKER_PATHS}
        if self.command == "dashboard":
            return {self.port("dashboard_port"): frozenset()}
        return {}

    def metrics_port(self) -> int:
        return self.port("collector_metrics_port" if self.command == "collector" else "worker_web_port")

    def probe_ok(self, port: int, path: str) -> None:
        """Assert that ``GET path`` on ``port`` is routed and answered without a token."""
        listeners = self.listeners()
        assert port in listeners, f"{self.where}: probe port {port}, the process listens on {sorted(listeners)}"
        assert path in listeners[port], f"{self.where}: {path} is not routed on port {port} ({sorted(listeners[port])})"
        if self.command == "worker":
            assert path in OPEN_PATHS, f"{self.where}: {path} needs the worker token, a probe cannot send it"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- compose --------------------------------------------------------------------------------


def _compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _compose_processes() -> list[Process]:
    out = []
    for name, svc in _compose()["services"].items():
        cmd = svc.get("command")
        if "build" in svc and "entrypoint" not in svc:
            env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
            out.append(Process(f"compose service {name}", cmd[0], env))
    return out


def test_compose_sets_only_real_settings() -> None:
    text = COMPOSE_FILE.read_text()
    interpolated = set(re.findall(r"\$\{(CX_[A-Z0-9_]+)", text))
    set_in_env = {k for p in _compose_processes() for k in p.env if k.startswith("CX_")}
    assert set_in_env, "no CX_* variable found in the compose file"
    unknown = sorted((interpolated | set_in_env) - SETTING_NAMES)
    assert unknown == [], f"not settings of pipeline/settings.py: {unknown}"


def test_compose_runs_real_subcommands_with_every_process() -> None:
    commands = {p.command for p in _compose_processes()}
    assert commands == {"collector", "worker", "deliver", "dashboard"}
    assert commands <= SUBCOMMANDS


def test_compose_healthchecks_probe_routed_paths_on_the_configured_ports() -> None:
    services = _compose()["services"]
    probed = 0
    for proc in _compose_processes():
        name = proc.where.split()[-1]
        test = services[name].get("healthcheck", {}).get("test")
        if test is None:
            continue
        for port, path in re.findall(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", " ".join(test)):
            proc.probe_ok(int(port), path)
            probed += 1
    assert probed == 2  # collector and worker


def test_compose_exposed_and_published_ports_are_the_listeners() -> None:
    services = _compose()["services"]
    for proc in _compose_processes():
        svc = services[proc.where.split()[-1]]
        exposed = {int(p) for p in svc.get("expose", [])}
        exposed |= {int(str(p).rsplit(":", 1)[1]) for p in svc.get("ports", [])}
        assert exposed == set(proc.listeners()), proc.where


def test_compose_listeners_bind_every_interface_of_the_container() -> None:
    checked = 0
    for proc in _compose_processes():
        for bind in BINDS.get(proc.command, ()):
            assert not _is_loopback(proc.setting(bind)), f"{proc.where}: {bind} is loopback"
            checked += 1
    assert checked == 4


def test_compose_token_is_where_every_reader_looks() -> None:
    services = _compose()["services"]
    data_dir = _dockerfile_data_dir()
    token_mounts = {v for v in services["token"]["volumes"]}
    assert token_mounts == {f"cx-shared:{data_dir}"}
    for name in ("worker", "dashboard", "prometheus"):
        mounts = [v.split(":")[:2] for v in services[name]["volumes"]]
        assert ["cx-shared", data_dir] in mounts, name
    prom = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    worker_job = next(j for j in prom["scrape_configs"] if j["job_name"] == "cxstream-worker")
    assert worker_job["authorization"]["credentials_file"] == f"{data_dir}/{TOKEN_FILE}"


def test_compose_token_service_writes_a_token_its_group_can_read(tmp_path: Path) -> None:
    svc = _compose()["services"]["token"]
    assert svc["entrypoint"] == ["python", "-c"]
    env = {**os.environ, "CX_DATA_DIR": str(tmp_path / "data")}
    subprocess.run([sys.executable, "-c", svc["command"][0]], env=env, check=True, timeout=60)
    token_file = tmp_path / "data" / TOKEN_FILE
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o640
    first = token_file.read_text().strip()
    assert len(first) >= 40
    subprocess.run([sys.executable, "-c", svc["command"][0]], env=env, check=True, timeout=60)
    assert token_file.read_text().strip() == first  # a second run keeps it: running workers keep theirs


def test_compose_prometheus_scrapes_both_jobs_on_their_metrics_ports() -> None:
    prom = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    by_command = {p.command: p for p in _compose_processes()}
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert set(jobs) == set(SCRAPE_JOBS)
    for job_name, command in SCRAPE_JOBS.items():
        job, proc = jobs[job_name], by_command[command]
        (sd,) = job["dns_sd_configs"]
        assert sd["names"] == [command]
        assert sd["port"] == proc.metrics_port()
        assert job.get("metrics_path", "/metrics") in proc.listeners()[sd["port"]]
    mounts = _compose()["services"]["prometheus"]["volumes"]
    assert "../prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
    assert prom["rule_files"] == ["alerts.yml"]


def test_haproxy_routes_the_collector_api_and_checks_readiness() -> None:
    cfg = HAPROXY_CFG.read_text()
    collector = next(p for p in _compose_processes() if p.command == "collector")
    check_path = re.search(r"option httpchk GET (\S+)", cfg).group(1)
    check_port = int(re.search(r"check port (\d+)", cfg).group(1))
    assert check_port == collector.port("collector_metrics_port")
    assert check_path in COLLECTOR_METRICS_PATHS
    assert check_path == "/ready"  # traffic only to collectors whose broker answers
    server = re.search(r"server-template \S+ (\d+) collector:(\d+)", cfg)
    assert int(server.group(2)) == collector.port("collector_port")
    prefixes = re.search(r"acl api path_beg (.+)", cfg).group(1).split()
    posted = {r.resource.canonical for r in make_app(Settings(pii_salt="s"), None).router.routes() if r.method == "POST"}
    assert {p.rsplit("{", 1)[0] for p in posted} == set(prefixes)
    frontend_port = int(re.search(r"bind :(\d+)", cfg).group(1))
    assert _compose()["services"]["proxy"]["ports"] == [f"${{PUBLIC_PORT:-8080}}:{frontend_port}"]


def test_compose_files_it_mounts_exist() -> None:
    for name in ("haproxy.cfg", "prometheus.yml", "example.env"):
        assert (DEPLOY / "compose" / name).is_file()
    assert (DEPLOY / "prometheus" / "alerts.yml").is_file()


# --- Dockerfile -------------------------------------------------------------------------------


def _dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def _dockerfile_data_dir() -> str:
    return re.search(r"^ENV CX_DATA_DIR=(\S+)", _dockerfile(), re.M).group(1)


def test_dockerfile_runs_cxstream_as_a_non_root_user_from_the_packages() -> None:
    text = _dockerfile()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["cxstream"\]$', text, re.M)
    user = re.search(r"^USER (\d+)", text, re.M).group(1)
    assert int(user) != 0
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", text, re.M))
    assert copied == packages
    assert "cxstream" in pyproject["project"]["scripts"]


def test_dockerfile_compiles_the_hot_path_with_the_native_extra_and_the_cli_command() -> None:
    from typer.main import get_command

    from pipeline.cli import cli

    text = _dockerfile()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "native" in pyproject["project"]["optional-dependencies"]
    assert "pip install '.[native]'" in text
    assert re.search(r"cxstream build-native \|\|", text)  # a failed compile leaves the image on the source
    assert "build-native" in get_command(cli).commands


# --- Kubernetes -------------------------------------------------------------------------------


def _k8s_docs() -> list[dict]:
    docs = [d for f in K8S_FILES for d in yaml.safe_load_all(f.read_text()) if d]
    assert docs, "no Kubernetes manifest in deploy/k8s"
    return docs


def _by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in _k8s_docs() if d["kind"] == kind}


def _env_sources(container: dict) -> dict[str, str]:
    """CX_* values a container gets: envFrom ConfigMaps and Secrets of deploy/k8s, then env."""
    config_maps, secrets = _by_kind("ConfigMap"), _by_kind("Secret")
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            env.update(config_maps[src["configMapRef"]["name"]]["data"])
        else:
            ref = src["secretRef"]
            if ref["name"] in secrets:
                env.update(secrets[ref["name"]]["stringData"])
            else:
                assert ref.get("optional") is True, f"Secret {ref['name']} is not in deploy/k8s"
    env.update({e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e})
    return env


def _k8s_processes() -> list[tuple[dict, dict, Process]]:
    out = []
    for name, dep in _by_kind("Deployment").items():
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        out.append((dep, container, Process(f"Deployment {name}", container["args"][0], _env_sources(container))))
    return out


def test_k8s_sets_only_real_settings_and_runs_real_subcommands() -> None:
    procs = _k8s_processes()
    assert {p.command for _, _, p in procs} == {"collector", "worker", "deliver"}
    for _, _, proc in procs:
        assert proc.command in SUBCOMMANDS
        unknown = sorted(set(proc.env) - SETTING_NAMES)
        assert unknown == [], f"{proc.where}: not settings of pipeline/settings.py: {unknown}"


def test_k8s_probes_hit_routed_paths_on_the_configured_ports() -> None:
    probed = {}
    for _, container, proc in _k8s_processes():
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            if kind in container:
                get = container[kind]["httpGet"]
                proc.probe_ok(int(get["port"]), get["path"])
                probed[(proc.command, kind)] = get["path"]
    assert probed[("collector", "livenessProbe")] == probed[("worker", "livenessProbe")] == "/health"
    assert probed[("collector", "readinessProbe")] == probed[("worker", "readinessProbe")] == "/ready"


def test_k8s_container_ports_are_the_listeners_and_services_target_them() -> None:
    processes = _k8s_processes()
    for _, container, proc in processes:
        assert {p["containerPort"] for p in container.get("ports", [])} == set(proc.listeners()), proc.where
    services = _by_kind("Service")
    assert set(services) == {"cxstream-collector", "cxstream-worker"}
    for name, svc in services.items():
        dep, container, proc = next(t for t in processes if t[0]["metadata"]["name"] == name)
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in proc.listeners(), f"Service {name}: port {port['targetPort']}"
    public = services["cxstream-collector"]["spec"]["ports"]
    collector = next(p for _, _, p in processes if p.command == "collector")
    assert [p["targetPort"] for p in public] == [collector.port("collector_port")]  # never the metrics port


def test_k8s_scrape_annotations_name_a_metrics_path_the_process_serves() -> None:
    annotated = 0
    for dep, _, proc in _k8s_processes():
        notes = dep["spec"]["template"]["metadata"].get("annotations", {})
        if notes.get("prometheus.io/scrape") != "true":
            continue
        port, path = int(notes["prometheus.io/port"]), notes["prometheus.io/path"]
        assert port == proc.metrics_port(), proc.where
        assert path in proc.listeners()[port], proc.where
        annotated += 1
    assert annotated == 2  # collector and worker


def test_k8s_worker_binds_beyond_loopback_for_its_probes() -> None:
    (worker,) = [p for _, _, p in _k8s_processes() if p.command == "worker"]
    assert not _is_loopback(worker.setting("worker_web_bind"))
    (collector,) = [p for _, _, p in _k8s_processes() if p.command == "collector"]
    assert not _is_loopback(collector.setting("collector_host"))
    assert not _is_loopback(collector.setting("collector_metrics_host"))


def test_k8s_workers_do_not_outnumber_the_events_partitions() -> None:
    (dep, _, worker) = next(t for t in _k8s_processes() if t[2].command == "worker")
    assert dep["spec"]["replicas"] <= worker.port("kafka_partitions")
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_k8s_worker_token_secret_is_mounted_as_the_data_dirs_token_file() -> None:
    (dep, container, worker) = next(t for t in _k8s_processes() if t[2].command == "worker")
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == f"{worker.setting('data_dir')}/{TOKEN_FILE}"]
    secret_name = volumes[mount["name"]]["secret"]["secretName"]
    assert mount["subPath"] in _by_kind("Secret")[secret_name]["stringData"]
    assert mount["subPath"] == TOKEN_FILE


def test_k8s_deliver_config_parses_and_is_mounted_where_the_setting_points() -> None:
    (dep, container, deliver) = next(t for t in _k8s_processes() if t[2].command == "deliver")
    path = Path(deliver.setting("delivery_config"))
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
    text = _by_kind("ConfigMap")[volumes[mount["name"]]["configMap"]["name"]]["data"][path.name]
    data = tomllib.loads(text)
    envs = {d["secret_env"]: "s" * 32 for d in data["destination"]}
    (dest,) = parse_destinations(data, Settings(), environ=envs)
    assert dest.name == "automation"


def test_k8s_autoscaler_targets_the_collector_deployment() -> None:
    (hpa,) = _by_kind("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] in _by_kind("Deployment")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "cxstream-collector"


# --- Prometheus ---------------------------------------------------------------------------------


def _promtool_check(config: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip(reason="promtool is not installed (Debian's prometheus package; infra/setup.sh --clickhouse-server)")
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", config.parent / "alerts.yml")
    checked = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_accepts_the_single_machine_scrape_config(tmp_path: Path) -> None:
    token = tmp_path / TOKEN_FILE
    token.write_text("a-token\n")
    text = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    assert "/path/to/.cxdata/worker.token" in text
    (tmp_path / "prometheus.yml").write_text(text.replace("/path/to/.cxdata/worker.token", str(token)))
    _promtool_check(tmp_path / "prometheus.yml")


def test_promtool_accepts_the_compose_scrape_config(tmp_path: Path) -> None:
    token = tmp_path / TOKEN_FILE
    token.write_text("a-token\n")
    text = (DEPLOY / "compose" / "prometheus.yml").read_text()
    path = f"{_dockerfile_data_dir()}/{TOKEN_FILE}"
    assert path in text
    (tmp_path / "prometheus.yml").write_text(text.replace(path, str(token)))
    _promtool_check(tmp_path / "prometheus.yml")


def test_haproxy_accepts_the_compose_proxy_config() -> None:
    if shutil.which("haproxy") is None:
        pytest.skip(reason="haproxy is not installed (Debian's haproxy package; infra/setup.sh --clickhouse-server)")
    checked = subprocess.run(["haproxy", "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_kubernetes_scrape_jobs_in_the_docs_keep_the_pods_and_use_their_port_annotation() -> None:
    """The scrape configuration docs/deployment.md gives for Kubernetes, applied as Prometheus would.

    Not through promtool: Debian's build has no Kubernetes service discovery
    ("field kubernetes_sd_configs not found"), so the relabelling is applied here.
    """
    page = (ROOT / "docs" / "deployment.md").read_text()
    section = page.split("**Prometheus on Kubernetes.**", 1)[1]
    jobs = {j["job_name"]: j for j in yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))["scrape_configs"]}
    assert set(jobs) == set(SCRAPE_JOBS)
    deployments = {t[2].command: t for t in _k8s_processes()}
    for job_name, command in SCRAPE_JOBS.items():
        dep, _, proc = deployments[command]
        keep, address = jobs[job_name]["relabel_configs"]
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert keep["action"] == "keep"
        assert keep["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
        assert re.fullmatch(keep["regex"], pod_labels["app.kubernetes.io/name"])
        notes = dep["spec"]["template"]["metadata"]["annotations"]
        # Prometheus joins the source labels with ';' and matches the whole string (RE2 syntax used here is Python's too).
        joined = f"10.1.2.3:{next(iter(proc.listeners()))};{notes['prometheus.io/port']}"
        rewritten = re.fullmatch(address["regex"], joined).expand(address["replacement"].replace("$", "\\"))
        assert rewritten == f"10.1.2.3:{proc.metrics_port()}"
        assert address["target_label"] == "__address__"
    assert "authorization" not in jobs["cxstream-collector"]
    assert jobs["cxstream-worker"]["authorization"]["type"] == "Bearer"
