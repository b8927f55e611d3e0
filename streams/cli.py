"""The `gapstream` command line. Settings come from the environment (see streams/config.py)."""
from __future__ import annotations

import asyncio
import csv
import json
import logging
import signal
import sys
import time
from pathlib import Path

import click

from sinks.sql.subscriptions import SubscriptionError
from sinks.webhooks.payloads import FORMATS
from streams import config, topics
from streams.kafka.broker import BrokerError

log = logging.getLogger("gapstream")


class Failure(click.ClickException):
    """Exits non-zero with a one-line reason."""


def _settings() -> config.Settings:
    return config.load()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
def main(verbose: bool) -> None:
    """gapstream: ADT alerts, attribution and care gaps, streamed between plans and providers."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM end the command through its cleanup code. Set explicitly because a
    process started in the background by a shell inherits SIGINT as ignored."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)


@main.command()
def broker() -> None:
    """Run the embedded Kafka-protocol broker in the foreground and print its bootstrap address."""
    from streams.kafka import broker as embedded

    _stop_on_signals()
    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        started = embedded.start_embedded(settings.data_dir / "broker.log")
    except BrokerError as exc:
        raise Failure(str(exc)) from exc
    interrupted = False
    try:
        embedded.publish_state(settings.data_dir, started)
        click.echo(f"KAFKA_BOOTSTRAP_SERVERS={started.bootstrap}")
        sys.stdout.flush()
        while started.process.poll() is None:
            time.sleep(0.2)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        started.stop()
        embedded.clear_state(settings.data_dir)
    if not interrupted:
        raise Failure(f"the broker exited with code {started.process.returncode}")


@main.command()
def worker() -> None:
    """Run the stream processors, the webhook dispatcher and the web server (/metrics, /health)."""
    from sinks.email import Mailer, MailError
    from streams.app import run_worker
    from streams.kafka.admin import ensure_topics
    from streams.runtime import bootstrap_servers

    settings = _settings()
    if settings.smtp_url:  # checked before anything starts: the sink process would fail on it later
        try:
            Mailer(settings.smtp_url, settings.email_from)
        except MailError as exc:
            raise Failure(str(exc)) from exc
    try:
        with bootstrap_servers(settings) as bootstrap:
            ensure_topics(bootstrap, topics.INGRESS_TOPICS, settings.topic_partitions)
            run_worker(settings, bootstrap)
    except BrokerError as exc:
        raise Failure(str(exc)) from exc


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=2575, show_default=True)
@click.option("--rate", type=float, default=None, help="Messages a second (default: as fast as ACKs come).")
def send(path: Path, host: str, port: int, rate: float | None) -> None:
    """Send the HL7 v2 messages of a file (one per line, segments separated by CR, as `generate`
    writes them) to an MLLP listener and count the ACK codes."""
    from streams.adt.mllp_client import send_messages

    # Bytes, not text: reading text would turn the segment separators (CR) into line ends.
    messages = [line for line in path.read_bytes().split(b"\n") if line.strip()]
    report = asyncio.run(send_messages(host, port, messages, rate_per_s=rate))
    counts = {code: report.acks.count(code) for code in sorted(set(report.acks))}
    click.echo(json.dumps({"sent": len(messages), "acks": counts, "seconds": round(report.seconds, 2)}))
    if set(counts) - {"AA"}:
        raise SystemExit(1)


@main.command()
@click.option("--host", default=None, help="Listen address (GAPSTREAM_MLLP_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (GAPSTREAM_MLLP_PORT, default 2575).")
def mllp(host: str | None, port: int | None) -> None:
    """Run the MLLP ingress: HL7 v2 in, adt.raw out, ACK after the broker stored each message."""
    from prometheus_client import start_http_server

    from streams.adt.mllp import MllpIngress
    from streams.kafka.admin import ensure_topics
    from streams.kafka.producer import AsyncProducer
    from streams.runtime import bootstrap_servers
    from streams.serialization.codec import codec_for

    settings = _settings()
    host, port = host or settings.mllp_host, port or settings.mllp_port

    async def serve(bootstrap: str) -> None:
        producer = AsyncProducer(bootstrap, settings.mllp_store_timeout_s)
        ingress = MllpIngress(producer, codec_for(settings.schema_registry_url), settings.mllp_store_timeout_s)
        server = await ingress.serve(host, port)
        click.echo(f"MLLP listening on {host}:{port}")
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            server.close()
            await server.wait_closed()
            producer.close()

    try:
        with bootstrap_servers(settings) as bootstrap:
            ensure_topics(bootstrap, topics.INGRESS_TOPICS, settings.topic_partitions)
            start_http_server(settings.mllp_metrics_port, addr=settings.mllp_host)
            asyncio.run(serve(bootstrap))
    except BrokerError as exc:
        raise Failure(str(exc)) from exc
    except OSError as exc:
        raise Failure(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


@main.group()
def load() -> None:
    """Publish files to the feed topics (a broker must be running, or KAFKA_BOOTSTRAP_SERVERS set)."""


def _publish(records: list, problems: list, extra: dict | None = None) -> None:
    from streams.kafka.admin import ensure_topics
    from streams.runtime import bootstrap_servers
    from streams.sources.publish import publish

    settings = _settings()
    try:
        with bootstrap_servers(settings, start_if_missing=False) as bootstrap:
            ensure_topics(bootstrap, topics.INGRESS_TOPICS, settings.topic_partitions)
            sent = asyncio.run(publish(bootstrap, records, settings.schema_registry_url))
    except BrokerError as exc:
        raise Failure(str(exc)) from exc
    for problem in problems:
        click.echo(f"{problem.file}:{problem.line}: {problem.reason}", err=True)
    click.echo(json.dumps({"published": sent, "problems": len(problems), **(extra or {})}))


def _load_csv(file: Path, model_name: str) -> None:
    from streams import models
    from streams.sources.csvfile import read

    try:
        records, problems = read(file, getattr(models, model_name))
    except ValueError as exc:
        raise Failure(str(exc)) from exc
    _publish(records, problems)


@load.command("eligibility")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def load_eligibility(file: Path) -> None:
    """Coverage spans from a CSV whose header names the EligibilitySpan fields."""
    _load_csv(file, "EligibilitySpan")


@load.command("providers")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def load_providers(file: Path) -> None:
    """Provider directory entries from a CSV whose header names the Provider fields."""
    _load_csv(file, "Provider")


@load.command("rif")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def load_rif(directory: Path) -> None:
    """CMS RIF claim, Part D and beneficiary files from DIRECTORY (providers derived from carrier lines)."""
    from streams.sources.rif import read_directory

    batch = read_directory(directory)
    records = [*batch.providers.values(), *batch.spans, *batch.claims, *batch.fills]
    _publish(records, batch.problems, {"rows": batch.rows, "claims": len(batch.claims), "fills": len(batch.fills),
                                       "spans": len(batch.spans), "providers": len(batch.providers),
                                       "icd9_codes_not_carried": batch.icd9_codes_not_carried})


@main.group()
def roster() -> None:
    """A plan's member-to-organization assignments, applied as accepted attribution decisions."""


