"""Clients (with their retention) and each client's model configuration."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from services.dashboard import configs, tenancy
from services.dashboard.configs import ConfigIn, ConfigOut
from services.dashboard.deps import (
    CurrentUser,
    OperatorUser,
    ResourcesDep,
    SessionDep,
    SuperadminUser,
)
from services.dashboard.tenancy import ClientChange, ClientIn, ClientOut
from vidpipe.ids import ID_PATTERN

router = APIRouter(tags=["clients"])
ClientId = Annotated[str, Path(pattern=ID_PATTERN)]


@router.get("/clients", summary="Clients you may see (a superadmin: all)")
def list_clients(user: CurrentUser, conn: SessionDep, resources: ResourcesDep) -> list[ClientOut]:
    default = resources.settings.retention
    return [c.with_default(default) for c in tenancy.list_clients(conn, user)]


@router.post("/clients", status_code=status.HTTP_201_CREATED, summary="Create a client")
def create_client(
    user: SuperadminUser, conn: SessionDep, resources: ResourcesDep, body: ClientIn
) -> ClientOut:
    return tenancy.create_client(conn, body).with_default(resources.settings.retention)


@router.get("/clients/{client_id}")
def get_client(
    user: CurrentUser, conn: SessionDep, resources: ResourcesDep, client_id: ClientId
) -> ClientOut:
    return tenancy.get_client(conn, user, client_id).with_default(resources.settings.retention)


@router.patch(
    "/clients/{client_id}",
    summary="Set the client's retention (superadmin)",
    description="Frames, annotations, renders, clips, request images and frame metrics older"
    " than this are deleted by the hourly janitor; null: the platform default.",
)
def change_client(
    user: SuperadminUser,
    conn: SessionDep,
    resources: ResourcesDep,
    client_id: ClientId,
    body: ClientChange,
) -> ClientOut:
    changed = tenancy.set_retention(conn, client_id, body)
    return changed.with_default(resources.settings.retention)


@router.get("/clients/{client_id}/config", summary="The client's model configuration")
def get_config(
    user: CurrentUser, conn: SessionDep, resources: ResourcesDep, client_id: ClientId
) -> ConfigOut:
    tenancy.get_client(conn, user, client_id)
    return configs.get_config(resources, client_id)


@router.put(
    "/clients/{client_id}/config",
    summary="Set the model configuration (checked against the MLflow registry)",
    description="Running detectors apply it on their next batch.",
)
def put_config(
    user: OperatorUser,
    conn: SessionDep,
    resources: ResourcesDep,
    client_id: ClientId,
    body: ConfigIn,
) -> ConfigOut:
    tenancy.get_client(conn, user, client_id)
    return configs.put_config(resources, client_id, body)
