"""overlayd dataplane layer."""

from dataplane.pyroute2_lean import register as _lean_pyroute2

_lean_pyroute2()
