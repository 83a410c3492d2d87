"""How a sandbox misbehaves: the frozen knobs passed to ``create_app``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class SandboxOptions:
    """Authentication, latency and fault-injection settings of one sandbox app.

    Rates are probabilities in ``[0, 1]`` drawn per request from the app's seeded random source.

    >>> SandboxOptions(error_rate=0.5).error_rate
    0.5
    >>> SandboxOptions(drop_rate=2)
    Traceback (most recent call last):
    ...
    ValueError: drop_rate must be between 0 and 1, got 2
    """

    api_key: str | None = None
    """The only accepted token; ``None`` accepts any non-empty token."""
    latency_ms: float = 0
    """Delay added before every API request is answered."""
    error_rate: float = 0
    """Share of API requests answered with a random 500, 502 or 503."""
    throttle_rate: float = 0
    """Share of API requests answered with 429 and ``Retry-After: 1``."""
    drop_rate: float = 0
    """Share of API requests whose connection is dropped before the handler runs."""
    lost_response_rate: float = 0
    """Share of non-GET API requests that are performed, then their connection is dropped."""
    rate_limit_rps: float | None = None
    """Token-bucket limit in requests per second (burst = max(1, rps)); ``None`` = unlimited."""
    forced_status: Mapping[str, int] = field(default_factory=dict)
    """Route name (``"users-by-id"``) or path prefix (``"/users-by-id/"``) -> forced status."""
    seed: int = 0
    """Seed of the app's single random source (user keys and fault draws)."""

    def __post_init__(self) -> None:
        for name in ("error_rate", "throttle_rate", "drop_rate", "lost_response_rate"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must not be negative, got {self.latency_ms}")
        if self.rate_limit_rps is not None and self.rate_limit_rps <= 0:
            raise ValueError(f"rate_limit_rps must be positive, got {self.rate_limit_rps}")
        for key, status in self.forced_status.items():
            if not 200 <= status <= 599:
                raise ValueError(f"forced_status[{key!r}] is not an HTTP status: {status}")
        object.__setattr__(self, "forced_status", MappingProxyType(dict(self.forced_status)))
