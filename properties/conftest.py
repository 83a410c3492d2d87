"""Hypothesis profiles `dev` (fast, the default) and `ci` (thorough): HYPOTHESIS_PROFILE picks."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Properties drive whole flows through httpx.MockTransport: data generation is the slow part.
_RELAXED = (HealthCheck.too_slow, HealthCheck.data_too_large)

settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=_RELAXED, print_blob=True
)
settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    derandomize=False,
    suppress_health_check=_RELAXED,
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
