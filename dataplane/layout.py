"""Where an overlayd instance keeps its sandbox namespaces (pure: paths only).

    <run_dir>/netns/ovl-<network_id[:10]>

`run_dir` belongs to one overlayd instance (Dataplane(run_dir=...)): run_dir_for(state_dir)
gives /run/overlayd/<12 hex of sha256(realpath(state_dir))>, so two daemons on one machine
(different --state-dir) never share a file, a mount or a name, and everything under it is
that instance's own. /run is a tmpfs: a reboot, which ends every netns, forgets them too.
"""

from __future__ import annotations

import hashlib
import os

DEFAULT_RUN_DIR = "/run/overlayd"
SANDBOX_PREFIX = "ovl-"


def run_dir_for(state_dir: str) -> str:
    """A run dir of one's own for the daemon using `state_dir`, stable across restarts."""
    digest = hashlib.sha256(os.path.realpath(state_dir).encode()).hexdigest()[:12]
    return os.path.join(DEFAULT_RUN_DIR, digest)


def sandbox_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "netns")


def sandbox_path(run_dir: str, network_id: str) -> str:
    return os.path.join(sandbox_dir(run_dir), SANDBOX_PREFIX + network_id[:10])
