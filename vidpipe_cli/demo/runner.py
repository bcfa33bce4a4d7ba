"""``vidpipe demo``: real video over real RTSP through every stage, then a summary.

The model import, the Spark report job and the accuracy service are imported inside the
functions that run them (torch, mlflow and pyspark are heavy).

Steps: local stack up; vtest.avi fetched and served at ``rtsp://127.0.0.1:8554/vtest``;
demo client + camera + config in Postgres (the camera's old objects removed, so counts are
this run's); CenterNet registered if absent; metrics sink, detector and renderer started,
then a camera agent, and the camera is enabled the way a user enables one (the row, then
its announcement on ``cameras.control.v1``), so the agent starts its decoder. The RTSP
server plays the clip once (``--once``); when it has ended the camera is disabled the same
way. The run ends when every decoded frame has been detected and rendered (or ``timeout_s``
passes), and the summary is read back from the end state in S3 plus the pipeline's own
events. Benchmarks and tests may run the decoder directly instead (no ``source_ended``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.local import serve, stack
from infra.local.media import VTEST_FRAMES, prepare_vtest, start_rtsp_server, stop_rtsp_server
from infra.local.processes import ServiceProcess, start_service
from infra.local.programs import DETECTOR_CPU_ENV, ServeOptions
from vidpipe import cameras, keys
from vidpipe.cameras import CameraFields, CameraNotFound, UrlRules
from vidpipe.configstore import ClientConfig, ConfigStore
from vidpipe.control import announce_camera_change_sync, edit_action
from vidpipe.metricsstore import MetricsStore
from vidpipe.objectstore import ObjectStore
from vidpipe.settings import ServiceSettings
from vidpipe.topics import ANNOTATIONS_BUCKET, FRAMES_BUCKET, RENDERS_BUCKET
from vidpipe_cli.demo.dashboard import DEMO_EMAIL, DEMO_PASSWORD, ensure_demo_user, stop_dashboard
from vidpipe_cli.demo.watch import Observation, PipelineWatch
from vidpipe_cli.models import ensure_detector

log = logging.getLogger(__name__)

DEMO_CLIENT = "demo"
DEMO_CAMERA = "vtest-cam"
RTSP_PORT = 8554
#: Seconds without a newly decoded frame, after the source ended, before a run may end
#: (the last frames read may still be on their way to S3 and Kafka).
QUIET_S = 3.0


@dataclass(frozen=True)
class PipelineRun:
    """What to run: one client's camera reading ``url`` once to its end."""

    client_id: str
    camera_id: str
    url: str
    fps: float
    expected_frames: int
    score_threshold: float = 0.3
    #: the client's frame-age budget (None: the detector's default)
    max_frame_age_ms: int | None = None


