"""The command line as an operator or a script uses it."""
import json
import os
import subprocess
import sys

import pytest

COMMANDS = [[], ["broker"], ["worker"], ["mllp"], ["load"], ["load", "eligibility"], ["load", "providers"],
            ["load", "rif"], ["roster"], ["roster", "load"], ["subscriptions"],
            ["subscriptions", "add"], ["organizations"], ["organizations", "add"], ["organizations", "token"],
            ["organizations", "plan-level"], ["receiver"], ["generate"], ["demo"]]


def gapstream(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "gapstream")
def test_every_command_has_help(command):
    result = gapstream(*command, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout


def test_publishing_without_a_broker_fails_with_one_line(tmp_path):
    providers = tmp_path / "providers.csv"
    providers.write_text("npi,name,role\n1000000001,Dr A,PRIMARY_CARE_PHYSICIAN\n")
    env = {"GAPSTREAM_DATA_DIR": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": ""}
    result = gapstream("load", "providers", str(providers), env=env)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "no broker is running" in result.stderr


def test_a_worker_with_an_unusable_smtp_url_fails_with_one_line_before_starting(tmp_path):
    result = gapstream("worker", env={"GAPSTREAM_DATA_DIR": str(tmp_path), "GAPSTREAM_SMTP_URL": "mail.example:25"})
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "GAPSTREAM_SMTP_URL must be smtp://" in result.stderr
    assert not (tmp_path / "broker").exists() and not list(tmp_path.iterdir())  # nothing was started


def test_a_file_without_the_required_columns_is_refused(tmp_path):
    spans = tmp_path / "eligibility.csv"
    spans.write_text("member,plan\nM1,X\n")
    result = gapstream("load", "eligibility", str(spans), env={"GAPSTREAM_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0 and "header lacks" in result.stderr and "member_id" in result.stderr


def test_a_secret_must_be_in_standard_webhooks_form(tmp_path):
    result = gapstream("subscriptions", "add", "--organization", "O", "--url", "https://example.org/h",
                       "--secret", "hunter2", env={"GAPSTREAM_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0 and "whsec_" in result.stderr


def test_subscriptions_add_prints_the_new_id_and_secret(tmp_path):
    # A public address, so the check needs no DNS (there may be none where the tests run).
    result = gapstream("subscriptions", "add", "--organization", "O", "--url", "https://93.184.216.34/h",
                       env={"GAPSTREAM_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["id"].startswith("sub_") and printed["secret"].startswith("whsec_")


def test_a_loopback_url_needs_the_allow_list(tmp_path):
    args = ["subscriptions", "add", "--organization", "O", "--url", "http://127.0.0.1:9/h"]
    refused = gapstream(*args, env={"GAPSTREAM_DATA_DIR": str(tmp_path)})
    assert refused.returncode != 0 and "only https" in refused.stderr
    allowed = gapstream(*args, env={"GAPSTREAM_DATA_DIR": str(tmp_path),
                                    "GAPSTREAM_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"})
    assert allowed.returncode == 0, allowed.stderr


def test_an_organization_gets_a_token_once_and_the_plan_level_role_needs_a_reason(tmp_path):
    env = {"GAPSTREAM_DATA_DIR": str(tmp_path)}
    token = gapstream("organizations", "add", "ORG9", "--name", "Nine", env=env)
    assert token.returncode == 0 and token.stdout.startswith("gst_")
    assert token.stdout.strip() not in (tmp_path / "gapstream.db").read_bytes().decode(errors="ignore")
    assert gapstream("organizations", "add", "ORG9", "--name", "Nine", env=env).returncode != 0
    granted = gapstream("organizations", "plan-level", "ORG9", "--grant", "--by", "cmo", "--reason", "", env=env)
    assert granted.returncode != 0 and "reason" in granted.stderr


def test_generate_writes_a_population_and_feed(tmp_path):
    result = gapstream("generate", "--seed", "3", "--members", "200", "--out", str(tmp_path / "g"))
    assert result.returncode == 0
    assert {p.name for p in (tmp_path / "g").iterdir()} == {"organizations.csv", "members.csv", "eligibility.csv",
                                                            "providers.csv", "adt.hl7"}
    assert len((tmp_path / "g" / "members.csv").read_text().splitlines()) == 201


def test_broker_runs_in_the_foreground_and_prints_its_address(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "broker"], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "GAPSTREAM_DATA_DIR": str(tmp_path)})
    try:
        line = proc.stdout.readline()
        assert line.startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:")
        assert (tmp_path / "broker.json").exists()  # other commands find it there
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
    assert not (tmp_path / "broker.json").exists()
