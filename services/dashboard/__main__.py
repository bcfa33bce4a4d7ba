"""``vidpipe run dashboard``: serve the dashboard with uvicorn on ``settings.host:port``."""

from __future__ import annotations

import logging
import os

import uvicorn

from services.dashboard.app import create_app
from services.dashboard.settings import DashboardSettings
from vidpipe.logs import configure_logging

log = logging.getLogger("services.dashboard")


def main(settings: DashboardSettings | None = None) -> None:
    settings = settings or DashboardSettings()
    configure_logging(settings.log_level)
    # A page waiting on the model registry should fail in seconds, not after MLflow's
    # default minutes of retries (explicit environment settings win).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    app = create_app(settings)
    log.info("dashboard on http://%s:%d", settings.host, settings.port)
    # log_config=None: keep the process-wide logging set up above; uvicorn handles SIGTERM.
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, proxy_headers=True)


if __name__ == "__main__":
    main()