@roster.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--by", "actor", required=True, help="Who at the plan assigns these members, for the audit log.")
@click.option("--reason", default=None, help="Recorded on each assignment (default: the file's name).")
@click.option("--effective-from", default=None, help="ISO date (default: today).")
@click.option("--expires-on", default=None, help="ISO date; none means until revoked.")
def roster_load(file: Path, actor: str, reason: str | None, effective_from: str | None,
                expires_on: str | None) -> None:
    """Assign members to organizations from a CSV with member_id,organization_id[,npi] columns.

    Each row is recorded as a dispute the plan raised and accepted, so it overrides the computed
    attribution, shows in the member's explanation and audit trail, and can be revoked."""
    from sinks.sql.store import open_store
    from streams.models import RosterEntry
    from streams.sources.csvfile import read

    try:
        entries, problems = read(file, RosterEntry)
        done = open_store(_settings()).attribution.assign(
            entries, f"cli:{actor}", reason or f"plan roster {file.name}", effective_from, expires_on)
    except ValueError as exc:  # a bad header or date; DisputeError is one too
        raise Failure(str(exc)) from exc
    for organization, rows in sorted(done.unknown_organizations.items()):
        click.echo(f"{file}: {rows} rows name {organization!r}, neither a registered organization nor one in "
                   f"the provider directory: not assigned", err=True)
    _publish(done.overrides, problems, {"already_assigned": done.already_assigned,
                                        "unknown_organization_rows": sum(done.unknown_organizations.values())})


