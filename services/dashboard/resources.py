"""The dashboard's long-lived clients, built once per app from its settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from fastapi.templating import Jinja2Templates

from services.dashboard.settings import DashboardSettings
from vidpipe.configstore import ConfigStore
from vidpipe.db import create_engine
from vidpipe.objectstore import ObjectStore
from vidpipe_ml.catalog import ModelCatalog

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
    configs: ConfigStore

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
            engine=create_engine(settings.postgres, pool_size=8),
            objects=objects,
            presigner=presigner,
            catalog=ModelCatalog(settings.mlflow.tracking_uri),
            templates=Jinja2Templates(directory=TEMPLATES_DIR),
            configs=ConfigStore(settings.postgres, settings.redis),
        )

    def close(self) -> None:
        self.engine.dispose()
        self.configs.close()
