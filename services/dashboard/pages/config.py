"""Model configuration page: the client's config, a form to change it, and what the MLflow
registry offers (versions, aliases, label sets) with links into the MLflow UI."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from services.dashboard import configs, tenancy
from services.dashboard.auth import Principal
from services.dashboard.configs import ConfigIn, ConfigOut
from services.dashboard.deps import (
    CurrentUser,
    Expensive,
    OperatorUser,
    ResourcesDep,
    SessionDep,
)
from services.dashboard.errors import Invalid, NotFound
from services.dashboard.pages.render import blank_to_none, field_errors, redirect, render
from vidpipe.ids import ID_PATTERN
from vidpipe.modelref import parse_model_ref

router = APIRouter()


class ConfigForm(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "model": "coco-centernet@production",
                    "score_threshold": "0.4",
                    "classes_of_interest": "person, car",
                }
            ]
        },
    )

    client_id: str = ""
    model: str = ""
    score_threshold: str = ""
    classes_of_interest: str = ""
    max_frame_age_ms: str = ""
    csrf_token: str = ""

    def to_config(self) -> ConfigIn:
        try:
            selector = parse_model_ref(self.model)
        except ValueError:
            raise Invalid("choose a model as NAME@ALIAS or NAME/VERSION", field="model") from None
        return ConfigIn.model_validate(
            {
                "model_name": selector.name,
                "model_alias": selector.alias,
                "model_version": selector.version,
                "score_threshold": self.score_threshold.strip() or None,
                "classes_of_interest": [
                    c.strip() for c in self.classes_of_interest.split(",") if c.strip()
                ],
                "max_frame_age_ms": self.max_frame_age_ms.strip() or None,
            }
        )

    @classmethod
    def of(cls, config: ConfigOut) -> ConfigForm:
        return cls(
            client_id=config.client_id,
            model=config.model_uri.removeprefix("models:/"),
            score_threshold=f"{config.score_threshold:g}",
            classes_of_interest=", ".join(config.classes_of_interest),
            max_frame_age_ms=""
            if config.max_frame_age_ms is None
            else str(config.max_frame_age_ms),
        )


def _client_for_page(conn: SessionDep, user: Principal, requested: str | None) -> str | None:
    if user.is_superadmin and requested is None:
        listed = tenancy.list_clients(conn, user)
        return listed[0].client_id if listed else None
    return tenancy.acting_client(conn, user, requested)


def _page(
    request: Request,
    user: Principal,
    conn: SessionDep,
    resources: ResourcesDep,
    client_id: str | None,
    form: ConfigForm | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    current = None
    if client_id is not None:
        try:
            current = configs.get_config(resources, client_id)
        except NotFound:
            current = None
    if client_id is None:  # a superadmin without clients: nothing to configure
        models = []
    else:
        catalog = resources.catalog
        models = [(m, catalog.versions(m.name, client_id)) for m in catalog.list_models(client_id)]
    if form is None:
        form = (
            ConfigForm.of(current)
            if current
            else ConfigForm(client_id=client_id or "", score_threshold="0.3")
        )
    return render(
        request,
        "config.html",
        user,
        status_code=status_code,
        client_id=client_id,
        clients=tenancy.list_clients(conn, user),
        current=current,
        models=models,
        form=form,
        errors=errors or {},
    )


@router.get("/config", summary="Model configuration page", dependencies=[Expensive])
def config_page(
    request: Request,
    user: CurrentUser,
    conn: SessionDep,
    resources: ResourcesDep,
    client_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> Response:
    return _page(request, user, conn, resources, _client_for_page(conn, user, client_id))


@router.post("/config", summary="Save the model configuration (form)")
def save_config(
    request: Request,
    user: OperatorUser,
    conn: SessionDep,
    resources: ResourcesDep,
    form: Annotated[ConfigForm, Form()],
) -> Response:
    client_id = tenancy.acting_client(conn, user, blank_to_none(form.client_id))
    try:
        saved = configs.put_config(resources, client_id, form.to_config())
    except (ValidationError, Invalid) as exc:
        errors = field_errors(exc)
        if any(k.startswith("model_") for k in errors):  # the form has one "model" field
            errors["model"] = next(v for k, v in errors.items() if k.startswith("model_"))
        return _page(request, user, conn, resources, client_id, form, errors, 422)
    message = (
        f"Saved: {saved.model_uri}, threshold {saved.score_threshold:g}."
        " Detectors apply it on their next frames."
    )
    return redirect(request, f"/config?client_id={client_id}", message)
