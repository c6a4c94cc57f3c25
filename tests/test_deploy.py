"""The deployment files agree with the code: settings they name, probe paths, the port, pins and users."""

from __future__ import annotations

import io
import re
import shlex
import tomllib
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from slack_sdk import WebClient

from bot.config import Settings, load_settings, variable_name
from bot.digests.config import load_digests
from bot.runtime.health import Readiness
from bot.runtime.http import WSGIApp, wsgi_application
from bot.wiring import Services
from tests.conftest import ROOT
from tests.slackbot import BOT_TOKEN, SECRET, build_test_app
from tests.support.slack import FakeSlack

DOCKER = ROOT / "deploy" / "docker"
K8S = ROOT / "deploy" / "k8s"
DEPLOY_FILES = sorted(path for folder in (DOCKER, K8S) for path in folder.rglob("*") if path.is_file())
SETTINGS_VARIABLES = {variable_name(name) for name in Settings.model_fields}
VARIABLE = re.compile(r"\b(?:STEWARD|SLACK)_[A-Z0-9_]+\b")
DEFAULT_PORT = Settings.model_fields["port"].default
PLACEHOLDER = "CHANGE-ME"

Manifest = dict[str, Any]


# -- reading the files ---------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    found: list[tuple[str, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, arguments = stripped.partition(" ")
            found.append((keyword.upper(), " ".join(arguments.split())))
    return found


def _default(value: str) -> str:
    """What compose makes of `${NAME:-default}` when NAME is unset (any other value as is)."""
    match = re.fullmatch(r"\$\{[A-Z_]+:-(.+)\}", value)
    return match.group(1) if match else value


def _dockerfile(keyword: str) -> list[str]:
    """The arguments of every `keyword` instruction, in order."""
    return [arguments for found, arguments in _instructions() if found == keyword]


def _image_env() -> dict[str, str]:
    """The image's ENV variables."""
    env: dict[str, str] = {}
    for arguments in _dockerfile("ENV"):
        for pair in shlex.split(arguments):
            name, _, value = pair.partition("=")
            env[name] = value
    return env


def _image_uid() -> int:
    """The numeric uid of the Dockerfile's last USER."""
    user = _dockerfile("USER")[-1]
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user!r}: use a numeric uid so runAsNonRoot can check it"
    return int(user.split(":")[0])


