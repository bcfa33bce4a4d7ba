"""vidpipe's services: peers that never import each other (import-linter checks it).

Each runs as its own process, ``python -m services.<module>``; :data:`SERVICES` is the
registry the CLI (``vidpipe run NAME``) and the process launchers use.
"""

from __future__ import annotations

#: Service name (as on the command line) -> module run with ``python -m``.
SERVICES: dict[str, str] = {
    "agent": "services.agent",
    "decoder": "services.decoder",
    "detector": "services.detector",
    "renderer": "services.renderer",
    "metrics-sink": "services.metrics_sink",
    "status-sink": "services.status_sink",
    "dashboard": "services.dashboard",
    "trainer": "services.trainer",
    "model-server": "services.model_server",
    "janitor": "services.janitor",
}
