"""Run-level faults (DELIVERY §1, §3): answers that concern every event, not the one sent.

A refused key, a wrong URL or an unreachable host stops the run; no event is filed as
finished because of them. What counts is decided here, purely, from the request's endpoint
and the answer; the probe that every run starts with is `wire.Wire.probe`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pipeline.core.answers import Answer, Kind, Reply, Unreachable, meaning
from pipeline.core.calls import Request, call
from pipeline.runner import Target

# A custom id no real user has: the probe expects "not found" (or, rarely, a user).
PROBE_SUBJECT = "usercom-pipeline-probe"
# True at the start and after deliveries were filed: the fault itself finishes nothing.
RESUME = (
    "this fault finishes no event: those in flight or not yet sent stay pending; "
    "re-run with the same --ledger when fixed"
)
# Answers that stop a run whatever was asked: the key refused, the URL redirected.
_STOPS: frozenset[Kind] = frozenset({"refused", "redirect"})


class RunFault(Exception):
    """The run must stop: the message names the cause and the fix."""


def run_fault(request: Request, answer: Answer, target: Target) -> str | None:
    """The run-level fault an answer shows, if it shows one (DELIVERY §3)."""
    if not isinstance(answer, Reply):
        return None
    status, kind = answer.status, meaning(answer)
    if kind == "refused":
        return (
            f"User.com refused the API key ({status}) at {target.origin}: check apiKey "
            f"(and appSubdomain); {RESUME}"
        )
    if kind == "redirect":
        return (
            f"{target.origin} answered a redirect ({status}) to {request.method} "
            f"{request.readable_path()}: the URL is wrong, check --base-url and appSubdomain; "
            f"{RESUME}"
        )
    if kind == "not found" and request.endpoint.collection:
        return (
            f"{target.origin} has no {request.method} {request.readable_path()} (404), which "
            f"every User.com app has: the URL is wrong, check --base-url and appSubdomain; "
            f"{RESUME}"
        )
    return None


def outage_fault(seconds: float) -> str:
    return (
        f"User.com has failed (5xx, timeouts, lost connections) for {seconds:.0f} s, longer "
        f"than --max-outage; {RESUME}"
    )


def probe_fault(answer: Answer, target: Target) -> str | None:
    """Whether the probe got an answer from User.com: a JSON object, found or not found."""
    origin = target.origin
    match answer:
        case Unreachable(reason=reason, detail=detail):
            return (
                f"User.com could not be reached at {origin} ({reason}: {detail}): check "
                f"--base-url, appSubdomain and the network; {RESUME}"
            )
        case Reply() if meaning(answer) in _STOPS:
            request = call("user_by_id", PROBE_SUBJECT)
            return run_fault(request, answer, target)
        case Reply(status=status, body=body) if status in (200, 404):
            if isinstance(body, Mapping):
                return None
            return (
                f"{origin} answered {status} with a body that is not User.com's JSON: check "
                f"--base-url and appSubdomain; {RESUME}"
            )
        case Reply() if meaning(answer) in ("throttled", "server error"):
            return None  # User.com answered; throttling and outages are handled per request
        case Reply(status=status):
            return (
                f"{origin} gave an answer User.com does not give ({status}): check --base-url "
                f"and appSubdomain; {RESUME}"
            )


ProbeVerdict = Literal["answered", "failed", "fault"]


def probe_verdict(answer: Answer, target: Target) -> tuple[ProbeVerdict, str]:
    """What a probe made during a pause (DELIVERY §3) shows, and why.

    "answered": User.com answered (a found or not-found JSON object, or a 429): no outage.
    "fault": the key is refused or the URL redirects, which stops the run as on any request.
    "failed": no User.com answer (a 5xx, a timeout, a lost connection, a body that is not
    User.com's JSON, as a proxy's error page is): the outage goes on.
    """
    origin = target.origin
    match answer:
        case Reply() if meaning(answer) in _STOPS:
            return "fault", run_fault(call("user_by_id", PROBE_SUBJECT), answer, target) or ""
        case Reply(status=429):
            return "answered", ""
        case Reply(status=status, body=body) if status in (200, 404) and isinstance(body, Mapping):
            return "answered", ""
        case Reply(status=status) if status in (200, 404):
            return "failed", f"{origin} answered the probe with {status} but not User.com's JSON"
        case Reply(status=status):
            return "failed", f"User.com at {origin} answered the probe with {status}"
        case Unreachable(reason=reason, detail=detail):
            return "failed", f"User.com at {origin} could not be reached ({reason}: {detail})"
