"""Run a bash script as root inside a throwaway User-Mode Linux kernel, for kernel features the
host lacks.

Why: the host kernel has netns, veth, bridge, VXLAN, nftables and xfrm but no ESP
(CONFIG_INET_ESP is off, so `ip xfrm state add ... proto esp` is refused). Debian's
`user-mode-linux` package is a stock 6.1 kernel built as an ordinary program
(/usr/bin/linux.uml) with ESP as a module, so an encrypted data path can be tested for real.

How one run goes (`run_in_uml`):
- The harness makes a temp dir D (removed afterwards) holding our init, the script, and
  UML's pid/mconsole dir (`uml_dir=D/uml`, `umid=<name of D>`: nothing lands in ~/.uml).
- UML boots with the host's root as read-only hostfs (`rootfstype=hostfs rootflags=/ ro`)
  and `init=D/init`; it gets no eth devices, so nothing inside can reach the outside: all
  networking happens in netns/veth inside the UML kernel. Its console goes to D/console.log.
- init (PID 1) mounts proc, sysfs, devpts, and tmpfs on /run, /tmp, /var/tmp, /var/lib and
  /dev/shm (the rest of the root stays read-only, hence PYTHONDONTWRITEBYTECODE=1 and
  HOME=/tmp; the host's /tmp is hidden inside, except the repo: a checkout under one of
  those dirs is mounted back, read-only, at its path), mounts D read-write at /run/uml/host
  (HOST_MOUNT: a script may leave files there) through a second hostfs mount, sets up
  the modules (below), brings `lo` up and runs the script from the repo root with
  stdout+stderr into D/output. It then writes the exit code to D/rc, syncs (hostfs writes
  go through UML's page cache) and powers off with `echo o > /proc/sysrq-trigger`.
- UML runs as PID 1 of a PID namespace of its own (`unshare --pid --kill-child`, itself
  under `setpriv --pdeathsig KILL`): UML's helper host processes (one per guest address
  space, plus I/O helpers) survive the death of its main process otherwise, and this way
  they all die even when pytest is SIGKILLed. The host polls against the deadline; on
  timeout it SIGKILLs the lot, waits until no process with its umid is left, and raises
  UmlError with the tails of the console, init log and script output.
- Typical cost on the 2-core dev machine: ~1.5 s to reach init, ~1 s of setup (overlay,
  modules), ~0.3 s to power off: about 3 s plus the script.

Trust: the script runs as root in a kernel that sees the whole host file system through
hostfs (read-only only by mount option); a script could remount it read-write. Run only
the project's own scripts.

Kernel modules: the package keeps them in /usr/lib/uml/modules/<release>, but modprobe only
looks in /lib/modules/<release>, and /lib/modules does not even exist on this (read-only)
root, so there is nothing to bind-mount onto. init therefore `insmod`s overlay.ko by path,
puts a tmpfs overlay on /usr/lib and symlinks /usr/lib/modules/<release> to the package's
directory. After that plain `modprobe` works, and so does the kernel's own on-demand
loading (veth, vxlan, crypto-rfc4106(gcm(aes)), nft chains...) through /sbin/modprobe.
`kmod` (modprobe/insmod) is a Debian package of its own, installed by scripts/setup.sh.
init preloads DEFAULT_MODULES and fails the run (UmlError) if one does not load.

Limits of this kernel (6.1.176um, Debian config): nftables has only the `bridge` family
(CONFIG_NF_TABLES_IPV4/IPV6/INET/NETDEV are off): `nft add table ip|inet ...` answers
"Operation not supported". ESP, xfrm, veth, bridge, vxlan, netns work.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = str(REPO / ".venv" / "bin" / "python")  # the same path inside UML (hostfs root)
KERNEL_CANDIDATES = ("/usr/bin/linux.uml", "/usr/bin/linux", "/usr/bin/vmlinux")
MODULES_ROOT = "/usr/lib/uml/modules"
DEFAULT_MODULES = (
    "esp4", "xfrm_user", "gcm", "ghash_generic", "ctr", "seqiv",  # ESP with rfc4106(gcm(aes))
    "veth", "bridge", "vxlan", "nf_tables",
)  # fmt: skip
HOST_MOUNT = "/run/uml/host"  # where init mounts the harness's temp dir, read-write

# PID 1 inside UML. Must never exit (the kernel would panic): every path ends in `halt`.
INIT = r"""#!/bin/bash
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
H=@HOST_MOUNT@
halt() {
  sync
  echo o > /proc/sysrq-trigger
  while :; do sleep 60; done
}
fail() { echo "uml-init: FAILED: $*" >&2; halt; }
mount -t proc proc /proc || fail "mount /proc"
mount -t tmpfs -o mode=755 tmpfs /run || fail "mount /run"
mkdir -p "$H" && mount -t hostfs hostfs "$H" -o @HOST_DIR@ || fail "hostfs mount of @HOST_DIR@"
exec >>"$H/init.log" 2>&1
up() { read -r s _ </proc/uptime; echo "uml-init: $s $*"; }
up "init started"
mount -t sysfs sysfs /sys || fail "mount /sys"
for d in /tmp /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs "$d" || fail "tmpfs on $d"; done
mount -t tmpfs -o mode=755 tmpfs /var/lib || fail "tmpfs on /var/lib"
mkdir -p /dev/shm /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm || fail "tmpfs on /dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts || fail "devpts"
for f in fd:/proc/self/fd stdin:/proc/self/fd/0 stdout:/proc/self/fd/1 stderr:/proc/self/fd/2
do [ -e "/dev/${f%%:*}" ] || ln -s "${f#*:}" "/dev/${f%%:*}"; done
rel=$(uname -r)
mods=@MODULES_ROOT@/$rel
[ -d "$mods" ] || fail "no modules for $rel in @MODULES_ROOT@"
insmod "$mods/kernel/fs/overlayfs/overlay.ko" || fail "insmod overlay.ko"
mkdir -p /run/uml/usrlib/upper /run/uml/usrlib/work
mount -t overlay overlay \
  -o lowerdir=/usr/lib,upperdir=/run/uml/usrlib/upper,workdir=/run/uml/usrlib/work /usr/lib \
  || fail "overlay on /usr/lib"
