"""``cxstream`` command line: up, status, query, dashboard, demo, backtest, and the worker, collector and deliver processes."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Literal, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from pipeline.settings import Settings, SettingsError

__all__ = ["main", "cli"]

T = TypeVar("T")

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="Real-time customer-experience pipeline.")
console = Console()


def _say_error(message: str) -> None:
    """An expected error, in red on stderr (stdout may be a query's CSV going to a file): its text as
    given (no markup), one line however narrow the console."""
    Console(stderr=True).print(Text(message, style="red"), soft_wrap=True)


def _say_on_stderr(line: str, json_logs: bool) -> None:
    """A process's one line about why it stops: a log record with ``CX_LOG_FORMAT=json``, else ``_say_error``."""
    if json_logs:
        import logging

        logging.getLogger("cxstream").error(line)
    else:
        _say_error(line)


def load_settings(component: str | None = None) -> Settings:
    """The settings; with ``component``, this process's logs are set up too (``CX_LOG_FORMAT``)."""
    try:
        settings = Settings.load()
    except SettingsError as exc:
        _say_error(str(exc))
        raise typer.Exit(2) from None
    if component is not None:
        from pipeline.logs import configure

        configure(settings.log_format, component)
    return settings


def _require_salt(settings: Settings) -> None:
    try:
        settings.require_pii_salt()
    except SettingsError as exc:
        _say_error(str(exc))
        raise typer.Exit(2) from None


def _require_bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        _say_error("CX_KAFKA_BOOTSTRAP: needed here (cxstream up starts the embedded broker)")
        raise typer.Exit(2)
    return settings.kafka_bootstrap


def _require_destinations(settings: Settings, who: str) -> list:
    from pipeline.deliver.config import ConfigError, load_destinations

    try:
        return load_destinations(settings)
    except ConfigError as exc:
        _say_error(f"{who}: {exc}")
        raise typer.Exit(2) from None


def _require_broker(settings: Settings, command: str) -> str:
    """The bootstrap address, once a broker there answered; else one line and exit 69 (EX_UNAVAILABLE).

    Settings the Kafka client refuses (a CA file that cannot be read, SASL
    without a user) are one line and exit 2, as other configuration errors.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from pipeline.exitcodes import EXIT_UNAVAILABLE
    from pipeline.wire.topics import kafka_reason

    def fail(message: str, code: int) -> typer.Exit:
        _say_on_stderr(message, settings.log_format == "json")
        return typer.Exit(code)

    bootstrap = _require_bootstrap(settings)
    try:  # librdkafka checks the CX_KAFKA_SECURITY_* settings (files, names) when the client is made
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **settings.kafka_client_config()})
    except KafkaException as exc:
        raise fail(f"cxstream {command}: the Kafka client refused its settings ({kafka_reason(exc)}); "
                   "check the CX_KAFKA_SECURITY_* settings", 2) from None
    try:
        admin.list_topics(timeout=settings.kafka_check_timeout_s)
    except KafkaException as exc:
        raise fail(
            f"cxstream {command}: no Kafka broker answered at {bootstrap} within {settings.kafka_check_timeout_s:g} s "
            f"({kafka_reason(exc)}); check CX_KAFKA_BOOTSTRAP and the CX_KAFKA_SECURITY_* settings",
            EXIT_UNAVAILABLE,
        ) from None
    return bootstrap


def _require_free_port(host: str, port: int, what: str) -> None:
    """Raise OSError naming ``what`` unless a server could listen on ``host:port`` now (0: any port, not checked).

    Checked before a process starts its servers, so that a port taken or an
    address that does not resolve is one line (``main``) instead of an
    asyncio or Faust stack trace, repeated by every process that tries.
    """
    import socket

    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            probe.bind(address)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {host}:{port} ({what}): {exc.strerror or exc}") from None


def _require_resolvable(settings: Settings) -> None:
    """Raise OSError naming the setting unless each address ``up`` listens on resolves.

    Otherwise the child that listens there exits at once, again at each
    restart, until ``up`` gives up the restart budget later.
    """
    import socket

    for variable, host in (
        ("CX_COLLECTOR_HOST", settings.collector_host),
        ("CX_COLLECTOR_METRICS_HOST", settings.collector_metrics_host),
        ("CX_WORKER_WEB_BIND", settings.worker_web_bind),
        ("CX_DASHBOARD_BIND", settings.dashboard_bind),
    ):
        try:
            socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise OSError(exc.errno, f"{variable} {host}: {exc.strerror or exc}") from None


def _shown_url(url: str, settings: Settings) -> str:
    """The dashboard's URL as printed: with its token on a terminal; in a log or a pipe, where the token is."""
    if sys.stdout.isatty():
        return url
    token_file = (settings.data_dir / "worker.token").resolve()
    return f"{url.split('?', 1)[0]}  (open it once with ?token=<the token in {token_file}>)"


@cli.command()
def up() -> None:
    """Run the pipeline in the foreground until SIGINT, SIGTERM or SIGHUP; restart what exits (docs/supervision.md)."""
    from pipeline.exitcodes import EXIT_DATA_DIR_IN_USE, EXIT_GAVE_UP, EXIT_PORT_TAKEN
    from pipeline.supervisor.runner import DataDirInUse, Pipeline, PortTaken, SupervisionError

    settings = load_settings("up")
    _require_salt(settings)
    if settings.delivery_enabled:
        _require_destinations(settings, "cxstream up")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    if settings.log_format == "json":  # every line a JSON object: the notes are log records
        import logging

        up_log = logging.getLogger("cxstream.up")
        say = lambda text: up_log.info(text)  # noqa: E731
        fail = lambda text: up_log.error(text)  # noqa: E731
    else:
        say = lambda text: console.print(text, soft_wrap=True, highlight=False, markup=False)  # noqa: E731
        fail = _say_error
    _require_resolvable(settings)
    if not settings.embedded_kafka:  # your own Kafka: one line if it does not answer, before anything starts
        _require_broker(settings, "up")
    pipeline = Pipeline(settings, dashboard=settings.dashboard_enabled, on_note=say)
    code = 0
    try:
        pipeline.start()
        say(f"collector   {pipeline.collector_url}")
        collectors = ", ".join(f"{url}/metrics" for url in pipeline.collector_metrics_urls)
        say(f"metrics     {collectors} (collector{' processes' if len(pipeline.collector_metrics_urls) > 1 else ''}), "
            f"http://{pipeline.worker_host}:{pipeline.worker_port}/metrics (worker, with the token)")
        say(f"kafka       {pipeline.bootstrap}" + ("  (embedded, memory only)" if pipeline.broker else ""))
        say(f"clickhouse  {settings.resolved_clickhouse_url}")
        if pipeline.dashboard_url:
            say(f"dashboard   {_shown_url(pipeline.dashboard_url, settings)}")
        say("write keys  " + ", ".join(f"{k} -> {t}" for k, t in settings.write_key_map.items()))
        if settings.delivery_enabled:
            say(f"deliver     {settings.topic_triggers} -> webhooks of {settings.delivery_config}")
        say("Ctrl-C stops everything cleanly.")
        while not stop.wait(1.0):
            pipeline.supervise()  # children are (re)started from this, the main thread: they die with it
        say("stopping: collector, then worker once drained, then deliver, then broker")
    except DataDirInUse as exc:
        fail(f"cxstream up: {exc}")
        code = EXIT_DATA_DIR_IN_USE
    except SupervisionError as exc:
        fail(f"cxstream up: stopping: {exc}")
        code = EXIT_GAVE_UP
    except PortTaken as exc:
        fail(f"cxstream up: {exc}")
        code = EXIT_PORT_TAKEN
    finally:
        pipeline.stop()
    raise typer.Exit(code)


@cli.command()
def dashboard(
    port: int | None = typer.Option(None, min=0, max=65535, help="port to listen on (default CX_DASHBOARD_PORT; 0: a free one)"),
) -> None:
    """Serve the analysts' live dashboard (docs/dashboard.md); prints its URL with the data dir's token."""
    import asyncio

    from pipeline.dashboard.server import run_dashboard
    from pipeline.webtoken import ensure_token

    settings = load_settings("dashboard")
    ensure_token(settings.data_dir)  # the running pipeline's, or one for a dashboard on a ClickHouse server
    chosen = settings.dashboard_port if port is None else port
    json_logs = settings.log_format == "json"

    def ready(url: str) -> None:
        line = f"dashboard   {_shown_url(url, settings)}"
        if json_logs:
            import logging

            logging.getLogger("cxstream.dashboard").info(line)
        else:
            console.print(line, soft_wrap=True, highlight=False)

    try:  # a port taken or an address that does not resolve: one line from ``main``
        asyncio.run(run_dashboard(settings, chosen, on_ready=ready))
    except KeyboardInterrupt:
        pass


@cli.command()
def worker() -> None:
    """Run one Faust worker process (``cxstream up`` starts one for you)."""
    from pipeline.runtime.faust_adapter import run_worker
    from pipeline.runtime.worker import build_worker, tune_gc

    from pipeline.logs import dict_config

    settings = load_settings("worker")
    _require_salt(settings)  # it scrubs other producers' records before they become dead letters
    _require_free_port(settings.worker_web_bind, settings.worker_web_port, "CX_WORKER_WEB_BIND:CX_WORKER_WEB_PORT")
    w = build_worker(settings, _require_broker(settings, "worker"))
    tune_gc()
    # Faust (mode) replaces the root logger's handlers: JSON lines need its own config,
    # and neither its start-up spinner nor its console messages (not JSON) are written.
    json_logs = settings.log_format == "json"

    try:
        run_worker(w.app, loglevel="warning", logging_config=dict_config("worker") if json_logs else None, quiet=json_logs)
    finally:
        # Close ClickHouse before the interpreter exits: an embedded chdb
        # session torn down by interpreter finalization can crash the process.
        w.ch.close()
        w.lookups.close()
        if w.committed is not None:
            w.committed.close()
        if w.trigger_writer is not None:
            w.trigger_writer.close()


@cli.command()
def collector(
    process: int = typer.Option(-1, "--process", hidden=True, help="index of one of CX_COLLECTOR_PROCESSES"),
) -> None:
    """Run the Segment-compatible HTTP collector (CX_COLLECTOR_PROCESSES processes on its port)."""
    import asyncio

    from pipeline.collector.server import run_collector, tune_gc

    settings = load_settings("collector")
    _require_salt(settings)
    bootstrap = _require_broker(settings, "collector")
    if process < 0:  # the processes of CX_COLLECTOR_PROCESSES share what their parent checked
        _require_free_port(settings.collector_host, settings.collector_port, "CX_COLLECTOR_HOST:CX_COLLECTOR_PORT")
        metrics_ports = [settings.collector_metrics_port + i for i in range(settings.collector_processes)]
        for port in metrics_ports if settings.collector_metrics_port else []:
            _require_free_port(settings.collector_metrics_host, port, "CX_COLLECTOR_METRICS_PORT")
    if process < 0 and settings.collector_processes > 1:
        from pipeline.collector.processes import serve_processes

        raise typer.Exit(serve_processes(settings, dict(os.environ)))
    if process >= 0:
        from pipeline.collector.processes import child_settings

        settings = child_settings(settings, process)
    tune_gc()
    asyncio.run(run_collector(settings, bootstrap, reuse_port=process >= 0))


@cli.command()
def deliver() -> None:
    """Post triggers to the webhooks of CX_DELIVERY_CONFIG, signed and retried (docs/delivery.md)."""
    import asyncio

    from pipeline.deliver.service import run_deliver

    settings = load_settings("deliver")  # CX_LOG_FORMAT, as every other process
    destinations = _require_destinations(settings, "cxstream deliver")
    if not asyncio.run(run_deliver(settings, _require_broker(settings, "deliver"), destinations)):
        raise typer.Exit(1)


def _print_result(columns: list[str], rows: list, fmt: str) -> None:
    if fmt == "json":
        sys.stdout.write(orjson.dumps([dict(zip(columns, r)) for r in rows], default=str).decode() + "\n")
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        writer.writerows(rows)
        sys.stdout.write(buf.getvalue())
    else:
        # Cells and names as Text: a value such as a CSS selector "a[href]" is data, not rich markup.
        table = Table(*(Column(Text(name)) for name in columns))
        for row in rows:
            table.add_row(*(Text(f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row))
        console.print(table)


def run_query(settings: Settings, sql: str) -> tuple[list[str], list]:
    """Run SQL on the configured ClickHouse, through the running worker if it owns chdb."""
    from pipeline.webtoken import read_token
    from pipeline.supervisor.runner import query_running_worker, read_run_file

    url = settings.resolved_clickhouse_url
    info = read_run_file(settings)
    if url.startswith("chdb://") and info:
        token = read_token(settings.data_dir)
        return query_running_worker(info["worker_port"], sql, token, host=info.get("worker_host", "127.0.0.1"))
    if not sql.strip():
        raise ValueError("empty query")
    from sinks.client import connect

    ch = connect(url)
    try:
        # The limits of an analyst query (CX_QUERY_*), set on this connection of its own; not read-only:
        # with nothing running, the store is the operator's.
        for name, value in _direct_query_limits(settings).items():
            ch.execute(f"SET {name} = {value!r}")
        if url.startswith("chdb://"):
            # The embedded engine runs every statement of a text and returns their outputs one after the
            # other; ClickHouse's parser refuses a second one here (a server refuses it itself).
            ch.query("SELECT formatQuerySingleLine(%(sql)s)", {"sql": sql})
            ch.execute("SET output_format_json_validate_utf8 = 1")  # bytes that are not UTF-8 shown as U+FFFD
        return _interruptible(lambda: ch.query(sql))
    finally:
        ch.close()


def _direct_query_limits(settings: Settings) -> dict[str, object]:
    from pipeline.analyst_sql import QueryLimits

    limits = QueryLimits.from_settings(settings).clickhouse_settings()
    return {name: value for name, value in limits.items() if name not in ("readonly", "max_threads")}


def _interruptible(call: Callable[[], T]) -> T:
    """``call()`` in a thread, so that Ctrl-C ends the command while the embedded engine (which ignores it) works.

    chdb releases the GIL while it runs a query, so the main thread keeps
    receiving signals; on Ctrl-C the process ends at once with 130, as a shell
    does, without tearing down the engine still running the query.
    """
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread as it is
            outcome.append((False, exc))

    worker = threading.Thread(target=run, name="cxstream-query", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        sys.stdout.flush()
        _say_error("cxstream query: interrupted")
        os._exit(130)
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


@cli.command()
def query(
    sql: str,
    format: Literal["table", "json", "csv"] = typer.Option("table", "--format", "-f"),
) -> None:
    """Run SQL on the configured ClickHouse (also while ``up`` runs on the embedded store)."""
    settings = load_settings("query")
    try:
        columns, rows = run_query(settings, sql)
    except Exception as exc:
        _say_error(f"cxstream query: {exc}")
        raise typer.Exit(1) from None
    _print_result(columns, rows, format)


@cli.command()
def status(
    interval: float = typer.Option(2.0, min=0.2, max=60, help="seconds between the two scrapes the rates come from"),
) -> None:
    """One screen of a running ``cxstream up``: components, lag, events/s, dead letters, triggers, inserts."""
    from pipeline.supervisor.runner import read_run_file
    from pipeline.status import collect, render_status

    settings = load_settings()
    info = read_run_file(settings)
    if info is None:
        _say_error(f"no cxstream up runs on {settings.data_dir.resolve()} (no live run.json)")
        raise typer.Exit(1)
    snap = collect(settings, info, interval, lambda sql: run_query(settings, sql))
    console.print(render_status(snap))
    if not (snap.collector.ready and snap.worker.ready) or (snap.deliveries is not None and not snap.deliveries.alive):
        from pipeline.exitcodes import EXIT_NOT_READY

        raise typer.Exit(EXIT_NOT_READY)


@cli.command()
def demo(
    seconds: float | None = typer.Option(
        None, min=0.001, help="wall time the simulated day is sent in (60 unless --rate is given)"
    ),
    rate: float | None = typer.Option(
        None, min=0.001, help="messages per second sent through the Segment SDK (with --seconds too: at most this rate)"
    ),
    visitors: int = typer.Option(3000, min=1, help="simulated visitors over the simulated day"),
    seed: int = typer.Option(7),
    data_dir: Path = typer.Option(Path(".cxdata/demo"), help="fresh embedded store for the demo"),
    dashboard: bool = typer.Option(False, "--dashboard", help="serve the dashboard and keep running after the report until Ctrl-C"),
) -> None:
    """Run the pipeline on the embedded defaults with the demo storefront, then show KPIs and triggers."""
    from pipeline.demo.run import run_demo

    from pipeline.exitcodes import EXIT_DATA_DIR_IN_USE, EXIT_PORT_TAKEN
    from pipeline.supervisor.runner import DataDirInUse, PortTaken, data_dir_owner

    settings = load_settings("demo")
    try:
        if (owner := data_dir_owner(data_dir)) is not None:  # checked before the demo empties the directory
            raise DataDirInUse(f"{data_dir.resolve()} is in use by a running pipeline (pid {owner}): stop it first, or pass another --data-dir")
        code = run_demo(
            settings, seconds=seconds, rate=rate, visitors=visitors, seed=seed, data_dir=data_dir, console=console,
            dashboard=dashboard, shown_url=lambda url: _shown_url(url, settings.model_copy(update={"data_dir": data_dir})),
        )
    except (DataDirInUse, PortTaken) as exc:
        _say_error(f"cxstream demo: {exc}")
        code = EXIT_DATA_DIR_IN_USE if isinstance(exc, DataDirInUse) else EXIT_PORT_TAKEN
    raise typer.Exit(code)


from pipeline.tools.backtest import backtest  # noqa: E402 - registered with the other commands

cli.command(name="backtest")(backtest)


def _positive_ints(text: str, what: str) -> tuple[int, ...]:
    """A comma-separated list of integers >= 1 (empty: none), or a usage error naming the bad item."""
    values = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            value = int(item)
        except ValueError:
            value = 0
        if value < 1:
            raise typer.BadParameter(f"{item!r} is not {what} (comma-separated whole numbers of at least 1)")
        values.append(value)
    return tuple(values)


@cli.command()
def bench(  # workers and live_rate arrive as tuples of ints: their callbacks parse the text
    ctx: typer.Context,
    events: int = typer.Option(1_000_000, min=1, help="events to generate and load into Kafka"),
    workers: str = typer.Option(
        "1,2", help="worker counts to run, comma-separated",
        callback=lambda text: _positive_ints(text, "a worker count"),
    ),
    live_rate: str = typer.Option(
        "2000,10000", help="events/s sent through the collector in live mode, comma-separated ('': skip)",
        callback=lambda text: _positive_ints(text, "a rate in events/s"),
    ),
    live_seconds: float = typer.Option(30.0, min=0.0, help="duration of live mode"),
    collector_events: int = typer.Option(200_000, min=0, help="events posted for the collector's rate (0: skip)"),
    cpu_events: int = typer.Option(
        20_000, min=0, help="events of the worker's pure path measured alone before and after the workers (0: skip)"
    ),
    json_path: Path | None = typer.Option(None, "--json", help="also write the results as JSON here"),
    quick: bool = typer.Option(
        False, help="small sizes for every section, for the options above not given (counts exact, rates not meaningful)"
    ),
    targets: bool = typer.Option(
        False, "--targets",
        help="the least sizes that judge every performance target, for the options above not given (about 6 minutes)",
    ),
    clickhouse_url: str = typer.Option(
        "", help="a scratch ClickHouse server (its cx database is dropped); default: a local server the bench starts"
    ),
) -> None:
    """Measure the pipeline end to end (Kafka -> workers -> ClickHouse), live latency and the collector."""
    from pipeline.tools.bench import BenchError, BenchOptions, report_rows, run_bench

    settings = load_settings("bench")
    sizes = {"events": events, "workers": workers, "live_rates": live_rate, "live_seconds": live_seconds,
             "collector_events": collector_events, "cpu_events": cpu_events}  # fmt: skip
    if quick and targets:
        raise typer.BadParameter("--quick and --targets are two presets: give one", param_hint="'--targets'")
    if clickhouse_url and not clickhouse_url.startswith(("clickhouse://", "clickhouses://")):
        # Said before minutes of generating and loading events, not after.
        raise typer.BadParameter("a ClickHouse server's URL: clickhouse://user:password@host:9000/db",
                                 param_hint="'--clickhouse-url'")
    if quick or targets:  # the preset's sizes, but for the options given on the command line
        given = {"live_rates": "live_rate"}
        sizes = {
            name: value for name, value in sizes.items()
            if getattr(ctx.get_parameter_source(given.get(name, name)), "name", None) == "COMMANDLINE"
        }  # fmt: skip
        opts = dataclasses.replace(BenchOptions.quick() if quick else BenchOptions.targets(), **sizes)
    else:
        opts = BenchOptions(**sizes)
    try:
        result = run_bench(
            opts, settings, bootstrap=settings.kafka_bootstrap, clickhouse_url=clickhouse_url,
            progress=lambda line: console.print(Text(line, style="dim"), soft_wrap=True),
        )
    except BenchError as exc:
        _say_error(f"bench failed: {exc}")
        raise typer.Exit(1) from None
    table = Table("metric", "value", title=f"cxstream bench ({result.machine['cores']} cores, {result.machine['cpu']})")
    for metric, value in report_rows(result):
        table.add_row(metric, value)
    console.print(table)
    if json_path is not None:
        json_path.write_bytes(result.to_json())
        console.print(f"results written to {json_path}")


@cli.command(name="bench-compare")
def bench_compare(
    old: Path = typer.Argument(..., help="the earlier run's `cxstream bench --json` file"),
    new: Path = typer.Argument(..., help="the later run's"),
) -> None:
    """Two `cxstream bench --json` runs side by side: every figure, its change, and each target in both."""
    from pipeline.tools.bench_compare import CompareError, compare_figures, compare_targets, load_run

    try:
        a, b = load_run(old), load_run(new)
    except CompareError as exc:
        _say_error(f"bench-compare: {exc}")
        raise typer.Exit(1) from None

    console.print(f"old: {old}\nnew: {new}", markup=False, highlight=False, soft_wrap=True)
    figures = Table(Column("figure", overflow="fold"), "old", "new", "change", title="figures")
    for change in compare_figures(a, b):  # names and values from the files: Text, never markup
        figures.add_row(*map(Text, change.cells()))
    console.print(figures)
    targets = Table("target", "old", "new", title="targets")
    for before, after in compare_targets(a, b):
        targets.add_row(Text(after.target.what), Text(before.text()), Text(after.text()))
    console.print(targets)


@cli.command(name="bench-cpu")
def bench_cpu(
    events: int = typer.Option(
        200_000, min=1, help="about this many events of the demo storefront's traffic (whole visits, and its clock's)"
    ),
    seed: int = typer.Option(7, help="traffic seed"),
) -> None:
    """CPU time per event of the worker's pure path (decode, detect, states, rows, insert), no Kafka or ClickHouse."""
    from pipeline.tools.bench_cpu import report, run

    console.print(report(run(events, seed, worker_gc=True)), highlight=False)


@cli.command(name="build-native")
def build_native(
    clean: bool = typer.Option(False, "--clean", help="remove every compiled copy instead"),
    show: bool = typer.Option(False, "--status", help="list each module's state, build nothing"),
) -> None:
    """Compile the worker's hot-path modules with Cython (used only while they match their source; CX_NATIVE=0 ignores them)."""
    from pipeline import native

    if clean:
        console.print(f"native: removed {native.clean()} compiled copies")
        return
    if not show:
        try:
            built = native.build(log=lambda line: console.print(line, highlight=False, soft_wrap=True))
        except native.NativeBuildError as exc:
            console.print(f"build-native failed: {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        if not built:
            return  # build() said that every module is compiled already
    else:
        for item in native.status():
            console.print(f"{item.state:<9} {item.module}", highlight=False)
    console.print(f"native: {native.summary()}", highlight=False)


def _environment_error(exc: BaseException) -> tuple[str, int] | None:
    """(one line, exit code) for an error of the environment a command met, None for anything else.

    A file or directory that cannot be made or read, a port taken, a name
    that does not resolve (OSError), a Kafka broker that refused or never
    answered, a ClickHouse that did: the command cannot go on, and a stack
    trace would hide the one line that says why. Anything else is a bug and
    keeps its traceback.
    """
    kafka = sys.modules.get("confluent_kafka")
    if kafka is not None and isinstance(exc, kafka.KafkaException):
        from pipeline.exitcodes import EXIT_UNAVAILABLE
        from pipeline.wire.topics import kafka_reason

        return f"Kafka: {kafka_reason(exc)} (check CX_KAFKA_BOOTSTRAP and the CX_KAFKA_SECURITY_* settings)", EXIT_UNAVAILABLE
    protocol = sys.modules.get("sinks.protocol")
    if protocol is not None and isinstance(exc, protocol.ClickHouseError):
        return f"ClickHouse: {str(exc).split('Stack trace:')[0]}", 1
    if isinstance(exc, OSError):
        import errno

        from pipeline.exitcodes import EXIT_PORT_TAKEN

        return str(exc), EXIT_PORT_TAKEN if exc.errno == errno.EADDRINUSE else 1
    return None


def main() -> None:
    """The command line; an error of the environment ends it with one line on stderr (``_environment_error``)."""
    try:
        cli()
    except Exception as exc:
        found = _environment_error(exc)
        if found is None:
            raise
        message, code = found
        command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")
        line = " ".join(f"cxstream {command}: {message}".split())  # one line, whatever the error held
        _say_on_stderr(line, os.environ.get("CX_LOG_FORMAT", "").lower() == "json")
        sys.exit(code)


if __name__ == "__main__":
    main()