def _manifests(path: Path) -> list[Manifest]:
    """Every YAML document of a (possibly multi-document) file."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def _k8s(kind: str, name: str | None = None) -> Manifest:
    """The one object of this kind (and name) among deploy/k8s's manifests."""
    found = [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _manifests(path)
        if doc.get("kind") == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/k8s, found {len(found)}"
    return found[0]


def _kustomization() -> Manifest:
    return _manifests(K8S / "kustomization.yaml")[0]


def _pod(workload: Manifest) -> Manifest:
    """The pod spec of a Deployment or a CronJob."""
    if workload["kind"] == "CronJob":
        return dict(workload["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(workload["spec"]["template"]["spec"])


def _container(workload: Manifest) -> Manifest:
    containers = _pod(workload)["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _mounts(workload: Manifest) -> dict[str, Manifest]:
    """Mount path -> the volume mounted there."""
    volumes = {volume["name"]: volume for volume in _pod(workload)["volumes"]}
    return {mount["mountPath"]: volumes[mount["name"]] for mount in _container(workload)["volumeMounts"]}


def _generated(name: str) -> list[str]:
    """The files of a configMapGenerator entry."""
    entries = [e for e in _kustomization()["configMapGenerator"] if e["name"] == name]
    assert len(entries) == 1, f"kustomization.yaml generates no ConfigMap {name}"
    return list(entries[0]["files"])


def _env_example() -> dict[str, str]:
    """The uncommented NAME=value lines of steward.env.example."""
    lines = (DOCKER / "steward.env.example").read_text(encoding="utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return {name.strip(): value.strip() for name, value in pairs}


def _compose() -> Manifest:
    return dict(yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8")))


def _interpolated(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME}` / `${NAME:?message}` interpolation, enough for these files."""
    return re.sub(r"\$\{(\w+)(?::?[?-][^}]*)?\}", lambda m: env[m.group(1)], value)


def _wsgi_get(app: WSGIApp, path: str) -> int:
    """GET `path` from a WSGI app in-process; the response's status code."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SERVER_NAME": "steward",
        "SERVER_PORT": str(DEFAULT_PORT),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
    }
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda _data: None

    b"".join(app(environ, start_response))
    return int(statuses[0].split(" ", 1)[0])


@pytest.fixture
def steward_http(tmp_path: Path) -> Iterator[WSGIApp]:
    """Steward's HTTP app with real readiness checks on an empty SQLite state, Slack faked on loopback."""
    services = Services(Settings(data_dir=tmp_path / "data"))
    with FakeSlack() as slack:
        app = build_test_app(services, slack, slack_signing_secret=SecretStr(SECRET))
        readiness = Readiness(services, WebClient(token=BOT_TOKEN, base_url=slack.api_url))
        try:
            yield wsgi_application(app, readiness=readiness.check)
        finally:
            app.executor.shutdown(wait=True)
            services.close()


# -- settings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_variable_named_in_the_deployment_files_is_a_setting(path: Path) -> None:
    """A STEWARD_… or SLACK_… name in a Dockerfile, compose, env or manifest file is read by bot/config.py."""
    named = set(VARIABLE.findall(path.read_text(encoding="utf-8")))
    unknown = sorted(named - SETTINGS_VARIABLES)
    assert not unknown, f"{path.relative_to(ROOT)} names {unknown}, which are not settings (bot/config.py)"


def test_the_setting_names_follow_the_env_prefix() -> None:
    """The names checked above are the ones pydantic reads: STEWARD_ + field, or the Slack alias."""
    assert Settings.model_config.get("env_prefix") == "STEWARD_"
    assert variable_name("data_dir") == "STEWARD_DATA_DIR"
    assert variable_name("slack_bot_token") == "SLACK_BOT_TOKEN"


def test_the_kubernetes_config_and_secret_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap's and the example Secret's values load, and point where the Deployment mounts things."""
    config = _k8s("ConfigMap", "steward-config")["data"]
    secret = _k8s("Secret", "steward-secrets")["stringData"]
    for name, value in {**config, **secret}.items():
        monkeypatch.setenv(name, str(value))
    settings = load_settings()
    deployment = _k8s("Deployment")
    mounts = _mounts(deployment)
    port = next(p for p in _container(deployment)["ports"] if p["name"] == "http")
    assert settings.port == port["containerPort"] == DEFAULT_PORT
    assert str(settings.data_dir) in mounts and "emptyDir" in mounts[str(settings.data_dir)]
    assert settings.guidance_inbox.is_relative_to(settings.data_dir), "drafts need a writable folder"
    assert mounts[str(settings.policies_dir)]["configMap"]["name"] == "steward-policies"
    digests = mounts[str(settings.digests_file.parent)]["configMap"]["name"]
    assert digests == "steward-digests" and settings.digests_file.name == "digests.yaml"
    assert settings.database_url is not None and settings.database_url.startswith("postgresql+psycopg://")
    assert settings.chroma_url is not None and settings.slack_bot_token is not None


def test_the_compose_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """steward.env.example plus compose's own wiring load as settings: PostgreSQL and the Chroma server."""
    example = _env_example()
    service = _compose()["services"]["steward"]
    wiring = {name: _interpolated(value, example) for name, value in service["environment"].items()}
    for name, value in {**example, **wiring}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.database_url == f"postgresql+psycopg://steward:{PLACEHOLDER}@postgres:5432/steward"
    assert settings.chroma_url == "http://chroma:8000"


@pytest.mark.parametrize("example", ["steward.env.example", "secret.example.yaml"])
def test_the_examples_hold_placeholders_never_secrets(example: str) -> None:
    """Every token, secret, password and URL with credentials in the committed examples is CHANGE-ME."""
    if example == "steward.env.example":
        values = _env_example()
    else:
        values = {k: str(v) for k, v in _k8s("Secret", "steward-secrets")["stringData"].items()}
    credentials = {
        name: value
        for name, value in values.items()
        if re.search(r"TOKEN|SECRET|PASSWORD", name) or (name.endswith("_URL") and "@" in value)
    }
    assert credentials, f"{example} holds no credentials to check"
    for name, value in credentials.items():
        assert PLACEHOLDER in value, f"{example}: {name} must be a {PLACEHOLDER} placeholder"


# -- the image -----------------------------------------------------------------------------------------


def test_the_image_installs_the_cpu_torch_pinned_in_pyproject_first() -> None:
    """torch comes from the CPU index at pyproject.toml's pin, before the project (which then keeps it)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pin = next(dep for dep in project["dependencies"] if dep.startswith("torch=="))
    installs = [run for run in _dockerfile("RUN") if "pip install" in run]
    assert installs, "the Dockerfile installs nothing with pip"
    assert "${TORCH_PIP_ARGS}" in installs[0] and pin in installs[0]
    default = next(arg for arg in _dockerfile("ARG") if arg.startswith("TORCH_PIP_ARGS="))
    assert default == 'TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"'
    assert "postgres" in project["optional-dependencies"]
    project_install = next(i for i, run in enumerate(installs) if "[postgres]" in run)
    assert project_install > 0, "the project must be installed after the CPU torch"


def test_the_image_runs_offline_as_a_fixed_non_root_user() -> None:
    """Numeric non-root USER; the model and Chroma never reach the network; the data dir is a volume."""
    assert _image_uid() != 0
    env = _image_env()
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["ANONYMIZED_TELEMETRY"] == "False"
    assert f'["{env["STEWARD_DATA_DIR"]}"]' in _dockerfile("VOLUME")


def test_the_image_serves_on_the_default_port_with_a_healthcheck() -> None:
    """EXPOSE is Settings' port; CMD is `steward serve` on all interfaces; HEALTHCHECK asks /healthz."""
    assert _dockerfile("EXPOSE") == [str(DEFAULT_PORT)]
    assert _dockerfile("CMD") == ['["steward", "serve", "--host", "0.0.0.0"]']
    (healthcheck,) = _dockerfile("HEALTHCHECK")
    assert "/healthz" in healthcheck and "urllib.request" in healthcheck and "curl" not in healthcheck
    assert "'STEWARD_PORT', '3000'" in healthcheck and DEFAULT_PORT == 3000


def test_the_image_copies_only_named_repository_paths() -> None:
    """Each COPY source exists, is let in by Dockerfile.dockerignore and is never local state."""
    allowed = {
        line[1:].rstrip("/")
        for line in (DOCKER / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    sources = [source.rstrip("/") for arguments in _dockerfile("COPY") for source in arguments.split()[:-1]]
    assert {"pyproject.toml", "bot", "ingest", "knowledge", "policies", "digests.yaml"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
        assert source in allowed, f"COPY {source}: Dockerfile.dockerignore keeps it out of the context"
        assert not source.startswith((".venv", ".steward", ".git")), f"COPY {source}: local state"


# -- compose -------------------------------------------------------------------------------------------


def test_compose_runs_postgres_chroma_a_one_shot_ingest_and_two_replicas() -> None:
    """The four services, their order (healthy database, ingest done) and two replicas of serve."""
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", "chroma", "ingest", "steward"}
    assert _default(services["postgres"]["image"]) == "postgres:16" and "healthcheck" in services["postgres"]
    for name in ("postgres", "chroma"):
        volume = services[name]["volumes"][0].split(":")[0]
        assert volume in compose["volumes"], f"{name} must keep its data in a named volume"
    assert services["ingest"]["command"] == ["steward", "ingest", "knowledge/"]
    assert services["ingest"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    steward = services["steward"]
    assert steward["deploy"]["replicas"] == 2
    assert steward["depends_on"]["ingest"]["condition"] == "service_completed_successfully"
    assert _default(steward["env_file"][0]) == "steward.env" and (DOCKER / "steward.env.example").is_file()
    assert "ports" not in steward, "replicas cannot share a fixed host port"
    assert steward["expose"] == [str(DEFAULT_PORT)]
    build = steward["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"


def test_the_chroma_server_matches_the_client_version() -> None:
    """chromadb/chroma's tag has the installed chromadb client's major.minor version."""
    image = _default(_compose()["services"]["chroma"]["image"])
    name, _, tag = image.partition(":")
    assert name == "chromadb/chroma"
    client = version("chromadb")
    assert tag.split(".")[:2] == client.split(".")[:2], f"{image} vs the chromadb {client} client"


# -- Kubernetes ----------------------------------------------------------------------------------------


def test_the_kustomization_names_files_that_exist() -> None:
    """Every resource and generated file is there; the example Secret is never applied with the rest."""
    kustomization = _kustomization()
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), f"kustomization.yaml lists {resource}, which does not exist"
    assert "secret.example.yaml" not in kustomization["resources"]
    for name in ("steward-policies", "steward-digests"):
        for file in _generated(name):
            assert (K8S / file).is_file(), f"kustomization.yaml generates {name} from missing {file}"


def test_the_kubernetes_policies_are_the_repository_policies() -> None:
    """config/policies/ is a copy of policies/ (kustomize reads nothing outside its folder)."""
    generated = {PurePosixPath(file).name for file in _generated("steward-policies")}
    repository = {path.name for path in (ROOT / "policies").glob("*.yaml")}
    assert generated == repository, "list every policies/*.yaml in kustomization.yaml's steward-policies"
    for name in repository:
        copy = (K8S / "config" / "policies" / name).read_bytes()
        assert copy == (ROOT / "policies" / name).read_bytes(), (
            f"deploy/k8s/config/policies/{name} differs from policies/{name}: "
            "cp policies/*.yaml deploy/k8s/config/policies/"
        )


def test_the_kubernetes_digests_file_loads() -> None:
    """The cluster's digests.yaml passes the same checks as `steward serve` makes at start."""
    (file,) = _generated("steward-digests")
    config = load_digests(K8S / file)
    assert config.digests and PurePosixPath(file).name == "digests.yaml"


def test_the_deployment_rolls_two_replicas_without_losing_one() -> None:
    """Two replicas, a surge-only rolling update, a PDB keeping one, and a Service from 80 to the pods."""
    deployment = _k8s("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    strategy = spec["strategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    pdb = _k8s("PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] == 1 and pdb["selector"]["matchLabels"].items() <= labels.items()
    service = _k8s("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80 and port["targetPort"] == "http"
    resources = _container(deployment)["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys() and "memory" in resources["limits"]


def test_the_probes_ask_the_paths_steward_serves(steward_http: WSGIApp) -> None:
    """Startup and liveness ask /healthz, readiness /readyz, on the http port; Steward answers each 200."""
    container = _container(_k8s("Deployment"))
    kinds = ("startupProbe", "livenessProbe", "readinessProbe")
    probes = {kind: container[kind]["httpGet"] for kind in kinds}
    assert probes["readinessProbe"]["path"] == "/readyz" and probes["livenessProbe"]["path"] == "/healthz"
    for kind, probe in probes.items():
        assert probe["port"] == "http", f"{kind} must use the named container port"
        assert _wsgi_get(steward_http, probe["path"]) == 200, f"{kind}: {probe['path']} is not served"
    assert _wsgi_get(steward_http, "/no-such-probe") == 404  # the check above can fail


@pytest.mark.parametrize(("kind", "name"), [("Deployment", "steward"), ("CronJob", "steward-ingest")])
def test_the_pods_run_as_the_image_user_on_a_read_only_root(kind: str, name: str) -> None:
    """runAsNonRoot with the image's uid, no privilege escalation, read-only root with /tmp writable."""
    workload = _k8s(kind, name)
    pod = _pod(workload)["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == _image_uid()
    container = _container(workload)["securityContext"]
    assert container["allowPrivilegeEscalation"] is False and container["readOnlyRootFilesystem"] is True
    assert "emptyDir" in _mounts(workload)["/tmp"]


def test_the_deployment_takes_its_environment_from_the_configmap_and_secret() -> None:
    """envFrom names the ConfigMap in configmap.yaml and the Secret of secret.example.yaml."""
    sources = _container(_k8s("Deployment"))["envFrom"]
    names = {next(iter(source)): source[next(iter(source))]["name"] for source in sources}
    assert names == {"configMapRef": "steward-config", "secretRef": "steward-secrets"}


def test_the_nightly_ingest_never_overlaps_and_reads_the_image_knowledge() -> None:
    """concurrencyPolicy Forbid; `steward ingest` of a folder the image holds (/app/knowledge)."""
    cronjob = _k8s("CronJob", "steward-ingest")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    args = _container(cronjob)["args"]
    assert args[:2] == ["steward", "ingest"]
    workdir = _dockerfile("WORKDIR")[-1]
    copied = {PurePosixPath(workdir) / arguments.split()[-1] for arguments in _dockerfile("COPY")}
    assert PurePosixPath(args[2]) in copied, f"{args[2]} is not a folder the image holds"
    database = next(e for e in _container(cronjob)["env"] if e["name"] == "STEWARD_DATABASE_URL")
    key = database["valueFrom"]["secretKeyRef"]
    assert key["name"] == "steward-secrets" and key["key"] in _k8s("Secret", "steward-secrets")["stringData"]
