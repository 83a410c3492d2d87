"""One function per API route: state, path parameters, query and body in; status and JSON out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from pipeline.sandbox.errors import ApiError, not_found
from pipeline.sandbox.fields import Body
from pipeline.sandbox.state import SandboxState
from pipeline.sandbox.users import UserRecord

Params = Mapping[str, str]
Answer = tuple[int, Any]
Handler = Callable[[SandboxState, Params, Params, Body], Answer]


def _first(users: list[UserRecord]) -> UserRecord:
    if not users:
        raise not_found()
    return users[0]


def search_users(state: SandboxState, _: Params, query: Params, __: Body) -> Answer:
    """``?key=`` / ``?email=``: one user or 404; ``?email=&many=true``: a bare list;
    ``?phone_number=``: a paginated envelope, 200 even when empty."""
    if "key" in query:
        return 200, state.show_user(_first(state.users_where("user_key", query["key"])))
    if "email" in query:
        users = state.users_where("email", query["email"])
        if query.get("many", "").lower() == "true":
            return 200, [state.show_user(user) for user in users]
        return 200, state.show_user(_first(users))
    if "phone_number" in query:
        found = [
            state.show_user(u) for u in state.users_where("phone_number", query["phone_number"])
        ]
        return 200, {"count": len(found), "next": None, "previous": None, "results": found}
    raise ApiError(400, {"detail": "Search needs one of the parameters key, email, phone_number."})


def create_user(state: SandboxState, _: Params, __: Params, body: Body) -> Answer:
    """``POST /users/``: 201 and the new user."""
    return 201, state.show_user(state.create_user(body))


def get_user(state: SandboxState, params: Params, _: Params, __: Body) -> Answer:
    """``GET /users/<id>/``."""
    return 200, state.show_user(state.user(int(params["id"])))


def update_user(state: SandboxState, params: Params, _: Params, body: Body) -> Answer:
    """``PUT /users/<id>/``: a partial update."""
    return 200, state.show_user(state.update_user(state.user(int(params["id"])), body))


def get_user_by_custom_id(state: SandboxState, params: Params, _: Params, __: Body) -> Answer:
    """``GET /users-by-id/<custom_id>/``."""
    return 200, state.show_user(state.user_by_custom_id(params["custom_id"]))


def update_user_by_custom_id(state: SandboxState, params: Params, _: Params, body: Body) -> Answer:
    """``PUT /users-by-id/<custom_id>/``: a partial update."""
    user = state.user_by_custom_id(params["custom_id"])
    return 200, state.show_user(state.update_user(user, body))


def update_or_create_user(state: SandboxState, _: Params, __: Params, body: Body) -> Answer:
    """``POST /users/update_or_create/``, matching on ``custom_id``.

    The real API answers only ``{"created", "id"}``. The sandbox answers the whole user object
    plus ``"created"`` (so callers also learn ``user_key``), with 201 when it created the user and
    200 when it updated one. A custom attribute named ``created`` is hidden by that key.
    """
    user, created = state.update_or_create_user(body)
    return (201 if created else 200), {**state.show_user(user), "created": created}


def create_event(state: SandboxState, _: Params, __: Params, body: Body) -> Answer:
    """``POST /events/``: 201 ``{"id", "created"}``."""
    return 201, state.create_event(body)


def create_site_view(state: SandboxState, _: Params, __: Params, body: Body) -> Answer:
    """``POST /site-views/``: 201 and the stored view with its ``id``."""
    return 201, state.create_site_view(body)


def create_company(state: SandboxState, _: Params, __: Params, body: Body) -> Answer:
    """``POST /companies/``: 201 and the new company."""
    return 201, state.show_company(state.create_company(body))


def get_company(state: SandboxState, params: Params, _: Params, __: Body) -> Answer:
    """``GET /companies/<id>/``."""
    return 200, state.show_company(state.company(int(params["id"])))


def update_company(state: SandboxState, params: Params, _: Params, body: Body) -> Answer:
    """``PUT /companies/<id>/``: a partial update."""
    company = state.company(int(params["id"]))
    return 200, state.show_company(state.update_company(company, body))


def get_company_by_custom_id(state: SandboxState, params: Params, _: Params, __: Body) -> Answer:
    """``GET /companies-by-id/<custom_id>/``."""
    return 200, state.show_company(state.company_by_custom_id(params["custom_id"]))


def update_company_by_custom_id(
    state: SandboxState, params: Params, _: Params, body: Body
) -> Answer:
    """``PUT /companies-by-id/<custom_id>/``: a partial update."""
    company = state.company_by_custom_id(params["custom_id"])
    return 200, state.show_company(state.update_company(company, body))


def add_member(state: SandboxState, params: Params, _: Params, body: Body) -> Answer:
    """``POST /companies/<id>/add_member/``: 200 ``{"id", "user_id", "added": true}``."""
    return 200, state.add_member(state.company(int(params["id"])), body)


HANDLERS: Mapping[str, Handler] = MappingProxyType(
    {
        "users-search": search_users,
        "users-update-or-create": update_or_create_user,
        "users-create": create_user,
        "users-detail": get_user,
        "users-update": update_user,
        "users-by-id": get_user_by_custom_id,
        "users-by-id-update": update_user_by_custom_id,
        "events-create": create_event,
        "site-views-create": create_site_view,
        "companies-create": create_company,
        "companies-detail": get_company,
        "companies-update": update_company,
        "companies-add-member": add_member,
        "companies-by-id": get_company_by_custom_id,
        "companies-by-id-update": update_company_by_custom_id,
    }
)
