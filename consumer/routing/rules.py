"""Rules that derive event fields from the predictions, and the per-key cooldown.

They read the annotation lists already in wire form, so every input format is treated alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from consumer.model import Annotation, Annotations
from consumer.routing.values import Template

_DETECTION_KEYS = ("objectDetections", "instanceSegmentations", "keypoints")
# Every annotation list, detections first: the order the rules have always visited them in.
_ALL_KEYS = (*_DETECTION_KEYS, "classifications")
_SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}


def _detections(annotations: Annotations) -> Iterator[Annotation]:
    for key in _DETECTION_KEYS:
        yield from annotations.get(key, ())


def _everything(annotations: Annotations) -> Iterator[Annotation]:
    yield from _detections(annotations)
    yield from annotations.get("classifications", ())


@dataclass(frozen=True, slots=True)
class QualityRule:
    """``fail`` when any prediction of a listed class reaches the threshold, else ``pass``."""

    fail_classes: frozenset[str]
    min_confidence: float

    def result(self, annotations: Annotations) -> str:
        """The qc result for these predictions."""
        # Plain loops over the lists (not _everything): this runs for every message of a qc route.
        fail_classes, threshold = self.fail_classes, self.min_confidence
        for key in _ALL_KEYS:
            items = annotations.get(key)
            if items:
                for item in items:
                    if item["class"] in fail_classes and item["confidence"] >= threshold:
                        return "fail"
        return "pass"


@dataclass(frozen=True, slots=True)
class CountRule:
    """Item count: detections of the item classes (all classes when none are listed) above the threshold."""

    item_classes: frozenset[str]
    min_confidence: float
    item_type: str | None

    def count(self, annotations: Annotations) -> int:
        """How many items these predictions show."""
        return sum(
            1
            for item in _detections(annotations)
            if item["confidence"] >= self.min_confidence
            and (not self.item_classes or item["class"] in self.item_classes)
        )


@dataclass(frozen=True, slots=True)
class AlertClass:
    """What a listed class raises."""

    alert_type: str
    severity: str
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """The alert derived for one message."""

    alert_type: str
    severity: str
    description: str


@dataclass(frozen=True, slots=True)
class AlertRule:
    """Raise an alert only when a listed class is present; the most severe one wins."""

    classes: Mapping[str, AlertClass]
    min_confidence: float

    def alert(self, annotations: Annotations) -> Alert | None:
        """The alert for these predictions, or None when no listed class is present."""
        counts: dict[str, int] = {}
        best_confidence: dict[str, float] = {}
        for item in _everything(annotations):
            name = item["class"]
            confidence = item["confidence"]
            if name in self.classes and confidence >= self.min_confidence:
                counts[name] = counts.get(name, 0) + 1
                best_confidence[name] = max(best_confidence.get(name, 0.0), confidence)
        if not counts:
            return None
        winner = max(counts, key=lambda n: (_SEVERITY_RANK[self.classes[n].severity], best_confidence[n]))
        spec = self.classes[winner]
        description = spec.description or (
            f"{counts[winner]} x {winner} detected (confidence {best_confidence[winner]:.2f})"
        )
        return Alert(spec.alert_type, spec.severity, description)


@dataclass(slots=True)
class Cooldown:
    """At most one event per key per window, e.g. one alert per camera and alert type per 30 s.

    Suppressed messages do not restart the window. Keys older than the window are pruned when
    the table grows, so memory stays bounded by the number of keys active within one window.
    """

    seconds: float
    key: Template
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 100_000
    _last: dict[str, float] = field(default_factory=dict)

    def admit(self, context: Mapping[str, object]) -> bool:
        """True when an event for this context may go out now (and start a new window)."""
        key = self.key.render(context)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.seconds:
            return False
        if len(self._last) >= self.max_keys:
            self._prune(now)
        self._last[key] = now
        return True

    def _prune(self, now: float) -> None:
        expired = [k for k, t in self._last.items() if now - t >= self.seconds]
        for k in expired:
            del self._last[k]
