"""Users and login: ``POST /login`` (public) trades a username and password for an expiring API token,
``POST /logout`` revokes the token in use, ``PUT /me/password`` sets your password, and workspace admins
manage the members of their workspace under ``/users``. The logic lives in ``api.services.users``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put, route
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler
from msgspec import Meta

from api.auth import ADMIN, PUBLIC, VIEWER, check_json_body
from api.container import Services
from api.envelope import Envelope, ListEnvelope, error_body, ok, page_of
from api.routes.knowledge import Limit, PageNo
from api.schemas import Body, Id, Name
from api.services.identity import Principal
from api.services.users import InvalidCredentials, LoginResult, UserInfo, UserService

Role = Literal["viewer", "editor", "admin"]
Password = Annotated[str, Meta(min_length=8, max_length=1024)]  # a new password
GivenPassword = Annotated[str, Meta(min_length=1, max_length=1024)]  # one checked against the stored hash


class LoginBody(Body):
    username: Name
    password: GivenPassword
    workspace_id: Id | None = None  # default: the user's oldest workspace


class PasswordChange(Body):
    new_password: Password
    current_password: GivenPassword | None = None  # required once a password is set


class UserCreate(Body):
    name: Name
    password: Password | None = None  # without one, the user has API tokens only
    role: Role = "viewer"


class UserUpdate(Body):
    name: Name | None = None
    role: Role | None = None  # in this workspace
    password: Password | msgspec.UnsetType | None = msgspec.UNSET  # null: remove the password (no more logins)


def provide_users(services: Services) -> UserService:
    return services.users


async def json_body_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The body checks the access guard makes on authenticated routes (415, 400, NUL), for a public one."""
    if isinstance(connection, Request):
        await check_json_body(connection)


def invalid_credentials_handler(_: Request[Any, Any, Any], __: InvalidCredentials) -> Response[Any]:
    return Response(
        content=error_body(401, "unauthorized", "invalid username or password"), status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )  # fmt: skip


class AuthController(Controller):
    path = "/api/v1"
    tags = ["users"]
    dependencies = {"users": Provide(provide_users, sync_to_thread=False)}
    exception_handlers = {InvalidCredentials: invalid_credentials_handler}

    @post(
        "/login", opt=PUBLIC, guards=[json_body_guard], status_code=200,
        summary="Log in with a username and password: an API token",
    )  # fmt: skip
    async def login(
        self, request: Request[Any, Any, Any], data: LoginBody, users: UserService
    ) -> Envelope[LoginResult]:
        address = request.client.host if request.client is not None else "unknown"
        result = await users.login(data.username, data.password, address=address, workspace_id=data.workspace_id)
        return ok(result, "Logged in; send the token as 'Authorization: Bearer <token>'")

    @post("/logout", opt=VIEWER, status_code=200, summary="Log out: revoke the token that makes this request")
    async def logout(self, users: UserService, principal: Principal) -> Envelope[None]:
        await users.logout(principal)
        return ok(None, "Logged out")

    @put("/me/password", opt=VIEWER, summary="Set your password (current_password once one is set)")
    async def change_password(self, data: PasswordChange, users: UserService, principal: Principal) -> Envelope[None]:
        await users.change_password(principal, current=data.current_password, new=data.new_password)
        return ok(None, "Password changed")


class UserController(Controller):
    path = "/api/v1/users"
    tags = ["users"]
    dependencies = {"users": Provide(provide_users, sync_to_thread=False)}

    @get("/", opt=ADMIN, summary="List the users of your workspace")
    async def list_users(
        self, users: UserService, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[UserInfo]:
        result = await users.list_users(principal, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @post("/", opt=ADMIN, status_code=201, summary="Create a user, a member of your workspace")
    async def create(self, data: UserCreate, users: UserService, principal: Principal) -> Envelope[UserInfo]:
        user = await users.create_user(principal, name=data.name, role=data.role, password=data.password)
        return ok(user, "User created")

    @get("/{user_id:str}", opt=ADMIN, summary="Get a user of your workspace")
    async def get_user(self, user_id: str, users: UserService, principal: Principal) -> Envelope[UserInfo]:
        return ok(await users.get_user(principal, user_id))

    # seed 001 updates with PUT: both are partial updates (fields left out keep their values)
    @route("/{user_id:str}", http_method=["PATCH", "PUT"], opt=ADMIN,
           summary="Rename a user, change their role here or their password")  # fmt: skip
    async def update(
        self, user_id: str, data: UserUpdate, users: UserService, principal: Principal
    ) -> Envelope[UserInfo]:
        user = await users.update_user(
            principal, user_id, name=data.name, role=data.role, password=data.password
        )
        return ok(user, "User updated")

    @delete(
        "/{user_id:str}", opt=ADMIN, status_code=200,
        summary="Remove a user from your workspace (deleted entirely when it was their only one)",
    )  # fmt: skip
    async def remove(self, user_id: str, users: UserService, principal: Principal) -> Envelope[None]:
        await users.delete_user(principal, user_id)
        return ok(None, "User removed")
