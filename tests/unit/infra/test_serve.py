"""The supervisord configuration `vidpipe serve` writes, read back by supervisor's own parser,
and the program table's ports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from supervisor.options import ServerOptions

from infra.local.programs import PROGRAMS, REPLICA_PORT_STEP, Program, plan
from infra.local.serve import EVENTS_PROGRAM, ServePaths, render_config
from services.dashboard.settings import DashboardSettings
from services.detector.settings import DetectorSettings
from services.metrics_sink.settings import MetricsSinkSettings
from services.renderer.settings import RendererSettings
from services.status_sink.settings import StatusSinkSettings
from services.trainer.settings import TrainerSettings


def _parsed(tmp_path: Path, programs: list[Program]) -> dict[str, Any]:
    paths = ServePaths(tmp_path)
    paths.log_dir.mkdir(parents=True)
    paths.root.mkdir(parents=True)
    paths.conf.write_text(render_config(programs, paths))
    options = ServerOptions()
    options.configfile = str(paths.conf)
    options.process_config(do_usage=False)
    return {p.name: p for g in options.process_group_configs for p in g.process_configs}


def test_config_when_parsed_by_supervisor_then_every_program_is_supervised(
    tmp_path: Path,
) -> None:
    # given the default plan with two detectors
    programs = plan(detectors=2)
    # when supervisord reads the generated configuration
    parsed = _parsed(tmp_path, programs)
    # then every program is there, restarted and stopped as a group, logging to its file
    assert set(parsed) == {p.name for p in programs} | {EVENTS_PROGRAM}
    for program in programs:
        config = parsed[program.name]
        assert config.command.split()[0] == sys.executable
        assert config.stopasgroup and config.killasgroup
        assert config.startsecs == 5 and config.startretries == 5
        assert str(config.stdout_logfile).endswith(f"log/serve/{program.name}.log")
        assert config.environment == dict(program.env)


def test_config_when_env_holds_json_and_percent_then_values_arrive_unchanged(
    tmp_path: Path,
) -> None:
    # given a dashboard allow-list (JSON, quotes and brackets) and a percent sign
    extra = {"dashboard": {"VIDPIPE_CAMERAS__ALLOW": '["127.0.0.1/32:8554"]', "X": "5%,a b"}}
    # when the configuration is parsed
    parsed = _parsed(tmp_path, plan(extra_env=extra))
    # then the program sees exactly those values
    env = parsed["dashboard"].environment
    assert env["VIDPIPE_CAMERAS__ALLOW"] == '["127.0.0.1/32:8554"]'
    assert env["X"] == "5%,a b"
    assert env["VIDPIPE_PORT"] == "8000"


def test_config_when_value_cannot_be_quoted_then_it_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="X"):
        render_config(plan(extra_env={"trainer": {"X": "'both\" quotes"}}), ServePaths(tmp_path))


def test_plan_when_defaults_then_ports_are_the_services_own() -> None:
    ports = {p.name: p.metrics_port or p.http_port for p in plan()}
    assert ports["detector-1"] == DetectorSettings.model_fields["metrics_port"].default
    assert ports["renderer"] == RendererSettings.model_fields["metrics_port"].default
    assert ports["metrics-sink"] == MetricsSinkSettings.model_fields["metrics_port"].default
    assert ports["status-sink"] == StatusSinkSettings.model_fields["metrics_port"].default
    assert ports["trainer"] == TrainerSettings.model_fields["metrics_port"].default
    assert ports["dashboard"] == DashboardSettings.model_fields["port"].default
    assert ports["reports"] is None


def test_plan_when_replicas_and_offset_then_ports_do_not_collide() -> None:
    # given three detectors moved by an offset
    programs = plan(detectors=3, port_offset=1000)
    # then each replica has its own metrics port, and no two programs share a port
    detectors = [p for p in programs if p.kind == "detector"]
    assert [p.name for p in detectors] == ["detector-1", "detector-2", "detector-3"]
    assert [p.metrics_port for p in detectors] == [10102 + REPLICA_PORT_STEP * i for i in range(3)]
    ports = [port for p in programs for port in p.ports]
    assert len(ports) == len(set(ports))
    assert all(p.env["VIDPIPE_METRICS_PORT"] == str(p.metrics_port) for p in detectors)
    assert all(p.env["MALLOC_TRIM_THRESHOLD_"] for p in detectors)
    assert {s.name for s in PROGRAMS} == {p.kind for p in programs}


def test_plan_when_no_detector_then_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan(detectors=0)
