"""usercom-pipeline's pytest plugin, registered as the ``pytest11`` entry point ``usercom``.

Installing the package is enough: any test may ask for the ``usercom_fake`` fixture, a fresh
``pipeline.testing.FakeUserCom`` per test (no socket, nothing to start or stop)::

    def test_identify_looks_the_user_up(usercom_fake):
        pipeline.process(item, transport=usercom_fake)
        assert usercom_fake.requests[0].method == "GET"

The marker ``@pytest.mark.usercom(**options)`` gives the test's fake options, the keyword
arguments of ``FakeUserCom`` (``api_key=``, ``forced=["users-by-id-events-create=503x2"]``,
``throttle_rate=``, ``seed=``, ...).

This module imports only pytest at start-up; the fake is imported when a test first uses it,
so having the package installed costs other test suites nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pipeline.testing.fake import FakeUserCom

MARKER = "usercom"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): FakeUserCom options for the usercom_fake fixture "
        "(api_key=, forced=, throttle_rate=, error_rate=, drop_rate=, seed=, ...)",
    )


@pytest.fixture
def usercom_fake(request: pytest.FixtureRequest) -> FakeUserCom:
    """A fresh in-process User.com (``pipeline.testing.FakeUserCom``) for this test."""
    marker = request.node.get_closest_marker(MARKER)
    return fake_for(dict(marker.kwargs) if marker is not None else {})


def fake_for(options: dict[str, Any]) -> FakeUserCom:
    """The fake a marker's options describe; a bad option fails the test in one line."""
    # Imported here, not at the top: pytest loads this plugin in every run of every project.
    from pipeline.testing.fake import FakeUserCom

    try:
        return FakeUserCom(**options)
    except (TypeError, ValueError) as error:
        problem = str(error)
    # Failed outside the except block: pytest would print the refusal a second time, as the
    # exception this one happened "during the handling of".
    pytest.fail(f"@pytest.mark.{MARKER}: {problem}", pytrace=False)
