"""PostgreSQL ledger URIs as an operator mistypes them or an attacker crafts them
(DELIVERY §7): the password never in a message, libpq's forms accepted, and what a message
names can be pasted back into a command."""

from __future__ import annotations

import pytest

from pipeline.delivery.pg.location import (
    LocationError,
    PgLocation,
    is_uri,
    ledger_location,
    masked,
)

SECRET = "SECRETPW"


@pytest.mark.parametrize(
    "uri",
    [
        f"postgresql://u:{SECRET}@h\uff1ast/db",  # a full-width colon: Python names the netloc
        f"postgresql://u:{SECRET}@h\u2100st/db",
        f"postgresql://u:{SECRET}@[::1/db",
        f"postgresql://u:{SECRET}@h:abc/db",
    ],
)
def test_an_invalid_uri_is_refused_without_its_password(uri: str) -> None:
    with pytest.raises(LocationError) as refused:
        ledger_location(uri)
    assert SECRET not in str(refused.value)
    assert "\n" not in str(refused.value)


def test_several_hosts_in_libpq_syntax_are_one_ledger() -> None:
    uri = f"postgresql://u:{SECRET}@10.0.0.1:5432,10.0.0.2:5433/db?target_session_attrs=read-write"
    found = ledger_location(uri)
    assert isinstance(found, PgLocation)
    assert SECRET not in found.shown


@pytest.mark.parametrize(
    "uri", ["postgres:///db", "postgresql:///db?host=/run/pg", "postgresql://"]
)
def test_a_uri_without_a_host_is_shown_as_a_uri_still(uri: str) -> None:
    assert is_uri(masked(uri)), masked(uri)
    assert masked(uri) == uri
