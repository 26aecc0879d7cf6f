"""Import pyroute2's rtnetlink parts without its package ``__init__``.

pyroute2's ``__init__`` imports every API it has (NDB, IPDB, nl80211, conntrack, IPVS,
plan9, ...: ~160 modules, ~5 MB of a daemon's resident memory); the data plane uses the
rtnetlink socket and message classes only. ``register`` puts the package in
``sys.modules`` without running that file, so ``pyroute2.iproute.linux`` and friends import
alone. Asking the package itself for a name still works: a submodule is imported, anything
else runs the real ``__init__`` first (tests use ``from pyroute2 import IPRoute``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys


def register() -> None:
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None:
        return  # the import below will fail with pyroute2's own message
    package = importlib.util.module_from_spec(spec)

    def full(name: str) -> object:
        if importlib.util.find_spec(f"pyroute2.{name}") is not None:
            return importlib.import_module(f"pyroute2.{name}")
        del package.__getattr__
        spec.loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = full  # type: ignore[method-assign]
    sys.modules["pyroute2"] = package

