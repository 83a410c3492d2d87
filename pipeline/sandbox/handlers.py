"""One function per API route: state, path parameters, query and body in; status and JSON out.

Each docstring says where its answer's shape comes from: a section (§) of
/work/shared/usercom-api.md and its evidence level (DOC: current v2 docs; DOC-OLD: older
official docs; CLIENT: public clients; MOCK: RudderStack fixtures; INFER: our guess, mostly
Django REST Framework conventions; UNKNOWN). Success statuses (200 vs 201) are UNKNOWN (§2.1):
the sandbox answers 201 for a create and 200 otherwise, DRF's defaults (INFER).
"""

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
    ``?phone_number=``: a paginated envelope, 200 even when empty.

    One user for key / email: §4.1, §4.2 (D-key, D-email DOC; RS-mock MOCK); the first of
    several users sharing an email is UNKNOWN behaviour (§4.2). 404 ``{"detail": "Not found."}``:
    status CLIENT (BB), body INFER. ``many=true`` as a bare array: §4.2 (NET, CLIENT). Phone as
    an envelope: §4.3, RudderStack's assumption (RS; the real shape is UNKNOWN). ``?key=``
    finds the user whatever ``user_key_field`` names its key in the answer (§9).
    """
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
    """``POST /users/``: 201 and the new user (§4.5: the full user object, D-create DOC).

    Names over 40 and city / phone over 64 characters are a 400 field error (§3.5, §9).
    """
    return 201, state.show_user(state.create_user(body))


def get_user(state: SandboxState, params: Params, _: Params, __: Body) -> Answer:
    """``GET /users/<id>/``: the user object (§3.1, DOC examples); 404 when unknown (INFER)."""
    return 200, state.show_user(state.user(int(params["id"])))


def update_user(state: SandboxState, params: Params, _: Params, body: Body) -> Answer:
    """``PUT /users/<id>/``: a partial update, answered with the user (§4.6, D-update DOC)."""
    return 200, state.show_user(state.update_user(state.user(int(params["id"])), body))


def get_user_by_custom_id(state: SandboxState, params: Params, _: Params, __: Body) -> Answer:
    """``GET /users-by-id/<custom_id>/``: the user object (§4.4: NET, MAG CLIENT; RS-mock
    MOCK); 404 ``{"detail": "Not found."}`` when unknown (status CLIENT, body INFER)."""
    return 200, state.show_user(state.user_by_custom_id(params["custom_id"]))


def update_user_by_custom_id(state: SandboxState, params: Params, _: Params, body: Body) -> Answer:
    """``PUT /users-by-id/<custom_id>/``: a partial update (§4.4 sibling routes, CLIENT)."""
    user = state.user_by_custom_id(params["custom_id"])
    return 200, state.show_user(state.update_user(user, body))


def update_or_create_user(state: SandboxState, _: Params, __: Params, body: Body) -> Answer:
    """``POST /users/update_or_create/``, matching on ``custom_id``: exactly
    ``{"created": bool, "id": int}``, not the user object (§4.7 and §9, D-uoc DOC), so a caller
    that needs the ``user_key`` must look the user up. 201 when it created the user, 200 when it
    updated one (INFER, §2.1). A missing ``custom_id`` is a 400 here (the docs mark it optional;
    what the API then does is UNKNOWN, §4.7).
    """
    user, created = state.update_or_create_user(body)
    return (201 if created else 200), {"created": created, "id": user.id}


def create_event(state: SandboxState, _: Params, __: Params, body: Body) -> Answer:
    """``POST /events/``: 201 ``{"id", "created"}`` (§4.9, D-event DOC). An unknown
    ``user_id`` is a 400 on ``user_id`` (UNKNOWN: 400 or 404, §4.9)."""
    return 201, state.create_event(body)


def create_event_by_custom_id(state: SandboxState, params: Params, _: Params, body: Body) -> Answer:
    """``POST /users-by-id/<custom_id>/events/`` with ``{name, timestamp, data}``: 201
    ``{"id", "created"}`` (§4.10 and §9: user.com/pl/api DOC-OLD; UR, GO, BB, NET CLIENT).

    The event is stored as a ``POST /events/`` event of that user (same ids, same ``created``
    rule). An unknown custom id is a 404 ``{"detail": "Not found."}`` (INFER, like every
    ``users-by-id`` route, §2.1). A ``user_id`` in the body (GO sends the custom id there) is
    ignored: the path names the user.
    """
    return 201, state.record_event(state.user_by_custom_id(params["custom_id"]), body)


def create_site_view(state: SandboxState, _: Params, __: Params, body: Body) -> Answer:
    """``POST /site-views/``: 201 and the stored view with its ``id``. No official text exists
    (§4.11): fields from RudderStack (RS); the echo answer is INFER."""
    return 201, state.create_site_view(body)


def create_company(state: SandboxState, _: Params, __: Params, body: Body) -> Answer:
    """``POST /companies/``: 201 and the new company (§4.12 RS/NET CLIENT; shape §3.6 MOCK)."""
    return 201, state.show_company(state.create_company(body))


def get_company(state: SandboxState, params: Params, _: Params, __: Body) -> Answer:
    """``GET /companies/<id>/``: the company object (§4.12, NET CLIENT; §3.6 MOCK)."""
    return 200, state.show_company(state.company(int(params["id"])))


def update_company(state: SandboxState, params: Params, _: Params, body: Body) -> Answer:
    """``PUT /companies/<id>/``: a partial update (§4.12: RS, NET CLIENT; RS-mock MOCK)."""
    company = state.company(int(params["id"]))
    return 200, state.show_company(state.update_company(company, body))


def get_company_by_custom_id(state: SandboxState, params: Params, _: Params, __: Body) -> Answer:
    """``GET /companies-by-id/<custom_id>/``: the company or 404 (§4.12: RS, NET CLIENT; the
    404 is INFER)."""
    return 200, state.show_company(state.company_by_custom_id(params["custom_id"]))


def update_company_by_custom_id(
    state: SandboxState, params: Params, _: Params, body: Body
) -> Answer:
    """``PUT /companies-by-id/<custom_id>/``: a partial update (§4.12, NET CLIENT)."""
    company = state.company_by_custom_id(params["custom_id"])
    return 200, state.show_company(state.update_company(company, body))


def add_member(state: SandboxState, params: Params, _: Params, body: Body) -> Answer:
    """``POST /companies/<id>/add_member/``: 200 ``{"id", "user_id", "added": true}``. Takes
    ``user_id`` and/or ``user_custom_id`` (§4.12 RS; §9 MAG sends ``user_id`` alone, CLIENT);
    the answer's shape is UNKNOWN (§4.12), this one is INFER."""
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
        "users-by-id-events-create": create_event_by_custom_id,
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