@main.group()
def organizations() -> None:
    """Organizations, their API tokens and roles (operator commands; organizations use the HTTP API)."""


@organizations.command("add")
@click.argument("organization_id")
@click.option("--name", required=True)
@click.option("--by", "actor", default="operator", show_default=True, help="Who does this, for the audit log.")
def organizations_add(organization_id: str, name: str, actor: str) -> None:
    """Add an organization and print its first API token (shown this once)."""
    subs = _subscriptions()
    try:
        subs.add_organization(organization_id, name, f"cli:{actor}")
    except SubscriptionError as exc:
        raise Failure(str(exc)) from exc
    click.echo(subs.issue_token(organization_id, "first token", f"cli:{actor}"))


@organizations.command("token")
@click.argument("organization_id")
@click.option("--label", default="issued by an operator", show_default=True)
@click.option("--revoke-others", is_flag=True, help="Revoke the organization's other tokens first.")
@click.option("--by", "actor", default="operator", show_default=True)
def organizations_token(organization_id: str, label: str, revoke_others: bool, actor: str) -> None:
    """Issue a new API token for an organization (shown this once)."""
    subs = _subscriptions()
    try:
        if revoke_others:
            subs.revoke_tokens(organization_id, f"cli:{actor}")
        click.echo(subs.issue_token(organization_id, label, f"cli:{actor}"))
    except SubscriptionError as exc:
        raise Failure(str(exc)) from exc


@organizations.command("email")
@click.argument("organization_id")
@click.argument("address", required=False)
@click.option("--none", "clear", is_flag=True, help="Send the organization no e-mail.")
@click.option("--by", "actor", default="operator", show_default=True, help="Who does this, for the audit log.")
def organizations_email(organization_id: str, address: str | None, clear: bool, actor: str) -> None:
    """Set where the organization is told by e-mail that one of its endpoints was disabled (sent
    through GAPSTREAM_SMTP_URL; notices wait queued until it is set)."""
    if bool(address) == clear:
        raise Failure("give either an ADDRESS or --none")
    try:
        _subscriptions().set_notice_email(organization_id, None if clear else address, f"cli:{actor}")
    except SubscriptionError as exc:
        raise Failure(str(exc)) from exc


@organizations.command("plan-level")
@click.argument("organization_id")
@click.option("--grant/--revoke", required=True, help="Grant or revoke the role that sees every plan member.")
@click.option("--by", "actor", required=True, help="Who decides, for the audit log.")
@click.option("--reason", required=True)
def organizations_plan_level(organization_id: str, grant: bool, actor: str, reason: str) -> None:
    """Grant or revoke the plan-level role (care management over all plan members); audited."""
    try:
        _subscriptions().set_plan_level(organization_id, grant, f"cli:{actor}", reason)
    except SubscriptionError as exc:
        raise Failure(str(exc)) from exc


def _subscriptions():
    from sinks.sql.store import open_store

    return open_store(_settings()).subscriptions


@main.group()
def subscriptions() -> None:
    """Webhook endpoints of organizations."""


@subscriptions.command("add")
@click.option("--organization", required=True, help="Organization id, as in the provider directory; created if new.")
@click.option("--url", required=True, help="Endpoint that receives signed events (https, or an allow-listed host).")
@click.option("--secret", default=None, help="Signing secret, whsec_ followed by base64; generated if not given.")
@click.option("--events", default="*", show_default=True,
              help="Event types to receive, comma-separated; patterns such as adt.* or gap.* allowed.")
@click.option("--format", "payload_format", default="json-full", show_default=True,
              type=click.Choice(FORMATS))
