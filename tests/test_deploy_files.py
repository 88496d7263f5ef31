"""docker-compose.yml cannot run here (no Docker engine): check it by reading it."""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pytest
import yaml

from driftloop.app.cli import build_parser
from driftloop.core.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_is_valid_and_wired():
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"kafka", "monitor", "retrain-worker"} <= set(services)
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    env = kafka["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    internal = [a for a in env["KAFKA_ADVERTISED_LISTENERS"].split(",") if a.startswith("PLAINTEXT://")][0]
    listener_names = {part.split(":")[0] for part in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")}
    assert {"CONTROLLER", "PLAINTEXT", "EXTERNAL"} <= listener_names
    for name in ("monitor", "retrain-worker"):
        svc = services[name]
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert svc["environment"]["DRIFTLOOP__KAFKA__BOOTSTRAP_SERVERS"] == internal.removeprefix("PLAINTEXT://")
        cmd = svc["command"]
        assert cmd[0] == "driftloop" and cmd[-2] == "-c"
        host_cfg = [v.split(":")[0] for v in svc["volumes"] if v.endswith(":" + cmd[-1] + ":ro")]
        assert host_cfg and (ROOT / host_cfg[0]).is_file()
        for vol in svc["volumes"]:
            src = vol.split(":")[0]
            if not src.startswith("."):
                assert src in doc["volumes"]
    assert (ROOT / "Dockerfile").is_file()


def test_monitor_command_in_compose_exists():
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    args = doc["services"]["monitor"]["command"][1:]
    build_parser().parse_args(args)  # the CLI accepts exactly this command line


def test_docker_config_validates():
    cfg = load_config(ROOT / "deploy" / "driftloop.docker.yaml", environ={})
    assert cfg.kafka.bootstrap_servers == "kafka:19092"
    assert set(cfg.models) == {"fraud"}


def test_prometheus_and_grafana_are_wired():
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    prom = yaml.safe_load((ROOT / "deploy/grafana/prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert "monitor:8321" in targets
    assert "127.0.0.1:8321:8321" in services["monitor"]["ports"]
    for name in ("prometheus", "grafana"):
        for vol in services[name]["volumes"]:
            src = vol.split(":")[0]
            assert (ROOT / src).exists() if src.startswith(".") else src in doc["volumes"]


# -- the paths the configuration names are on the service's volumes, writable where written ------
def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _mounts(svc: dict) -> list[tuple[str, str, bool]]:
    """(source, container target, read_only) of each short-syntax volume of a service."""
    out = []
    for vol in svc.get("volumes", []):
        src, target, *mode = vol.split(":")
        out.append((src, target.rstrip("/") or "/", "ro" in (mode[0].split(",") if mode else [])))
    return out


def _mount_of(path: PurePosixPath, mounts: list[tuple[str, str, bool]]) -> tuple[str, str, bool] | None:
    """The mount that holds ``path`` inside the container (the deepest target containing it)."""
    holding = [m for m in mounts if path == PurePosixPath(m[1]) or PurePosixPath(m[1]) in path.parents]
    return max(holding, key=lambda m: len(m[1]), default=None)


def _dockerfile() -> tuple[str, list[str]]:
    """The image's USER and the folders its RUN lines chown to that user."""
    text = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users, "the Dockerfile must drop root (USER)"
    user = users[-1]
    owned = []
    for run in re.findall(r"^RUN\s+(.+)$", text, flags=re.M):
        for cmd in re.split(r"&&|;", run):
            words = cmd.split()
            if words[:1] == ["chown"]:
                args = [w for w in words[1:] if not w.startswith("-")]
                if args and args[0].split(":")[0] == user:
                    owned += args[1:]
    return user, owned


def _service_config(name: str, svc: dict):
    """The service's configuration as the container loads it (its environment applied)."""
    from driftloop.core.config import load_config_text

    cfg_path = PurePosixPath(svc["command"][-1])
    host = [src for src, target, _ in _mounts(svc) if target == str(cfg_path)]
    assert host, f"{name}: the config file {cfg_path} is not mounted"
    env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
    return load_config_text((ROOT / host[0]).read_text(), base_dir=str(cfg_path.parent), environ=env)


def _config_paths(cfg, *, worker: bool) -> list[tuple[str, PurePosixPath, bool]]:
    """(config key, container path, written) of every path the configuration names."""
    from driftloop.core.config.retrain import registry_config

    out = []
    url = cfg.store.url
    if url.startswith("sqlite:///"):
        db = PurePosixPath(url.removeprefix("sqlite:///"))
        out.append(("store.url", db.parent, True))      # the folder: SQLite writes -wal/-shm next to the file
    out.append(("registry.artifact_dir", PurePosixPath(registry_config(cfg).artifact_path), worker))
    for name, model in cfg.models.items():
        if model.reference is not None:
            out.append((f"models.{name}.reference", PurePosixPath(cfg.resolve(model.reference)), False))
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(cfg.kafka, key)
        if value is not None:
            out.append((f"kafka.{key}", PurePosixPath(cfg.resolve(value)), False))
    return out


@pytest.mark.parametrize("name", ["monitor", "retrain-worker"])
def test_every_configured_path_is_on_a_volume_and_writable_where_written(name):
    doc = _compose()
    svc = doc["services"][name]
    user, owned = _dockerfile()
    mounts = _mounts(svc)
    for key, path, written in _config_paths(_service_config(name, svc), worker=name == "retrain-worker"):
        assert path.is_absolute(), f"{name}: {key} resolves to a relative path {path}"
        mount = _mount_of(path, mounts)
        assert mount is not None, f"{name}: {key} = {path} is on no volume (lost with the container)"
        src, target, read_only = mount
        if not written:
            continue
        assert not read_only, f"{name}: {key} = {path} is written but lies under the read-only mount {target}"
        assert src in doc["volumes"], f"{name}: {key} = {path} should be on a named volume, not {src}"
        # a fresh named volume takes the ownership of the image's folder: the image must own it
        assert any(target == o.rstrip("/") or PurePosixPath(o) in PurePosixPath(target).parents for o in owned), \
            f"{name}: {key} = {path} is on {target}, which the image does not chown to its user {user}"


def test_the_worker_writes_its_artifacts_where_the_monitor_reads_them():
    doc = _compose()
    services = doc["services"]
    where = {}
    for name in ("monitor", "retrain-worker"):
        from driftloop.core.config.retrain import registry_config

        cfg = _service_config(name, services[name])
        art = PurePosixPath(registry_config(cfg).artifact_path)
        where[name] = (art, _mount_of(art, _mounts(services[name]))[0], cfg.store.url)
    assert where["monitor"] == where["retrain-worker"]
    assert str(where["monitor"][0]).startswith("/var/lib/driftloop/")


def test_published_ports_bind_to_loopback_by_default():
    for name, svc in _compose()["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
