"""Optional enforcement of an Azure role definition's action list (403 AuthorizationFailed).

A role definition lists ``actions`` (and ``notActions``) with ``*`` wildcards, matched
case-insensitively, e.g. ``Microsoft.Compute/virtualMachineScaleSets/read`` or
``Microsoft.Compute/virtualMachineScaleSets/*``. With no action list every request is allowed.
As in Azure, polling a long-running operation's status needs
``Microsoft.Compute/locations/operations/read`` (ARM docs, "Track asynchronous Azure
operations": status tracking needs permission on the operation resource).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from aiohttp import web

from testbed.arm.routing import arm_error


class RoleCheck:
    """Answers whether a role with `actions` minus `not_actions` may perform an action."""

    def __init__(self, actions: Iterable[str] | None, not_actions: Iterable[str] = ()) -> None:
        self.actions = None if actions is None else [a.lower() for a in actions]
        self.not_actions = [a.lower() for a in not_actions]

    def allows(self, action: str) -> bool:
        """True when `action` matches an action and no notAction (or no list is enforced)."""
        if self.actions is None:
            return True
        wanted = action.lower()
        granted = any(fnmatch.fnmatchcase(wanted, pattern) for pattern in self.actions)
        denied = any(fnmatch.fnmatchcase(wanted, pattern) for pattern in self.not_actions)
        return granted and not denied

    def refusal(self, principal: str, action: str, scope: str) -> web.Response:
        """ARM's 403 for a missing action."""
        return arm_error(
            403,
            "AuthorizationFailed",
            f"The client '{principal}' with object id '{principal}' does not have authorization "
            f"to perform action '{action}' over scope '{scope}' or the scope is invalid. If "
            "access was recently granted, please refresh your credentials.",
        )
