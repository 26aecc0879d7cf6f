"""libnftables, in process: what `nft -f` and `nft -j list` do, without a fork per call.

A fork+exec of nft costs milliseconds; the library call costs a fraction of one, which
is most of an API request's budget. The same library the nft binary uses (libnftables1,
installed with nftables), driven through its documented C API.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_NFT_CTX_OUTPUT_JSON = 1 << 4


class NftLibError(RuntimeError):
    """A command failed; the message is what nft would have printed on stderr."""


def _load() -> ctypes.CDLL:
    name = ctypes.util.find_library("nftables") or "libnftables.so.1"
    lib = ctypes.CDLL(name, use_errno=True)
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
    lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    return lib


class Nft:
    """One libnftables context; calls are serialized (the context is not thread-safe)."""

    def __init__(self) -> None:
        self._lib = _load()
        self._ctx = self._lib.nft_ctx_new(0)
        if not self._ctx:
            raise NftLibError("nft_ctx_new failed")
        self._lib.nft_ctx_buffer_output(self._ctx)
        self._lib.nft_ctx_buffer_error(self._ctx)
        self._lock = threading.Lock()

    def run(self, script: str, *, json_output: bool = False) -> str:
        """Run commands as one transaction; returns stdout, raises with stderr."""
        with self._lock:
            flags = self._lib.nft_ctx_output_get_flags(self._ctx)
            if json_output:
                flags |= _NFT_CTX_OUTPUT_JSON
            else:
                flags &= ~_NFT_CTX_OUTPUT_JSON
            self._lib.nft_ctx_output_set_flags(self._ctx, flags)
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
            out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if rc != 0:
            raise NftLibError(err.strip() or f"nft failed ({rc})")
        return out

    def close(self) -> None:
        with self._lock:
            if self._ctx:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None


_shared: Nft | None = None


def shared() -> Nft:
    """The process-wide context (created on first use, in this process's netns)."""
    global _shared
    if _shared is None:
        _shared = Nft()
    return _shared
