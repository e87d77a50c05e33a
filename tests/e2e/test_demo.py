"""The README's first command, end to end: `scripts/demo.sh` (about 2½ minutes of CI time).

It brings up its own testbed, upgrades it through `set-version` with supervised controller
replicas, prints the final status and tears everything down; this test checks the story it
tells and that nothing of it is left on the machine.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_upgrades_the_testbed_and_leaves_nothing_behind() -> None:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "Published swarm-upgrade-desired-" in out
    for reason in ("RolloutStarted", "NodeDrained", "InstanceReimaging", "NodeRejoined",
                   "OldNodeRemoved", "LeaseHandedOver", "RolloutSucceeded"):
        assert f" {reason} " in out, reason
    status = out[out.index("6. swarm-upgrade status"):]
    assert "Verdict      done" in status and "5/5 (100%)" in status
    assert len(re.findall(r"17\.06\.1-ce-azure1 → 17\.06\.1-ce-azure1\s+upgraded", status)) == 5
    assert re.search(r"demo finished in \d+s \(exit 0\)", out)
    work = re.search(r"on unix://(/tmp/sud\.[A-Za-z0-9]+)/", out)
    assert work, out[-3000:]
    assert not Path(work.group(1)).exists()  # the testbed and the work dir are gone
