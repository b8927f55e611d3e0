"""The deployment files: the compose stack against the Compose Specification's schema, pinned
images, Prometheus configuration and rules through promtool, Grafana provisioning that points at
files and a datasource that exist."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None and not os.environ.get("CI"):
        pytest.skip("promtool not installed here (CI installs Debian's prometheus package)")
    assert found, "promtool missing: scripts/test installs the prometheus package"
    return found


def test_the_compose_file_follows_the_compose_specification():
    schema = json.loads((ROOT / "tests/fixtures/compose-spec/compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(COMPOSE)


def test_the_schema_check_catches_a_mistake():
    schema = json.loads((ROOT / "tests/fixtures/compose-spec/compose-spec.json").read_text())
    broken = {**COMPOSE, "services": {**SERVICES, "kafka": {**SERVICES["kafka"], "ports": "9092"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_every_image_is_pinned():
    for name, service in SERVICES.items():
        image = service.get("image", "")
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: {image!r} has no tag"
        assert not image.endswith(":latest"), f"{name}: {image!r}"
    base = re.search(r"^FROM (\S+)", (ROOT / "deploy/Dockerfile").read_text(), re.M).group(1)
    assert re.fullmatch(r"[\w./-]+:\d[\w.-]*", base), base


def test_the_stack_has_what_production_needs():
    kafka = SERVICES["kafka"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"] and "broker" in kafka["KAFKA_PROCESS_ROLES"]  # KRaft
    assert {"schema-registry", "postgres", "prometheus", "grafana", "mllp"} <= set(SERVICES)
    workers = [s for s in SERVICES.values() if s.get("command") == ["worker"]]
    assert len(workers) == 2
    # Both workers are one consumer group on one database: they share the partitions.
    assert len({json.dumps(w["environment"], sort_keys=True) for w in workers}) == 1
    assert all(s.get("profiles") == ["demo"] for n, s in SERVICES.items() if n in ("receiver", "demo-feed"))


def test_mounted_files_exist():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"


def test_prometheus_configuration_and_rules_pass_promtool():
    tool = promtool()
    config = subprocess.run([tool, "check", "config", str(ROOT / "deploy/prometheus/prometheus.yml")],
                            capture_output=True, text=True)
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS: 1 rule files found" in config.stdout + config.stderr
    rules = subprocess.run([tool, "check", "rules", *map(str, (ROOT / "deploy/prometheus/rules").glob("*.yml"))],
                           capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_the_alerts_the_issue_names_are_there():
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/gapstream.yml").read_text())
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert exprs["GapstreamWorkerDown"].startswith('up{job="gapstream-worker"}')
    assert "15m" in exprs["GapstreamConsumerLagNotShrinking"]
    assert "gapstream_event_to_webhook_seconds_bucket" in exprs["GapstreamEdAlertLatencyAboveObjective"]
    assert "gapstream_dead_letters_total" in exprs["GapstreamDeadLettersGrowing"]
    assert "gapstream_webhook_exhausted_total" in exprs["GapstreamDeliveriesExhausted"]
    assert "gapstream_webhook_endpoints_disabled_total" in exprs["GapstreamEndpointDisabled"]


def test_grafana_provisioning_points_at_the_dashboards_and_the_datasource():
    datasources = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {d["uid"] for d in datasources["datasources"]}
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/gapstream.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = dict(v.split(":")[:2][::-1] for v in SERVICES["grafana"]["volumes"])
    dashboards = ROOT / mounts[path].removeprefix("./")
    found = sorted(dashboards.glob("*.json"))
    assert len(found) >= 2
    for file in found:
        board = json.loads(file.read_text())
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in uids, (file.name, panel["title"])
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])
