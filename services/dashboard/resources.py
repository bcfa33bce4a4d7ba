"""The dashboard's long-lived clients, built once per app from its settings."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from fastapi.templating import Jinja2Templates

from services.dashboard.catalog import ModelCatalog
from services.dashboard.db import create_engine
from services.dashboard.settings import DashboardSettings
from vidpipe.configstore import ConfigStore
from vidpipe.objectstore import ObjectStore

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


@dataclass
class Resources:
    settings: DashboardSettings
    engine: sa.Engine
    objects: ObjectStore
    #: presigns URLs with the endpoint browsers reach (``s3_public_endpoint_url``)
    presigner: ObjectStore
    catalog: ModelCatalog
    templates: Jinja2Templates
    _configs: ConfigStore
    _configs_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: DashboardSettings) -> Resources:
        objects = ObjectStore(settings.s3)
        presigner = objects
        if settings.s3_public_endpoint_url:
            public = settings.s3.model_copy(
                update={"endpoint_url": settings.s3_public_endpoint_url}
            )
            presigner = ObjectStore(public)
        return cls(
            settings=settings,
            engine=create_engine(settings.postgres),
            objects=objects,
            presigner=presigner,
            catalog=ModelCatalog(settings.mlflow.tracking_uri),
            templates=Jinja2Templates(directory=TEMPLATES_DIR),
            _configs=ConfigStore(settings.postgres, settings.redis),
        )

    @contextmanager
    def configs(self) -> Iterator[ConfigStore]:
        """The config store (one psycopg connection), one request thread at a time."""
        with self._configs_lock:
            yield self._configs

    def close(self) -> None:
        self.engine.dispose()
        self._configs.close()
