"""Camera pages: list, add, edit, delete, and the live view with clips."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from services.dashboard import camera_status, cameras, results, tenancy
from services.dashboard.cameras import CameraIn
from services.dashboard.deps import (
    CurrentUser,
    Expensive,
    OperatorUser,
    ResourcesDep,
    SessionDep,
)
from services.dashboard.errors import Conflict, Invalid
from services.dashboard.pages.render import (
    CsrfForm,
    blank_to_none,
    field_errors,
    redirect,
    render,
)
from vidpipe.cameras import CameraFields
from vidpipe.ids import ID_PATTERN
from vidpipe.urls import with_password, without_password

router = APIRouter()
CameraId = Annotated[str, Path(pattern=ID_PATTERN)]


class CameraForm(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "camera_id": "gate-1",
                    "name": "Gate 1",
                    "url": "rtsp://admin@10.0.0.5/s",
                    "password": "camera password",
                    "fps": "5",
                    "enabled": "on",
                }
            ]
        },
    )

    camera_id: str = ""
    client_id: str = ""
    name: str = ""
    url: str = ""
    password: str = ""
    fps: str = ""
    enabled: str = ""
    csrf_token: str = ""

    def fields(self) -> dict[str, object]:
        """The camera fields; a typed password goes into the URL's user-info.

        Raises:
            Invalid: a password without a user name in the URL (field ``password``).
        """
        url = self.url.strip()
        if self.password:
            try:
                url = with_password(url, self.password)
            except ValueError as exc:
                raise Invalid(str(exc), field="password") from exc
        return {
            "name": self.name,
            "url": url,
            "fps": self.fps.strip() or None,
            "enabled": bool(self.enabled),
        }


@router.get("/", include_in_schema=False)
def home(user: CurrentUser) -> Response:
    return RedirectResponse("/cameras", status_code=303)


@router.get("/cameras", summary="Cameras page")
def camera_list(
    request: Request, user: CurrentUser, conn: SessionDep, resources: ResourcesDep
) -> Response:
    listed = camera_status.cameras_with_status(resources.redis, cameras.list_cameras(conn, user))
    return render(request, "cameras.html", user, cameras=listed)


def _form_page(
    request: Request,
    user: CurrentUser,
    conn: SessionDep,
    form: CameraForm,
    editing: bool,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    choices = tenancy.list_clients(conn, user) if user.is_superadmin else []
    return render(
        request,
        "camera_form.html",
        user,
        status_code=status_code,
        form=form.model_copy(update={"password": ""}),  # a password is never sent back
        editing=editing,
        errors=errors or {},
        clients=choices,
    )


@router.get("/cameras/new", summary="Add-camera page")
def new_camera(request: Request, user: OperatorUser, conn: SessionDep) -> Response:
    return _form_page(request, user, conn, CameraForm(fps="10", enabled="on"), editing=False)


@router.post("/cameras/new", summary="Add a camera (form)")
def add_camera(
    request: Request,
    user: OperatorUser,
    conn: SessionDep,
    resources: ResourcesDep,
    form: Annotated[CameraForm, Form()],
) -> Response:
    try:
        body = CameraIn.model_validate(
            {
                **form.fields(),
                "camera_id": form.camera_id.strip(),
                "client_id": blank_to_none(form.client_id),
            }
        )
        camera = cameras.create_camera(conn, resources.url_rules, resources.publisher, user, body)
    except (ValidationError, Invalid, Conflict) as exc:
        return _form_page(request, user, conn, form, False, field_errors(exc), 422)
    return redirect(request, f"/cameras/{camera.camera_id}", f"Camera {camera.camera_id} added.")


@router.get("/cameras/{camera_id}", summary="Live view page", dependencies=[Expensive])
def live_view(
    request: Request,
    user: CurrentUser,
    conn: SessionDep,
    resources: ResourcesDep,
    camera_id: CameraId,
) -> Response:
    camera = cameras.get_camera(conn, user, camera_id)
    statuses = camera_status.read_statuses(resources.redis, [camera.client_id])
    [shown] = camera_status.with_status([camera], statuses)
    return render(
        request,
        "camera_live.html",
        user,
        camera=camera,
        status=shown.status,
        status_available=statuses is not None,
        latest=results.latest_result(resources, camera).result,
        clips=results.list_clips(resources, camera),
    )


@router.get("/cameras/{camera_id}/edit", summary="Edit-camera page")
def edit_camera(
    request: Request, user: OperatorUser, conn: SessionDep, camera_id: CameraId
) -> Response:
    camera = cameras.get_camera(conn, user, camera_id)
    form = CameraForm(
        camera_id=camera.camera_id,
        client_id=camera.client_id,
        name=camera.name or "",
        url=without_password(camera.url),  # the password field stays empty unless changed
        fps=f"{camera.fps:g}",
        enabled="on" if camera.enabled else "",
    )
    return _form_page(request, user, conn, form, editing=True)


@router.post("/cameras/{camera_id}/edit", summary="Save a camera (form)")
def save_camera(
    request: Request,
    user: OperatorUser,
    conn: SessionDep,
    resources: ResourcesDep,
    camera_id: CameraId,
    form: Annotated[CameraForm, Form()],
) -> Response:
    current = cameras.get_camera(conn, user, camera_id)
    form = form.model_copy(update={"camera_id": camera_id, "client_id": current.client_id})
    try:
        fields = CameraFields.model_validate(form.fields())
        cameras.update_camera(
            conn, resources.url_rules, resources.publisher, user, camera_id, fields
        )
    except (ValidationError, Invalid, Conflict) as exc:
        return _form_page(request, user, conn, form, True, field_errors(exc), 422)
    return redirect(request, "/cameras", f"Camera {camera_id} saved.")


@router.post("/cameras/{camera_id}/delete", summary="Delete a camera (form)")
def remove_camera(
    request: Request,
    user: OperatorUser,
    conn: SessionDep,
    resources: ResourcesDep,
    camera_id: CameraId,
    form: Annotated[CsrfForm, Form()],
) -> Response:
    deleted = cameras.delete_camera(conn, resources.publisher, user, camera_id)
    camera_status.forget(resources.redis, deleted.client_id, camera_id)
    return redirect(request, "/cameras", f"Camera {camera_id} deleted.")