def subscriptions_add(organization: str, url: str, secret: str | None, events: str, payload_format: str) -> None:
    """Register a webhook endpoint for an organization; prints its id and secret as JSON."""
    from sinks.sql.subscriptions import NotFound, Spec
    from sinks.webhooks.signing import is_secret

    if secret is not None and not is_secret(secret):
        raise Failure("the secret must be whsec_ followed by base64 of at least 24 bytes (Standard Webhooks)")
    subs = _subscriptions()
    try:
        try:
            subs.organization(organization)
        except NotFound:
            subs.add_organization(organization, organization, "cli:operator")
        spec = Spec(url=url, event_types=tuple(e.strip() for e in events.split(",") if e.strip()),
                    payload_format=payload_format)
        described, secret = subs.create(organization, spec, "cli:operator", secret)
    except SubscriptionError as exc:
        raise Failure(str(exc)) from exc
    click.echo(json.dumps({"id": described["id"], "secret": secret}))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8088, show_default=True)
@click.option("--secret", required=True, help="The whsec_ secret the subscription was registered with.")
def receiver(host: str, port: int, secret: str) -> None:
    """Receive signed webhooks, verify them and print one JSON line per accepted alert."""
    from streams.tools.receiver import run

    try:
        run(host, port, secret)
    except OSError as exc:
        raise Failure(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


@main.command()
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--members", type=int, default=1000, show_default=True)
@click.option("--visits", type=int, default=None, help="Encounters in the ADT feed (default members/5).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("var/generated"),
              show_default=True)
def generate(seed: int, members: int, visits: int | None, out: Path) -> None:
    """Write a synthetic population (organizations, members, eligibility, providers) and its ADT feed to OUT."""
    from streams.tools.generate import adt_feed, eligibility, population, providers

    pop = population(seed, members)
    feed = adt_feed(pop, seed, visits if visits is not None else max(1, members // 5))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "organizations.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["organization_id", "name", "tin", "pcp_npis"])
        for o in pop.organizations:
            w.writerow([o.organization_id, o.name, o.tin, " ".join(o.pcp_npis)])
    with open(out / "members.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["member_id", "family_name", "given_name", "birth_date", "sex", "organization_id", "pcp_npi"])
        for m in pop.members:
            w.writerow([m.member_id, m.family_name, m.given_name, m.birth_date.isoformat(), m.sex,
                        m.organization_id or "", m.pcp_npi or ""])
    _write_records(out / "eligibility.csv", eligibility(pop))
    _write_records(out / "providers.csv", providers(pop))
    # One message per line; segments inside a message are separated by carriage returns.
    (out / "adt.hl7").write_text("\n".join(feed) + "\n")
    click.echo(json.dumps({"out": str(out), "organizations": len(pop.organizations), "members": len(pop.members),
                           "adt_messages": len(feed)}))


@main.group()
def bench() -> None:
    """Benchmarks on the embedded broker, each next to the raw client rate of the same run."""


@bench.command("attribution")
@click.option("--members", type=int, default=100_000, show_default=True)
@click.option("--lines", type=int, default=1_000_000, show_default=True, help="Claim lines in all.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--processes", type=int, default=None,
              help="GAPSTREAM_ATTRIBUTION_PROCESSES of the worker under test (default: the worker's).")
def bench_attribution(members: int, lines: int, seed: int, processes: int | None) -> None:
    """Claim lines through decoding, corrections and attribution on one worker."""
    from streams.bench.attribution import run

    _stop_on_signals()
    _print_result(run(members, lines, seed, processes))


@bench.command("gaps")
@click.option("--members", type=int, default=100_000, show_default=True)
@click.option("--lines", type=int, default=1_000_000, show_default=True, help="Claim lines in all.")
@click.option("--fills", type=int, default=300_000, show_default=True)
@click.option("--ed-visits", type=int, default=5_000, show_default=True)
@click.option("--closing", type=int, default=500, show_default=True, help="Follow-up claims sent live.")
@click.option("--rate", type=float, default=50.0, show_default=True, help="Follow-up claims a second.")
@click.option("--seed", type=int, default=1, show_default=True)
def bench_gaps(members: int, lines: int, fills: int, ed_visits: int, closing: int, rate: float, seed: int) -> None:
    """Claims, fills and ED visits through care-gap evaluation on one worker; gap.closed latency."""
    from streams.bench.gaps import run

    _stop_on_signals()
    _print_result(run(members, lines, fills, ed_visits, closing, rate, seed))


@bench.command("pipeline")
@click.option("--members", type=int, default=100_000, show_default=True)
@click.option("--lines", type=int, default=1_000_000, show_default=True, help="Claim lines in all.")
@click.option("--fills", type=int, default=300_000, show_default=True)
@click.option("--adt", type=int, default=50_000, show_default=True, help="ADT messages sent over MLLP.")
@click.option("--ed-visits", type=int, default=5_000, show_default=True, help="ED visits among them, about.")
@click.option("--adt-rate", type=float, default=100.0, show_default=True, help="ADT messages a second.")
@click.option("--seed", type=int, default=1, show_default=True)
def bench_pipeline(members: int, lines: int, fills: int, adt: int, ed_visits: int, adt_rate: float,
                   seed: int) -> None:
    """The whole pipeline: a claims and fills backlog drained while ADT streams over MLLP and ED alerts
    go out as webhooks; rates per stage, ED latency, peak memory, the raw consume ceiling."""
    from streams.bench.pipeline import run

    _stop_on_signals()
    _print_result(run(members, lines, fills, adt, ed_visits, adt_rate, seed))


@bench.command("delivery")
@click.option("--backlog", type=int, default=2_500, show_default=True, help="Alerts queued before the drain.")
@click.option("--rate", type=float, default=50.0, show_default=True,
              help="Alerts a second while paced (each goes to 4 subscriptions).")
@click.option("--seconds", type=float, default=40.0, show_default=True,
              help="How long the paced phase runs, per condition.")
@click.option("--rounds", type=int, default=8, show_default=True,
              help="Turns the two conditions take in the paced phase.")
@click.option("--unhealthy", type=float, default=0.2, show_default=True, help="Share of failing or hanging endpoints.")
@click.option("--concurrency", type=int, default=4, show_default=True, help="Requests in flight per endpoint.")
@click.option("--timeout", "timeout_s", type=float, default=15.0, show_default=True)
@click.option("--dispatchers", type=int, default=config.Settings.webhook_dispatchers, show_default=True,
              help="Dispatcher processes, as GAPSTREAM_WEBHOOK_DISPATCHERS.")
def bench_delivery(backlog: int, rate: float, seconds: float, rounds: int, unhealthy: float, concurrency: int,
                   timeout_s: float, dispatchers: int) -> None:
    """Webhook delivery to 200 subscriptions over 50 loopback endpoints, all healthy and with some
    failing or hanging, side by side."""
    from streams.bench.delivery import run

    _stop_on_signals()
    result = run(backlog, rate, seconds, unhealthy, concurrency, timeout_s, rounds, dispatchers)
    detail = result.pop("detail")
    _print_result(result)
    click.echo(json.dumps(detail))


def _print_result(result: dict) -> None:
    for key, value in result.items():
        click.echo(f"{key:<34} {value}")
    click.echo(json.dumps(result))


def _write_records(path: Path, records: list) -> None:
    """A CSV whose header names the message fields, the layout `gapstream load` reads."""
    rows = [r.to_record() for r in records]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "received_at_ms"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


@main.command()
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds to stream the feed for.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--members", type=int, default=2000, show_default=True)
@click.option("--rate", type=float, default=25.0, show_default=True,
              help="ADT messages per second; 0 sends as fast as the ingress answers.")
def demo(duration: float, seed: int, members: int, rate: float) -> None:
    """Start everything, stream a generated ADT feed over MLLP and show alerts arriving live."""
    from streams.tools.demo import run_demo

    _stop_on_signals()

    try:
        summary = run_demo(_settings(), duration=duration, seed=seed, members=members, rate=rate)
    except BrokerError as exc:
        raise Failure(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo("\ninterrupted; everything stopped")
        return
    if summary.get("error"):
        raise Failure(summary["error"])


if __name__ == "__main__":
    main()
