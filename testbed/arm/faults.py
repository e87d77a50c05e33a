"""Fault injection for the local ARM endpoint, armed by tests and benchmarks.

Operation names are the REST spec's operationIds as used in the route table (e.g.
``VirtualMachineScaleSets_UpdateInstances``, ``VirtualMachineScaleSetVMs_Reimage``,
``Identity_ClientCredentialsToken``); every `operation` argument is an fnmatch pattern, so
``"VirtualMachineScaleSetVMs_*"`` or ``"*"`` work too.

- `throttle_storm`: the next N requests (or every request for T seconds) answer 429 + Retry-After;
- `error`: the next `count` requests of an operation answer e.g. 500 InternalServerError;
- `fail_lro`: the next long-running operation of that kind (optionally for one instance) ends
  Failed with a code such as ``OSProvisioningTimedOut``; the instance is not touched;
- `slow`: reads of that kind answer late; instance operations (LROs) of that kind finish late;
- `never_boots`: every boot/reimage of the instance (until `boots_again`) stops the node and
  never brings it back; the operation fails ``OSProvisioningTimedOut`` after `seconds` (default:
  the server's boot timeout). (The real driver has its own driver-level never-boots fault.)
- `fail_tokens`: the token endpoints answer errors (Entra ID error bodies).
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class ThrottleStorm:
    """429s for the next `remaining` matching requests, or until `until` (monotonic)."""

    remaining: int | None
    until: float | None
    retry_after: int
    operations: list[str] | None


@dataclass
class ErrorFault:
    """The next `remaining` requests of `operation` answer `status` with `code`."""

    operation: str
    remaining: int
    status: int
    code: str
    message: str


@dataclass
class LroFault:
    """The next `remaining` LROs of `operation` (on a matching instance) end Failed with `code`."""

    operation: str
    scale_set: str | None
    instance_id: str | None
    remaining: int
    code: str
    message: str | None


@dataclass
class SlowFault:
    """Operations matching `operation` take `seconds` longer (`remaining` None = forever)."""

    operation: str
    seconds: float
    remaining: int | None


@dataclass
class Faults:
    """The armed faults; the server consumes them as requests arrive."""

    storms: list[ThrottleStorm] = field(default_factory=list)
    errors: list[ErrorFault] = field(default_factory=list)
    lro_failures: list[LroFault] = field(default_factory=list)
    slow_ops: list[SlowFault] = field(default_factory=list)
    dead_instances: dict[tuple[str, str], float | None] = field(default_factory=dict)

    # -- arming -------------------------------------------------------------------------------

    def throttle_storm(
        self,
        requests: int | None = None,
        seconds: float | None = None,
        *,
        retry_after: int = 1,
        operations: Iterable[str] | None = None,
    ) -> None:
        """Answer 429 + ``Retry-After: retry_after`` to the next `requests` ARM requests, or to
        every ARM request for `seconds` (token endpoints are not throttled)."""
        if requests is None and seconds is None:
            raise ValueError("throttle_storm: give requests= or seconds=")
        until = None if seconds is None else time.monotonic() + seconds
        self.storms.append(ThrottleStorm(requests, until, retry_after,
                                         None if operations is None else list(operations)))

    def error(self, operation: str, count: int = 1, *, status: int = 500,
              code: str = "InternalServerError",
              message: str = "An internal server error occurred (injected).") -> None:
        """The next `count` requests of `operation` answer `status` with ARM error `code`."""
        self.errors.append(ErrorFault(operation, count, status, code, message))

    def fail_lro(self, operation: str, *, scale_set: str | None = None,
                 instance_id: str | None = None, code: str = "OSProvisioningTimedOut",
                 message: str | None = None, count: int = 1) -> None:
        """The next `count` long-running `operation`s (on that instance, if given) end Failed
        with `code` (and `message`, by default one naming the operation and instance)."""
        self.lro_failures.append(LroFault(operation, scale_set, instance_id, count, code,
                                          message))

    def slow(self, operation: str, seconds: float, count: int | None = None) -> None:
        """Operations matching `operation` take `seconds` longer (the next `count`, or all)."""
        self.slow_ops.append(SlowFault(operation, seconds, count))

    def never_boots(self, scale_set: str, instance_id: str, seconds: float | None = None) -> None:
        """The instance's boots never complete (until `boots_again`); each fails after
        `seconds` (None: the server's boot timeout)."""
        self.dead_instances[(scale_set, instance_id)] = seconds

    def boots_again(self, scale_set: str, instance_id: str) -> None:
        """Undo `never_boots`."""
        self.dead_instances.pop((scale_set, instance_id), None)

    def fail_tokens(self, count: int = 1, *, status: int = 500) -> None:
        """The next `count` token requests (client secret or managed identity) fail."""
        code = "invalid_client" if status == 401 else "temporarily_unavailable"
        self.errors.append(ErrorFault("Identity_*Token", count, status, code,
                                      "Injected token endpoint failure."))

    def clear(self) -> None:
        """Disarm everything."""
        self.storms.clear()
        self.errors.clear()
        self.lro_failures.clear()
        self.slow_ops.clear()
        self.dead_instances.clear()

    # -- consuming ----------------------------------------------------------------------------

    def take_throttle(self, operation: str) -> int | None:
        """Retry-After seconds if a storm hits this request, else None."""
        now = time.monotonic()
        self.storms = [s for s in self.storms
                       if (s.remaining is None or s.remaining > 0)
                       and (s.until is None or s.until > now)]
        for storm in self.storms:
            if storm.operations is not None and not _matches_any(operation, storm.operations):
                continue
            if storm.remaining is not None:
                storm.remaining -= 1
            return storm.retry_after
        return None

    def take_error(self, operation: str) -> ErrorFault | None:
        """The error fault that hits this request, if any (consumes one count)."""
        for fault in self.errors:
            if fault.remaining > 0 and fnmatch.fnmatchcase(operation, fault.operation):
                fault.remaining -= 1
                return fault
        return None

    def take_lro_failure(self, operation: str, scale_set: str | None,
                         instance_id: str | None) -> LroFault | None:
        """The LRO failure that hits this operation on this instance, if any."""
        for fault in self.lro_failures:
            if fault.remaining <= 0 or not fnmatch.fnmatchcase(operation, fault.operation):
                continue
            if fault.scale_set is not None and fault.scale_set != scale_set:
                continue
            if fault.instance_id is not None and fault.instance_id != instance_id:
                continue
            fault.remaining -= 1
            return fault
        return None

    def delay(self, operation: str) -> float:
        """Extra seconds this operation takes (consumes counted slow faults)."""
        total = 0.0
        for fault in self.slow_ops:
            if fault.remaining is not None and fault.remaining <= 0:
                continue
            if fnmatch.fnmatchcase(operation, fault.operation):
                total += fault.seconds
                if fault.remaining is not None:
                    fault.remaining -= 1
        return total

    def never_boot(self, scale_set: str, instance_id: str, default: float) -> float | None:
        """Seconds until the boot of an instance armed never to boot fails; None if not armed."""
        key = (scale_set, instance_id)
        if key not in self.dead_instances:
            return None
        seconds = self.dead_instances[key]
        return default if seconds is None else seconds


def _matches_any(operation: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(operation, p) for p in patterns)