mkdir -p /usr/lib/modules && ln -s "$mods" "/usr/lib/modules/$rel" || fail "/lib/modules link"
modprobe -a @MODULES@ || fail "modprobe @MODULES@"
ip link set lo up || fail "lo up"
up "setup done, running script"
export HOME=/tmp LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
if [ ! -d @REPO@ ]; then  # a checkout under /tmp, /run or /var/lib: hidden by a tmpfs above
  mkdir -p @REPO@ && mount -r -t hostfs hostfs @REPO@ -o @REPO@ || fail "hostfs mount of @REPO@"
fi
cd @REPO@ || fail "cd @REPO@"
bash "$H/script.sh" </dev/null >"$H/output" 2>&1
rc=$?
up "script exited $rc"
sync
echo "$rc" >"$H/rc.tmp" && mv "$H/rc.tmp" "$H/rc"
halt
"""


class UmlError(RuntimeError):
    """UML did not run the script to the end (boot/setup failure, timeout, crash)."""

    def __init__(self, message: str, umid: str = "") -> None:
        super().__init__(f"[umid {umid}] {message}" if umid else message)
        self.umid = umid  # in every UML host process's command line: lets tests look for them


@dataclass
class UmlResult:
    returncode: int  # the script's exit code, as seen inside UML
    output: str  # the script's stdout and stderr, interleaved
    seconds: float  # wall time of the whole run: boot, script, power-off


def uml_kernel() -> str | None:
    """Path of the UML kernel binary, or None when the package is not installed."""
    return next((k for k in KERNEL_CANDIDATES if os.access(k, os.X_OK)), None)


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<none>"
    return text if len(text) <= limit else "..." + text[-limit:]


def uml_processes(umid: str) -> list[int]:
    """Live host processes of the UML run `umid` (each has `umid=<umid>` in its cmdline)."""
    marker = f"umid={umid}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()  # empty for zombies
            except OSError:
                continue  # exited meanwhile
            if marker in cmdline.split(b"\0"):
                found.append(int(entry))
    return found


def _kill(proc: subprocess.Popen, umid: str) -> None:
    """SIGKILL the UML run and wait until none of its host processes is left."""
    # While the leader is unreaped its pid (= pgid) cannot be reused, so this hits only ours;
    # unshare's death SIGKILLs UML, PID 1 of its namespace, and with it everything inside.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while uml_processes(umid) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.wait(timeout=1)  # dead (a zombie) by now
    if left := uml_processes(umid):
        raise UmlError(f"UML processes {left} survived SIGKILL", umid)


def _wait_unreaped(proc: subprocess.Popen, deadline: float) -> bool:
    """Poll until UML exits (leaving it a zombie), or the deadline; True if it exited."""
    while time.monotonic() < deadline:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            return True
        time.sleep(0.02)
    return False


def run_in_uml(
    script: str,
    timeout: float = 120,
    mem: str = "768M",
    *,
    modules: tuple[str, ...] = DEFAULT_MODULES,
) -> UmlResult:
    """Boot UML, run `script` with bash as root inside it, power off; always cleans up.

    Returns the script's exit code and output (a failing script is a result, not an
    error). Raises UmlError if UML fails to boot or set up, crashes, or exceeds `timeout`
    seconds in all (it is then killed). `modules` are modprobed before the script runs.
    """
    kernel = uml_kernel()
    if kernel is None:
        raise UmlError(f"no UML kernel at {KERNEL_CANDIDATES}: run scripts/setup.sh")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ovt-uml-") as tmp:
        host_dir = Path(tmp)
        if not all(c.isalnum() or c in "/-_." for c in tmp):
            raise UmlError(f"temp dir {tmp!r} is unusable as a hostfs mount option")
        (host_dir / "uml").mkdir()
        (host_dir / "script.sh").write_text(script)
        init = host_dir / "init"
        init.write_text(
            INIT.replace("@HOST_MOUNT@", HOST_MOUNT)
            .replace("@HOST_DIR@", tmp)
            .replace("@MODULES_ROOT@", MODULES_ROOT)
            .replace("@MODULES@", " ".join(shlex.quote(m) for m in modules))
            .replace("@REPO@", shlex.quote(str(REPO)))
        )
        init.chmod(0o755)
        cmd = [
            kernel, f"mem={mem}", f"umid={host_dir.name}", f"uml_dir={host_dir / 'uml'}",
            "rootfstype=hostfs", "rootflags=/", "ro", f"init={init}",
            "con=null", "con0=null,fd:1", "ssl=null", "quiet", "noreboot", "panic=-1",
        ]  # fmt: skip
        # UML's helper processes outlive its main one, and a SIGKILLed pytest runs no cleanup:
        # so UML is PID 1 of its own PID namespace (all die with it), killed when unshare
        # dies, which is killed when we die (util-linux's setpriv/unshare; Essential here).
        cmd = ["setpriv", "--pdeathsig", "KILL", "--",
               "unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--", *cmd]  # fmt: skip
        # UML backs its "physical" memory with an unlinked file in $TMPDIR: keep it in RAM.
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tmp
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR": shm}
        console = host_dir / "console.log"
        with console.open("wb") as out:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=tmp, env=env, start_new_session=True,
            )  # fmt: skip
        try:
            exited = _wait_unreaped(proc, start + timeout)
        finally:  # kills on timeout or ^C; after a normal exit, sweeps up stragglers
            _kill(proc, host_dir.name)

        def diagnosis() -> str:
            return (
                f"\n--- console ---\n{_tail(console)}"
                f"\n--- init.log ---\n{_tail(host_dir / 'init.log')}"
                f"\n--- script output ---\n{_tail(host_dir / 'output')}"
            )

        if not exited:
            raise UmlError(f"timed out after {timeout}s, killed{diagnosis()}", host_dir.name)
        rc_file = host_dir / "rc"
        if not rc_file.exists():
            raise UmlError(
                f"UML exited ({proc.returncode}) before the script finished{diagnosis()}",
                host_dir.name,
            )
        return UmlResult(
            returncode=int(rc_file.read_text().strip()),
            output=(host_dir / "output").read_text(errors="replace"),
            seconds=time.monotonic() - start,
        )
