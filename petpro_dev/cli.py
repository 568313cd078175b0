"""``petpro``: the developer's command line for the local mesh.

    petpro up [NAME ...] [--infra] [--timeout S]   start (only what is not running) and wait until healthy
    petpro down [--purge]                          stop what `up` started; --purge also deletes data/ and mail/
    petpro status                                  table of components; exit 0 if all are up, 3 otherwise
    petpro logs NAME [-n N] [-f]                   a component's log (.petpro/logs/NAME.log)
    petpro mail [--show N]                         messages caught by the SMTP sink
    petpro migrate                                 apply every service's migrations
    petpro seed [FILE]                             load catalog data (default: the bundled demo clinics)
    petpro demo                                    the booking flow against the running stack, with timings
    petpro dlq [list | replay [P:OFFSET ...]]      dead-lettered notification events; replay them
    petpro refunds                                 cancelled bookings whose refund has not succeeded yet
    petpro traces [TRACE_ID] [-n N]                recent traces of the stack, or one as a tree
    petpro env                                     the environment a client needs (export lines)
    petpro admin create-platform-admin --email E   the first platform admin (password: PETPRO_ADMIN_PASSWORD)
    petpro admin create-clinic --name N --time-zone TZ --admin-email E [--hours mon-fri=09:00-17:00 ...]
                                                   a clinic and the invitation of its first admin, over the API

Configuration: PETPRO_HOME (default .petpro), PETPRO_PORT_BASE (default 7400), PETPRO_<NAME>_PORT,
and DATABASE_URL / REDIS_URL / KAFKA_BOOTSTRAP_SERVERS / SMTP_URL to use a server of your own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from petpro.mesh import BOOKING_CREATED
from petpro.settings import BackingSettings, StackSettings, load
from petpro_dev.devstack.stack import Stack, StackError, StepResult

EXIT_FAILED = 1
EXIT_NOT_ALL_UP = 3
EXIT_INTERRUPTED = 130

UP_STATES = {"started": "running", "already running": "running", "external": "external"}


def render_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _stack(progress: bool = False) -> Stack:
    return Stack(
        load(StackSettings), backing=load(BackingSettings), progress=_print_progress if progress else None
    )


def _print_progress(result: StepResult) -> None:
    text = result.state
    if result.state in ("started", "done", "failed"):
        text += f" in {result.seconds:.1f}s"
    if result.detail:
        text += f": {result.detail}" if result.state == "failed" else f" ({result.detail})"
    print(f"  {result.name:<9} {result.address or '-':<46} {text}", flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    from petpro_dev.devstack.components import infra

    stack = _stack(progress=True)
    only = list(args.names) or ([c.name for c in infra()] if args.infra else None)
    print(f"petpro up: home {stack.ctx.home}, port base {stack.settings.port_base}", flush=True)
    try:
        report = stack.up(only, timeout=args.timeout)
    except StackError as exc:
        print(f"\n{exc}\n\npetpro up failed; `petpro down` stops what was started", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted; `petpro down` stops what was started", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyError as exc:
        print(f"petpro up: {exc.args[0]}", file=sys.stderr)
        return EXIT_FAILED
    rows = [("NAME", "ADDRESS", "PID", "STATE")]
    for r in report.results:
        if r.name in stack.names():
            rows.append((r.name, r.address, str(r.pid or "-"), UP_STATES.get(r.state, r.state)))
    print()
    print(render_table(rows))
    print(f"\nall healthy in {report.seconds:.1f}s", flush=True)
    names = {r.name for r in report.results}
    if "envoy" in names:
        s = stack.settings
        api = f"http://{s.host}:{s.port('envoy')}"
        print(f"\n  REST API        {api}   (docs {api}/docs, OpenAPI {api}/openapi.json)")
        print(f"  clinic feed     grpc://{s.addr('notif')}   (petpro.notification.v1.ClinicFeedService)")
        print(f"  Stripe sandbox  http://{s.host}:{s.port('stripe')}")
        print(f"  mail            `petpro mail` (SMTP sink on {s.addr('smtp')})")
        print("\n  demo data: `petpro seed`; a walkthrough: README, 'The booking flow with curl'", flush=True)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stack = _stack()
    started = time.monotonic()
    results = stack.down(purge=args.purge)
    for r in results:
        if r.state == "not running" and not r.detail:
            continue
        extra = f" (pid {r.pid}, {r.seconds:.1f}s)" if r.pid else ""
        detail = f" ({r.detail})" if r.detail else ""
        print(f"  {r.name:<9} {r.state}{extra}{detail}")
    stopped = sum(r.state in ("stopped", "killed") for r in results)
    print(f"stopped {stopped} process(es) in {time.monotonic() - started:.1f}s")
    if args.purge:
        print(f"deleted {stack.ctx.data_root} and {stack.ctx.mail_dir}")
    return EXIT_FAILED if any(r.state == "failed" for r in results) else 0


def cmd_status(args: argparse.Namespace) -> int:
    stack = _stack()
    statuses = stack.status()
    rows = [("NAME", "ADDRESS", "PID", "STATE")]
    for s in statuses:
        state = s.state + (f" ({s.detail})" if s.detail else "")
        rows.append((s.name, s.address, str(s.pid or "-"), state))
    print(render_table(rows))
    return 0 if all(s.ok for s in statuses) else EXIT_NOT_ALL_UP


def cmd_logs(args: argparse.Namespace) -> int:
    from petpro_dev.devstack import process

    stack = _stack()
    path = stack.log_path(args.name)
    if not path.exists():
        known = sorted(p.stem for p in stack.ctx.log_dir.glob("*.log"))
        print(f"no log for {args.name!r} at {path}; logs: {', '.join(known) or 'none yet'}", file=sys.stderr)
        return EXIT_FAILED
    for line in process.tail(path, args.lines):
        print(line)
    if args.follow:
        try:
            for line in process.follow(path):
                print(line, flush=True)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_mail(args: argparse.Namespace) -> int:
    from petpro_dev.devstack.mail import list_messages

    stack = _stack()
    if stack.ctx.explicit_url("smtp_url"):
        print(f"note: SMTP_URL is set ({stack.ctx.url('smtp_url')}); showing the embedded sink's mailbox")
    messages = list_messages(stack.ctx.mail_dir)
    if args.show is not None:
        if not 1 <= args.show <= len(messages):
            print(f"no message #{args.show} ({len(messages)} in {stack.ctx.mail_dir})", file=sys.stderr)
            return EXIT_FAILED
        msg = messages[args.show - 1].message
        for key, value in msg.items():  # headers decoded (RFC 2047)
            print(f"{key}: {value}")
        print()
        body = msg.get_body(preferencelist=("plain", "html"))
        print(body.get_content() if body is not None else msg.get_payload())
        return 0
    if not messages:
        print(f"no mail in {stack.ctx.mail_dir}")
        return 0
    rows = [("#", "DATE", "FROM", "TO", "SUBJECT")]
    for n, m in enumerate(messages, 1):
        rows.append((str(n), m.received.strftime("%Y-%m-%d %H:%M:%S"), m.from_, m.to, m.subject))
    print(render_table(rows))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    # the embedded database unless the user set their own (the rest of the stack's environment is not
    # needed: making it read the sandboxes' keys and secrets, ~0.3 s of CPU in ``petpro up``'s step)
    os.environ["DATABASE_URL"] = _stack().ctx.url("database_url")
    from petpro.migrations import migrate_all

    print(f"migrated: {', '.join(migrate_all())}")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    """Load catalog data (clinics, services, staff accounts) from a YAML file; idempotent."""
    from petpro_dev.seed import DEMO, SeedFailed, seed

    path = Path(args.file) if args.file else DEMO
    try:
        lines = seed(path, {**os.environ, **_stack().env()})
    except SeedFailed as exc:
        print(f"petpro seed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"seeded from {path}: " + "; ".join(lines))
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    """List the notification dead letters, or replay them to booking.created."""
    from petpro.events import dead_letters, replay_dead_letters

    stack = _stack()
    bootstrap = stack.env()["KAFKA_BOOTSTRAP_SERVERS"]
    if args.action == "replay":
        wanted = set(args.letters)
        n = replay_dead_letters(
            bootstrap,
            args.dlq_topic,
            args.topic,
            lambda d: not wanted or f"{d['partition']}:{d['offset']}" in wanted,
        )
        print(f"replayed {n} dead letter(s) from {args.dlq_topic} to {args.topic}")
        return 0
    letters = dead_letters(bootstrap, args.dlq_topic)
    if not letters:
        print(f"{args.dlq_topic} is empty")
        return 0
    rows = [("PART", "OFFSET", "KEY", "ERROR", "SOURCE")]
    rows += [
        (
            str(d["partition"]),
            str(d["offset"]),
            str(d["key"])[:36],
            f"{d['error_type']}: {str(d['error'])[:70]}",
            str(d["source"]),
        )
        for d in letters
    ]
    print(render_table(rows))
    return 0


def cmd_refunds(args: argparse.Namespace) -> int:
    """Refunds owed and not settled yet (pending a retry, processing at the provider, or failed there)."""
    import grpc

    from petpro_api.booking.v1 import booking_pb2, booking_pb2_grpc

    stack = _stack()

    async def fetch() -> list[booking_pb2.Booking]:
        async with grpc.aio.insecure_channel(stack.ctx.settings.addr("booking")) as ch:
            r = await booking_pb2_grpc.BookingServiceStub(ch).ListPendingRefunds(
                booking_pb2.ListPendingRefundsRequest(page_size=100), timeout=10
            )
            return list(r.bookings)

    rows = asyncio.run(fetch())
    if not rows:
        print("no pending refunds")
        return 0
    table = [("BOOKING", "CANCELLED", "BY", "AMOUNT", "STATE", "PROVIDER REFUND")]
    table += [
        (
            b.booking_id,
            b.cancel_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
            booking_pb2.BookingActor.Name(b.cancelled_by).removeprefix("BOOKING_ACTOR_"),
            f"{b.refund.amount.amount_minor / 100:.2f} {b.refund.amount.currency}",
            booking_pb2.RefundState.Name(b.refund.state).removeprefix("REFUND_STATE_"),
            b.refund.provider_refund_id or "-",
        )
        for b in rows
    ]
    print(render_table(table))
    return 0


def cmd_traces(args: argparse.Namespace) -> int:
    from petpro_dev.devstack import traces

    stack = _stack()
    directory = Path(os.environ.get("PETPRO_TRACES_DIR") or stack.ctx.home / "traces")
    found = traces.by_trace(traces.load_spans(directory))
    if not found:
        print(f"no spans in {directory} yet (the stack's services write them there)")
        return 0
    if args.trace_id:
        matches = [t for t in found if t.startswith(args.trace_id.lower())]
        if len(matches) != 1:
            print(
                f"{'no' if not matches else 'more than one'} trace matches {args.trace_id!r}", file=sys.stderr
            )
            return EXIT_FAILED
        print(f"trace {matches[0]}")
        print(traces.render_tree(found[matches[0]]))
        return 0
    rows = [
        ("TRACE", "START", "ROOT", "SERVICES", "SPANS", "DURATION"),
        *traces.summary_rows(found, args.lines),
    ]
    print(render_table(rows))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from petpro_dev.demo import run

    asyncio.run(run(_stack().settings))
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    for key, value in _stack().env().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def _admin_password() -> str:
    import getpass

    return os.environ.get("PETPRO_ADMIN_PASSWORD") or getpass.getpass("platform admin password: ")


def cmd_admin(args: argparse.Namespace) -> int:
    """Clinic onboarding: through auth_svc's entry point and the REST API, never the services' code."""
    from petpro_dev.admin import DEFAULT_HOURS, AdminFailed, create_clinic, create_platform_admin, parse_hours

    if args.action == "create-clinic" and not (args.name and args.time_zone and args.admin_email):
        print(
            "petpro admin create-clinic: --name, --time-zone and --admin-email are required", file=sys.stderr
        )
        return EXIT_FAILED
    stack = _stack()
    password = _admin_password()
    try:
        line = create_platform_admin(args.platform_email, password, {**os.environ, **stack.env()})
        if args.action == "create-platform-admin":
            print(line)
            return 0
        clinic = {
            "name": args.name,
            "time_zone": args.time_zone,
            "address": args.address,
            "phone": args.phone,
            "email": args.clinic_email,
            "opening_hours": parse_hours(args.hours or DEFAULT_HOURS),
        }
        api = f"http://{stack.settings.host}:{stack.settings.port('envoy')}"
        done = create_clinic(api, args.platform_email, password, clinic, args.admin_email)
    except AdminFailed as exc:
        print(f"petpro admin: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"clinic {done.clinic['name']!r} created: clinic_id {done.clinic['clinic_id']}")
    print(f"invitation for {done.invitation['email']} (clinic admin) sent; `petpro mail` shows it")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petpro", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("up", help="start the stack and wait until it is healthy")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these components (and what they need)")
    p.add_argument("--infra", action="store_true", help="only the backing services")
    p.add_argument("--timeout", type=float, default=None, help="seconds each component may take to be ready")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop what `up` started")
    p.add_argument("--purge", action="store_true", help="also delete data/ and mail/ under PETPRO_HOME")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="state of every component (exit 3 unless all are up)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("logs", help="show a component's log")
    p.add_argument("name")
    p.add_argument("-n", "--lines", type=int, default=50)
    p.add_argument("-f", "--follow", action="store_true")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("mail", help="list the mail caught by the SMTP sink")
    p.add_argument("--show", type=int, metavar="N", help="print message N in full")
    p.set_defaults(func=cmd_mail)

    p = sub.add_parser("migrate", help="apply every service's database migrations")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("seed", help="load demo catalog data (clinics, services, staff) from a YAML file")
    p.add_argument("file", nargs="?", help="YAML file (default: the bundled demo clinic)")
    p.set_defaults(func=cmd_seed)
    p = sub.add_parser("dlq", help="list the notification dead letters, or replay them")
    p.add_argument("action", nargs="?", choices=("list", "replay"), default="list")
    p.add_argument("letters", nargs="*", metavar="PARTITION:OFFSET", help="replay only these (default: all)")
    p.add_argument("--dlq-topic", default=BOOKING_CREATED.dlq)
    p.add_argument("--topic", default=BOOKING_CREATED.name)
    p.set_defaults(func=cmd_dlq)
    p = sub.add_parser("refunds", help="cancelled bookings whose refund has not succeeded yet")
    p.set_defaults(func=cmd_refunds)
    p = sub.add_parser("traces", help="recent traces of the stack's services, or one trace as a tree")
    p.add_argument("trace_id", nargs="?", help="a trace id (or a unique prefix) to print as a tree")
    p.add_argument("-n", "--lines", type=int, default=20, help="how many recent traces to list")
    p.set_defaults(func=cmd_traces)
    p = sub.add_parser("demo", help="run the booking flow against the running stack, step by step")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("admin", help="clinic onboarding: platform admin, a new clinic and its first admin")
    p.add_argument("action", choices=("create-platform-admin", "create-clinic"))
    p.add_argument(
        "--email",
        "--platform-email",
        dest="platform_email",
        default="admin@petpro.local",
        help="the platform admin's login (created or reset; password from PETPRO_ADMIN_PASSWORD)",
    )
    p.add_argument("--name", help="create-clinic: clinic name")
    p.add_argument("--time-zone", help="create-clinic: IANA time zone, e.g. Europe/Berlin")
    p.add_argument(
        "--admin-email", help="create-clinic: who becomes the clinic's first admin (invited by email)"
    )
    p.add_argument(
        "--hours", action="append", help="create-clinic: e.g. mon-fri=08:00-12:00,13:00-18:00 (repeatable)"
    )
    p.add_argument("--address", default="")
    p.add_argument("--phone", default="")
    p.add_argument("--clinic-email", default="")
    p.set_defaults(func=cmd_admin)
    p = sub.add_parser("env", help="print the environment a client of the stack needs")
    p.set_defaults(func=cmd_env)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))