def source_access(url: str) -> dict[str, str]:
    """The URL-policy environment that lets a process use the runner's own source and
    nothing more: its video file, or its one RTSP server (address and port) on loopback."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return {"VIDPIPE_CAMERAS__ALLOW_FILES": "true"}
    address = ipaddress.ip_address(parts.hostname or "")
    network = f"{address}/{address.max_prefixlen}"
    entry = f"[{network}]" if address.version == 6 else network
    return {"VIDPIPE_CAMERAS__ALLOW": json.dumps([f"{entry}:{parts.port or 554}"])}


def _runner_rules(settings: ServiceSettings, url: str) -> UrlRules:
    access = source_access(url)
    allowed = json.loads(access.get("VIDPIPE_CAMERAS__ALLOW", "[]"))
    policy = settings.cameras.model_copy(update={"allow": (*settings.cameras.allow, *allowed)})
    return UrlRules.of(policy, platform_admin=True)


def _put_camera(settings: ServiceSettings, run: PipelineRun, enabled: bool) -> None:
    """Create or edit the run's camera as `vidpipe cameras add/update` does: the row, then,
    once committed, its announcement to the agents (best effort; they also reconcile)."""
    store = ConfigStore(settings.postgres, settings.redis)
    rules = _runner_rules(settings, run.url)
    fields = CameraFields(name=run.camera_id, url=run.url, fps=run.fps, enabled=enabled)
    try:
        with store.engine.begin() as conn:
            try:
                was = cameras.get_camera(conn, run.camera_id, run.client_id)
                cameras.update_camera(conn, run.client_id, run.camera_id, fields, rules)
                action = edit_action(was.enabled, enabled)
            except CameraNotFound:
                cameras.create_camera(conn, run.client_id, run.camera_id, fields, rules)
                action = "created"
    finally:
        store.close()
    announce_camera_change_sync(settings.kafka, run.client_id, run.camera_id, action)


def disable_camera(settings: ServiceSettings, run: PipelineRun) -> None:
    """Mark the run's camera disabled: its clip has been through every stage, and whatever
    runs cameras afterwards (agents under `vidpipe serve`) must not stream it again."""
    _put_camera(settings, run, enabled=False)


def prepare_camera(settings: ServiceSettings, run: PipelineRun, enabled: bool = True) -> None:
    """Client, camera (``enabled`` or not) and model config in Postgres; the camera's old
    objects removed. The runner acts as a platform administrator whose allow-list holds its
    own source."""
    store = ConfigStore(settings.postgres, settings.redis)
    try:
        store.put_client(run.client_id, run.client_id)
        _put_camera(settings, run, enabled=enabled)
        store.put_client_config(
            ClientConfig(
                client_id=run.client_id,
                model_name="coco-centernet",
                model_alias="production",
                score_threshold=run.score_threshold,
                max_frame_age_ms=run.max_frame_age_ms,
            )
        )
    finally:
        store.close()
    objects = ObjectStore(settings.s3)
    prefix = keys.camera_prefix(run.client_id, run.camera_id)
    for bucket in (FRAMES_BUCKET, ANNOTATIONS_BUCKET, RENDERS_BUCKET):
        objects.delete_prefix(bucket, prefix)


@contextmanager
def running_services(
    log_dir: Path, env: dict[str, dict[str, str]]
) -> Iterator[list[ServiceProcess]]:
    """Metrics sink, detector and renderer (extra env per name), each consuming (models
    loaded, group joined) when this yields; stopped with SIGTERM on exit."""
    names = ("metrics-sink", "detector", "renderer")
    procs = [start_service(name, log_dir, env.get(name)) for name in names]
    try:
        for proc in procs:
            proc.wait_logged(f"{proc.name} started", timeout_s=180)
        yield procs
    finally:
        for proc in reversed(procs):
            proc.stop()


async def follow_run(
    settings: ServiceSettings,
    run: PipelineRun,
    since_ns: int,
    ended: Callable[[], bool],
    services: list[ServiceProcess],
    timeout_s: float,
    console: Console | None = None,
) -> Observation:
    """Watch until the stream has ``ended()``, no frame was decoded for :data:`QUIET_S`
    seconds since, and every decoded frame was detected and rendered.

    Raises:
        RuntimeError: a service died, or ``timeout_s`` passed first; names the log to read.
    """
    watch = PipelineWatch(settings.kafka, run.client_id, run.camera_id, since_ns)
    await watch.start()
    deadline = time.monotonic() + timeout_s
    progress = Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
    )
    bars = {
        stage: progress.add_task(stage, total=run.expected_frames)
        for stage in ("decoded", "detected", "rendered")
    }
    decoded, last_decoded = 0, time.monotonic()
    try:
        with progress:
            while True:
                await watch.poll(500)
                seen = watch.seen
                if len(seen.decoded.at) != decoded:
                    decoded, last_decoded = len(seen.decoded.at), time.monotonic()
                counts = {
                    "decoded": len(seen.decoded.at),
                    "detected": len(seen.detected.at) + len(seen.dropped["detector"]),
                    "rendered": len(seen.rendered.at) + len(seen.dropped["detector"]),
                }
                for stage, count in counts.items():
                    progress.update(bars[stage], completed=count)
                for proc in services:
                    if not proc.alive():
                        raise RuntimeError(f"{proc.name} exited early; see {proc.log_path}")
                quiet = time.monotonic() - last_decoded >= QUIET_S
                if ended() and quiet and seen.settled():
                    return seen
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"pipeline did not finish in {timeout_s:.0f} s: {counts}; "
                        f"logs in {services[0].log_path.parent}"
                    )
    finally:
        await watch.stop()


def wait_for_metrics(
    settings: ServiceSettings, run: PipelineRun, since_ns: int, frames: int, timeout_s: float
) -> None:
    """Wait until the metrics sink has merged every rendered frame into MongoDB, so a report
    run right after sees the whole run. Logs a warning (not an error) on timeout: the
    remaining metrics stay uncommitted in Kafka and are merged when the sink runs next."""
    store = MetricsStore(settings.mongo)
    query = {
        "client_id": run.client_id,
        "camera_id": run.camera_id,
        "capture_ts_ns": {"$gte": since_ns},
        "rendered_ts_ns": {"$gt": 0},
    }
    deadline = time.monotonic() + timeout_s
    try:
        while (merged := store.count(query)) < frames:
            if time.monotonic() > deadline:
                log.warning("metrics sink merged %d of %d frames so far", merged, frames)
                return
            time.sleep(1)
    finally:
        store.close()


def summarize(settings: ServiceSettings, run: PipelineRun, seen: Observation) -> dict[str, Any]:
    """The demo summary: counts from the end state in S3, timings from the events."""
    objects = ObjectStore(settings.s3)
    prefix = keys.camera_prefix(run.client_id, run.camera_id)
    renders = list(objects.iter_keys(RENDERS_BUCKET, prefix))
    clips = sorted(k for k in renders if k.endswith(".mp4"))
    return {
        "frames_decoded": sum(1 for _ in objects.iter_keys(FRAMES_BUCKET, prefix)),
        "frames_detected": sum(1 for _ in objects.iter_keys(ANNOTATIONS_BUCKET, prefix)),
        "frames_rendered": sum(1 for k in renders if k.endswith(".jpg")),
        "detections_by_label": seen.detections_by_label(),
        "frames_dropped": {stage: len(seqs) for stage, seqs in seen.dropped.items()},
        "dead_letters": seen.dead_letters,
        "latency_ms": seen.latency_percentiles(),
        "throughput_fps": {
            "decoder": seen.decoded.throughput_fps(),
            "detector": seen.detected.throughput_fps(),
            "renderer": seen.rendered.throughput_fps(),
        },
        "clip": f"{RENDERS_BUCKET}/{clips[0]}" if clips else None,
        "model": seen.model.model_dump() if seen.model else None,
        "backend": _backend(seen.backend),
    }


def _backend(seen: str | None) -> dict[str, str] | None:
    """``openvino-bf16`` -> ``{"name": "openvino", "precision": "bf16"}``."""
    if seen is None:
        return None
    name, _, precision = seen.partition("-")
    return {"name": name, "precision": precision}


def run_pipeline(
    settings: ServiceSettings,
    run: PipelineRun,
    log_dir: Path,
    timeout_s: float = 900.0,
    console: Console | None = None,
    detector_env: Mapping[str, str] | None = None,
    started: Callable[[list[ServiceProcess]], None] | None = None,
    clip_frames: int | None = None,
    source_ended: Callable[[], bool] | None = None,
) -> tuple[dict[str, Any], Observation]:
    """Run decoder -> detector -> renderer (+ metrics sink) on ``run``; returns the summary
    and the raw per-frame observation. With ``source_ended`` (whether the finite source has
    played to its end) a camera agent runs the decoder, as for a user's camera: the camera
    is enabled once the agent is up and disabled when the source has ended; without, the
    decoder runs as its own process and the run ends when it exits. ``detector_env`` adds to
    the detector's environment (e.g. ``VIDPIPE_BACKEND``); ``started`` is called with every
    process once all run; ``clip_frames``: frames per clip segment (None: one clip spans the
    whole run, which the renderer then holds in memory to the end).

    A product running under `vidpipe serve` (default state directory) would join the same
    consumer groups and hold the same ports: its programs (but the dashboard) pause meanwhile."""
    by_agent = source_ended is not None
    prepare_camera(settings, run, enabled=not by_agent)
    since_ns = time.time_ns()
    clip_frames = clip_frames or max(2, run.expected_frames + 100)
    env = {
        "renderer": {"VIDPIPE_CLIP_FRAMES": str(clip_frames)},
        "detector": {**DETECTOR_CPU_ENV, **(detector_env or {})},
    }
    with (
        serve.paused(serve.ServePaths(stack.DEFAULT_STATE_DIR), keep=("dashboard",)),
        running_services(log_dir, env) as services,
    ):
        if source_ended is not None:
            feeder = start_service("agent", log_dir, source_access(run.url))
            feeder.wait_logged("agent started", timeout_s=60)
            _put_camera(settings, run, enabled=True)
            ended = source_ended
        else:
            decoder_env = {
                "VIDPIPE_CAMERA_ID": run.camera_id,
                "VIDPIPE_CLIENT_ID": run.client_id,
                "VIDPIPE_RECONNECT": "false",
                **source_access(run.url),
            }
            feeder = start_service("decoder", log_dir, decoder_env)

            def ended() -> bool:
                return not feeder.alive()

        if started is not None:
            started([*services, feeder])
        watched = [*services, feeder] if by_agent else services
        try:
            seen = asyncio.run(
                follow_run(settings, run, since_ns, ended, watched, timeout_s, console)
            )
        finally:
            if by_agent:
                disable_camera(settings, run)
            feeder.stop()
        if feeder.wait(1) not in (0, None):
            raise RuntimeError(f"{feeder.name} failed; see {feeder.log_path}")
        wait_for_metrics(settings, run, since_ns, len(seen.rendered.at), timeout_s=180)
    # Services are stopped: the renderer has written its last clip.
    return summarize(settings, run, seen), seen


def run_demo(settings: ServiceSettings, state_dir: Path, out_dir: Path) -> dict[str, Any]:
    console = Console() if Console().is_terminal else Console(width=160)
    stack.up(settings, state_dir)
    _, mp4 = prepare_vtest(state_dir / "assets")
    version = ensure_detector(settings)
    console.print(f"model: models:/coco-centernet@production (version {version})")
    started = datetime.now(UTC)
    log_dir = state_dir / "log" / "demo"
    rtsp = start_rtsp_server(mp4, RTSP_PORT, "/vtest", log_dir / "rtsp-server.log", once=True)
    run = PipelineRun(
        client_id=DEMO_CLIENT,
        camera_id=DEMO_CAMERA,
        url=f"rtsp://127.0.0.1:{RTSP_PORT}/vtest",
        fps=10.0,
        expected_frames=VTEST_FRAMES,
    )
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    try:
        console.print(f"streaming {run.url} (real time, ~{run.expected_frames / run.fps:.0f} s)")
        summary, _ = run_pipeline(
            settings, run, log_dir, console=console, source_ended=lambda: rtsp.poll() is not None
        )
    finally:
        stop_rtsp_server(rtsp)
    summary.update(evaluate_run(console, started))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "demo-summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(console, summary, path)
    serve_product(console, serve.ServePaths(state_dir), run)
    return summary


def serve_product(console: Console, paths: serve.ServePaths, run: PipelineRun) -> None:
    """Leave the product running under `vidpipe serve` (the instance's own replicas and
    ports if one runs), the demo camera editable in the dashboard, and say how to use it.

    Raises:
        StackError: a port is taken by another process, or a program keeps failing.
    """
    ensure_demo_user(DEMO_CLIENT)
    stop_dashboard(paths.state_dir)  # one left by an older demo would hold the port
    saved = serve.saved_options(paths) if serve.supervisord_pid(paths) else None
    base = saved or ServeOptions()
    extra_env = {
        **base.extra_env,
        "dashboard": source_access(run.url),
        "agent": source_access(run.url),
    }
    console.print("starting the product under `vidpipe serve` ...")
    rows = serve.start(ServeOptions(base.detectors, base.port_offset, extra_env), paths)
    dashboard = next(r for r in rows if r.name == "dashboard")
    console.print(
        f"vidpipe keeps running: {len(rows)} programs under supervisord "
        f"(`vidpipe status`; logs in {paths.log_dir})"
    )
    console.print(
        f"dashboard: http://127.0.0.1:{dashboard.http_port}  "
        f"(sign in as {DEMO_EMAIL} / {DEMO_PASSWORD})"
    )
    console.print("stop it: `vidpipe serve stop` (services) or `vidpipe down` (everything)")


def evaluate_run(console: Console, started: datetime) -> dict[str, Any]:
    """The Spark report over the run's hours and ``coco-centernet@production``'s accuracy on
    the hand-labelled ``vtest-persons`` set (single class, so mAP@.5 = person AP@.5)."""
    from services.accuracy.service import evaluate_accuracy
    from services.reports.report import generate_report
    from services.reports.settings import ReportSettings
    from services.reports.tables import print_run
    from vidpipe.datasets import VTEST_PERSONS
    from vidpipe_cli.datasets import prepare_builtin_dataset
    from vidpipe_cli.evaluate import accuracy_table

    settings = ReportSettings()
    console.print("running the Spark report job over this run ...")
    report = generate_report(settings, started, None)
    print_run(report, console)
    console.print(f"evaluating accuracy on {VTEST_PERSONS} ...")
    prepare_builtin_dataset(ObjectStore(settings.s3), VTEST_PERSONS)
    accuracy = evaluate_accuracy(settings, VTEST_PERSONS, "coco-centernet@production")
    console.print(accuracy_table(accuracy))
    return {"report_rows": len(report.rows), "map_50": round(accuracy.map_50, 4)}


def print_summary(console: Console, summary: dict[str, Any], path: Path) -> None:
    table = Table(title="vidpipe demo", show_header=False)
    for key in ("frames_decoded", "frames_detected", "frames_rendered", "dead_letters"):
        table.add_row(key, str(summary[key]))
    table.add_row(
        "frames dropped", ", ".join(f"{k} {v}" for k, v in summary["frames_dropped"].items())
    )
    table.add_row("latency p50 / p95", "{p50} / {p95} ms".format(**summary["latency_ms"]))
    table.add_row(
        "throughput (fps)", ", ".join(f"{k} {v}" for k, v in summary["throughput_fps"].items())
    )
    top = list(summary["detections_by_label"].items())[:6]
    table.add_row("detections", ", ".join(f"{k} {v}" for k, v in top) or "none")
    table.add_row("clip", f"s3://{summary['clip']}")
    model, backend = summary["model"] or {}, summary["backend"] or {}
    table.add_row(
        "model",
        f"{model.get('name')} v{model.get('version')} on {backend.get('name')} "
        f"{backend.get('precision')}",
    )
    if "report_rows" in summary:
        table.add_row("report rows", str(summary["report_rows"]))
        table.add_row("person AP@.5 (vtest-persons)", f"{summary['map_50']:.3f}")
    console.print(table)
    console.print(f"summary written to {path}")
