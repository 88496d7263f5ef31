"""docker-compose.yml cannot run here (no Docker engine): check it by reading it."""
from __future__ import annotations

from pathlib import Path

import yaml

from driftloop.cli import build_parser
from driftloop.config import load_config

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
    assert "8321:8321" in services["monitor"]["ports"]
    for name in ("prometheus", "grafana"):
        for vol in services[name]["volumes"]:
            src = vol.split(":")[0]
            assert (ROOT / src).exists() if src.startswith(".") else src in doc["volumes"]
