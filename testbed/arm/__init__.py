"""Local HTTPS Azure Resource Manager endpoint for the testbed (what the real Azure SDKs call).

Public API: `ArmServer` (server.py), its `Faults` (faults.py) and `RequestLogEntry`
(requestlog.py); `FakeDriver` (fake_driver.py) for tests without real nodes.
"""

from testbed.arm.faults import Faults
from testbed.arm.requestlog import RequestLogEntry
from testbed.arm.server import ArmServer

__all__ = ["ArmServer", "Faults", "RequestLogEntry"]
