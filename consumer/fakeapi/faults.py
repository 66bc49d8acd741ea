"""Fault injection: queued rules that replace responses with errors, delays or dropped sockets.

A rule matches requests whose path starts with its prefix. In *sequence* mode each matching
request consumes the next status of the rule, and once the rule has fired ``times`` times it is
gone and requests fall through to normal handling. In *ratio* mode (``fail_ratio`` set) each
matching request fires with that probability, drawn from a seeded RNG so a load test replays
the same faults. Rules are tried in the order they were added; the first that fires wins.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

_DEFAULT_STATUSES: Final = (500, 500)
_RULE_FIELDS: Final = frozenset(
    {
        "path_prefix",
        "statuses",
        "retry_after",
        "latency_s",
        "drop_connection",
        "times",
        "fail_ratio",
        "answer",
    }
)
# Success statuses whose body is not the contract's answer (a captive portal, a proxy, a wrong
# base URL), and the status each one answers with unless ``statuses`` says otherwise. The request
# is not handled: nothing is stored, exactly what a consumer trusting the status would miss.
WRONG_ANSWERS: Final[dict[str, int]] = {
    "html": 200,  # a portal's or proxy's HTML page
    "ok_true": 200,  # {"ok": true}
    "empty": 204,  # no body at all
    "wrong_ids": 201,  # {"eventIds": [...]} with ids that were not sent
    "duplicate_ids": 201,  # {"eventIds": [...]} naming the first event sent over and over
}
# Statuses a fault may answer with: informational 1xx would break HTTP framing.
_MIN_STATUS: Final = 200
_MAX_STATUS: Final = 599


@dataclass(frozen=True, slots=True)
class FaultAction:
    """What to do with one request.

    ``status`` None means: after ``latency_s``, handle the request normally (a delay-only rule).
    """

    status: int | None
    latency_s: float = 0.0
    drop_connection: bool = False
    retry_after: int | str | None = None
    answer: str | None = None


@dataclass(slots=True)
class FaultRule:
    """One queued rule; build it with :func:`make_rule`, which checks the arguments."""

    path_prefix: str
    statuses: tuple[int, ...]
    retry_after: int | str | None
    latency_s: float
    drop_connection: bool
    remaining: int | None  # firings left; None = unlimited
    fail_ratio: float | None
    answer: str | None = None
    fired: int = 0

    def describe(self) -> dict[str, Any]:
        """Describe the rule as JSON-ready data (for ``GET /_fake/faults``)."""
        return {
            "path_prefix": self.path_prefix,
            "statuses": list(self.statuses),
            "retry_after": self.retry_after,
            "latency_s": self.latency_s,
            "drop_connection": self.drop_connection,
            "remaining": self.remaining,
            "fail_ratio": self.fail_ratio,
            "answer": self.answer,
            "fired": self.fired,
        }


def make_rule(
    path_prefix: str,
    statuses: Sequence[int] = _DEFAULT_STATUSES,
    *,
    retry_after: int | str | None = None,
    latency_s: float = 0.0,
    drop_connection: bool = False,
    times: int | None = None,
    fail_ratio: float | None = None,
    answer: str | None = None,
) -> FaultRule:
    """Check the arguments of a rule and build it.

    ``times`` defaults to ``len(statuses)`` in sequence mode (each status is used once, in
    order; with a larger ``times`` the statuses repeat), and to unlimited when ``statuses`` is
    empty (a delay-only rule) or in ratio mode. With ``drop_connection`` each firing closes the
    socket without a response instead of sending a status. ``answer`` (a key of
    :data:`WRONG_ANSWERS`) answers a success status with a body that is not the contract's
    answer; its status is the answer's own unless ``statuses`` names other 2xx codes.
    """
    if not path_prefix.startswith("/"):
        raise ValueError("path_prefix must start with '/'")
    codes = tuple(statuses)
    if answer is not None:
        if answer not in WRONG_ANSWERS:
            raise ValueError(f"answer must be one of {sorted(WRONG_ANSWERS)}, got {answer!r}")
        if codes == _DEFAULT_STATUSES:
            codes = (WRONG_ANSWERS[answer],)
        if any(not 200 <= code <= 299 for code in codes):
            raise ValueError("an answer fault needs 2xx statuses")
    for code in codes:
        if isinstance(code, bool) or not isinstance(code, int) or not _MIN_STATUS <= code <= _MAX_STATUS:
            raise ValueError(f"statuses must be HTTP codes {_MIN_STATUS}-{_MAX_STATUS}, got {code!r}")
    if not math.isfinite(latency_s) or latency_s < 0:
        raise ValueError("latency_s must be >= 0")
    if fail_ratio is not None and not 0.0 <= fail_ratio <= 1.0:
        raise ValueError("fail_ratio must be between 0 and 1")
    if times is not None and times < 1:
        raise ValueError("times must be >= 1")
    if isinstance(retry_after, int) and retry_after < 0:
        raise ValueError("retry_after must be >= 0")
    remaining = times
    if remaining is None and fail_ratio is None and codes:
        remaining = len(codes)
    return FaultRule(
        path_prefix=path_prefix,
        statuses=codes,
        retry_after=retry_after,
        latency_s=float(latency_s),
        drop_connection=drop_connection,
        remaining=remaining,
        fail_ratio=fail_ratio,
        answer=answer,
    )


def _typed(data: Mapping[str, Any], key: str, types: tuple[type, ...], default: Any) -> Any:
    value = data.get(key, default)
    # bool is an int subclass; only drop_connection may be a bool.
    wrong_bool = isinstance(value, bool) and bool not in types
    if value is not default and (wrong_bool or not isinstance(value, types)):
        raise TypeError(f"{key} has the wrong type")
    return value


def rule_from_json(data: Any) -> FaultRule:
    """Build a rule from the JSON body of ``POST /_fake/faults`` (keys as :func:`make_rule`)."""
    if not isinstance(data, Mapping):
        raise TypeError("a fault rule must be a JSON object")
    unknown = set(data) - _RULE_FIELDS
    if unknown:
        raise ValueError(f"unknown fault fields: {sorted(unknown)}")
    if not isinstance(data.get("path_prefix"), str):
        raise TypeError("path_prefix (string) is required")
    return make_rule(
        path_prefix=data["path_prefix"],
        statuses=_typed(data, "statuses", (list,), _DEFAULT_STATUSES),
        retry_after=_typed(data, "retry_after", (int, str), None),
        latency_s=float(_typed(data, "latency_s", (int, float), 0.0)),
        drop_connection=_typed(data, "drop_connection", (bool,), False),
        times=_typed(data, "times", (int,), None),
        fail_ratio=_typed(data, "fail_ratio", (int, float), None),
        answer=_typed(data, "answer", (str,), None),
    )


class FaultPlan:
    """The thread-safe set of active faults: queued rules, a global delay, broken auth."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        # Not for security: fault injection wants a seeded, reproducible sequence.
        self._rng = random.Random(seed)  # noqa: S311
        self._rules: list[FaultRule] = []
        self.latency_s = 0.0
        self.auth_broken = False

    def add(self, rule: FaultRule) -> None:
        """Queue ``rule`` after the existing ones."""
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> int:
        """Remove every rule; return how many there were."""
        with self._lock:
            count = len(self._rules)
            self._rules.clear()
            return count

    def reset(self) -> None:
        """Remove rules, the global delay and broken auth; reseed the RNG."""
        with self._lock:
            self._rules.clear()
            self._rng.seed(self._seed)
            self.latency_s = 0.0
            self.auth_broken = False

    def rules(self) -> list[dict[str, Any]]:
        """Describe the rules still queued, as JSON-ready data."""
        with self._lock:
            return [rule.describe() for rule in self._rules]

    def take(self, path: str) -> FaultAction | None:
        """Return the action for a request to ``path``, consuming a firing of the rule that fires."""
        with self._lock:
            if not self._rules:
                return None
            for rule in self._rules:
                if not path.startswith(rule.path_prefix):
                    continue
                if rule.fail_ratio is not None and self._rng.random() >= rule.fail_ratio:
                    continue
                return self._fire(rule)
            return None

    def _fire(self, rule: FaultRule) -> FaultAction:
        status: int | None = None
        if rule.statuses:
            if rule.fail_ratio is None:
                status = rule.statuses[rule.fired % len(rule.statuses)]
            else:
                status = self._rng.choice(rule.statuses)
        rule.fired += 1
        if rule.remaining is not None:
            rule.remaining -= 1
            if rule.remaining <= 0:
                self._rules.remove(rule)
        return FaultAction(
            status=status,
            latency_s=rule.latency_s,
            drop_connection=rule.drop_connection,
            retry_after=rule.retry_after,
            answer=rule.answer,
        )
