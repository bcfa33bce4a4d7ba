"""The dashboard's long-lived clients, built once per app from its settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from fastapi.templating import Jinja2Templates
from redis import Redis

from services.dashboard.publisher import EventPublisher
from services.dashboard.sessions import SessionStore
from services.dashboard.settings import DashboardSettings
from services.dashboard.throttle import LiveSlots, Throttle
from vidpipe.cameras import UrlRules
from vidpipe.configstore import ConfigStore
from vidpipe.db import create_engine
from vidpipe.objectstore import ObjectStore
from vidpipe_ml.catalog import ModelCatalog

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
#: a live stream ends after this long (s); EventSource reconnects by itself
LIVE_MAX_S = 300.0


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
    #: camera URL policy and cipher (per caller: ``url_rules.as_admin(...)``)
    url_rules: UrlRules
    sessions: SessionStore
    throttle: Throttle
    live_slots: LiveSlots
    redis: Redis
    #: Kafka events of on-demand requests (connects on first use)
    publisher: EventPublisher

    @classmethod
    def build(cls, settings: DashboardSettings) -> Resources:
        objects = ObjectStore(settings.s3)
        presigner = objects
        if settings.s3_public_endpoint_url:
            public = settings.s3.model_copy(
                update={"endpoint_url": settings.s3_public_endpoint_url}
            )
            presigner = ObjectStore(public)
        redis = Redis.from_url(settings.redis.url, socket_timeout=5)
        return cls(
            settings=settings,
            engine=create_engine(settings.postgres, pool_size=8),
            objects=objects,
            presigner=presigner,
            catalog=ModelCatalog(settings.mlflow.tracking_uri),
            templates=Jinja2Templates(directory=TEMPLATES_DIR),
            configs=ConfigStore(settings.postgres, settings.redis),
            url_rules=UrlRules.of(settings.cameras),
            sessions=SessionStore(redis, settings.session_idle_s, settings.session_max_age_s),
            throttle=Throttle(settings),
            live_slots=LiveSlots(redis, settings.live_streams_per_user, LIVE_MAX_S + 60),
            redis=redis,
            publisher=EventPublisher(settings.kafka),
        )

    def close(self) -> None:
        self.publisher.close()
        self.engine.dispose()
        self.configs.close()
        self.redis.close()
