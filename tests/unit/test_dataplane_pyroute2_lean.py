"""The daemon imports pyroute2's rtnetlink parts only; the rest of pyroute2 still works."""

from __future__ import annotations

import subprocess
import sys

# Run in a fresh interpreter: this test process has long imported all of pyroute2.
PROBE = """
import sys
import daemon.engine
loaded = sorted(m for m in sys.modules if m.startswith("pyroute2"))
print(len(loaded), "pyroute2.ndb.main" in loaded, "pyroute2.ipdb" in loaded)
from pyroute2 import IPRoute, NDB
from pyroute2.iproute.linux import AsyncIPRoute
print(IPRoute.__module__, NDB.__module__, AsyncIPRoute.__name__)
"""


def test_daemon_leaves_pyroute2_extras_unimported_and_package_still_complete() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True).stdout.split("\n")  # fmt: skip
    count, ndb, ipdb = out[0].split()
    assert (ndb, ipdb) == ("False", "False")
    assert int(count) < 130  # the full package is ~160 modules
    assert out[1] == "pyroute2.iproute.linux pyroute2.ndb.main AsyncIPRoute"
