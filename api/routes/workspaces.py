"""Workspaces, members and the caller (``/me``).

Routes under ``/workspaces/{workspace_id}`` are judged by the caller's role in that workspace (the
guard resolves it from the path); a workspace the caller is not a member of is 404, like an unknown id.
"""

from __future__ import annotations

from typing import Literal

from litestar import Controller, delete, get, patch, post
from litestar.di import Provide

from api.auth import ADMIN, VIEWER
from api.container import Services
from api.envelope import Envelope, ListEnvelope, ok, page_of
from api.routes.knowledge import Limit, PageNo
from api.schemas import Body, Id, Name
from api.services.identity import Principal, PrincipalInfo, TokenInfo
from api.services.workspaces import MemberInfo, WorkspaceInfo, WorkspaceService

Role = Literal["viewer", "editor", "admin"]


class WorkspaceCreate(Body):
    name: Name


class WorkspaceUpdate(Body):
    name: Name


class MemberAdd(Body):
    user_id: Id
    role: Role = "viewer"


class MemberUpdate(Body):
    role: Role


def provide_workspaces(services: Services) -> WorkspaceService:
    return services.workspaces


class WorkspaceController(Controller):
    path = "/api/v1/workspaces"
    tags = ["workspaces"]
    dependencies = {"workspaces": Provide(provide_workspaces, sync_to_thread=False)}

    @get("/", opt=VIEWER, summary="List your workspaces")
    async def list_workspaces(
        self, workspaces: WorkspaceService, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[WorkspaceInfo]:
        result = await workspaces.list_for(principal, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    # creating workspaces is for admins (of the workspace the token is used in): deny by default
    @post("/", opt=ADMIN, status_code=201, summary="Create a workspace; you become its admin")
    async def create(
        self, data: WorkspaceCreate, workspaces: WorkspaceService, principal: Principal
    ) -> Envelope[WorkspaceInfo]:
        return ok(await workspaces.create(principal, data.name), "Workspace created successfully")

    @get("/{workspace_id:str}", opt=VIEWER, summary="Get a workspace")
    async def get_workspace(
        self, workspace_id: str, workspaces: WorkspaceService, principal: Principal
    ) -> Envelope[WorkspaceInfo]:
        return ok(await workspaces.get(principal))

    @patch("/{workspace_id:str}", opt=ADMIN, summary="Rename a workspace")
    async def update(
        self, workspace_id: str, data: WorkspaceUpdate, workspaces: WorkspaceService, principal: Principal
    ) -> Envelope[WorkspaceInfo]:
        return ok(await workspaces.rename(principal, data.name), "Workspace updated")

    @delete("/{workspace_id:str}", opt=ADMIN, status_code=200, summary="Delete a workspace and everything in it")
    async def remove(self, workspace_id: str, workspaces: WorkspaceService, principal: Principal) -> Envelope[None]:
        await workspaces.delete(principal)
        return ok(None, "Workspace deleted")

    @get("/{workspace_id:str}/members", opt=ADMIN, summary="List members")
    async def members(
        self,
        workspace_id: str,
        workspaces: WorkspaceService,
        principal: Principal,
        page: PageNo = 1,
        limit: Limit = 20,
    ) -> ListEnvelope[MemberInfo]:
        result = await workspaces.members(principal, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @post("/{workspace_id:str}/members", opt=ADMIN, status_code=201, summary="Add a user as a member")
    async def add_member(
        self, workspace_id: str, data: MemberAdd, workspaces: WorkspaceService, principal: Principal
    ) -> Envelope[MemberInfo]:
        return ok(await workspaces.add_member(principal, data.user_id, data.role), "Member added")

    @patch("/{workspace_id:str}/members/{user_id:str}", opt=ADMIN, summary="Change a member's role")
    async def set_role(
        self, workspace_id: str, user_id: str, data: MemberUpdate, workspaces: WorkspaceService, principal: Principal
    ) -> Envelope[MemberInfo]:
        return ok(await workspaces.set_role(principal, user_id, data.role), "Role changed")

    @delete(
        "/{workspace_id:str}/members/{user_id:str}",
        opt=ADMIN,
        status_code=200,
        summary="Remove a member (their tokens of this workspace are revoked)",
    )
    async def remove_member(
        self, workspace_id: str, user_id: str, workspaces: WorkspaceService, principal: Principal
    ) -> Envelope[list[TokenInfo]]:
        return ok(await workspaces.remove_member(principal, user_id), "Member removed")


@get("/api/v1/me", opt=VIEWER, summary="Who am I: user, workspace, role and token", tags=["workspaces"])
async def me(services: Services, principal: Principal) -> Envelope[PrincipalInfo]:
    return ok(await services.access.describe(principal))
