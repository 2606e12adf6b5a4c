"""Start, health-check and stop a `vllm serve` process for the rewrite stage's OpenAI-compatible backend.

vLLM runs in its own virtual environment (it pins its own torch and transformers, see `make vllm-env`),
so the pipeline talks to it over HTTP on loopback rather than importing it. Only the standard library
is used here, so this module costs the pipeline's environment nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from vtcurate.errors import UserError

# The first start on a machine compiles the model (torch.compile, ~70 s for SmolLM2 on 2 CPUs); later
# starts reuse vLLM's compile cache.
DEFAULT_STARTUP_TIMEOUT_S = 600.0
STOP_GRACE_S = 20.0
LOG_TAIL_LINES = 30

# A proxy from the environment must never see loopback traffic (urllib honours http_proxy by default).
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class VLLMServerError(UserError):
    """The vLLM server could not be started; the message carries the end of its log."""


def http_json(url: str, payload: Any = None, timeout: float = 60.0) -> Any:
    """GET `url` (or POST `payload` as JSON) and decode the JSON answer, bypassing any proxy."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with _opener.open(req, timeout=timeout) as resp:
        return json.load(resp)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it); vLLM binds it shortly after."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False if no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left after `grace` seconds.

    The group, not just the process: `vllm serve` forks an engine core and workers that would
    otherwise outlive it and keep the CPUs and memory."""
    pgid = proc.pid  # start_new_session made the server its group's leader
    deadline = time.monotonic() + grace
    alive = _signal_group(pgid, signal.SIGTERM)
    while alive and time.monotonic() < deadline:
        proc.poll()  # reap the leader once it exits, or it stays in the group as a zombie
        time.sleep(0.1)
        alive = _signal_group(pgid, 0)
    if alive:
        _signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


class VLLMServer:
    """`vllm serve MODEL` on loopback, ready to answer when `start()` returns; a context manager.

    `executable` is the `vllm` command, typically the one in a separate venv (`.venv-vllm/bin/vllm`).
    `env` is added to this process's environment (e.g. VLLM_CPU_KVCACHE_SPACE on CPU)."""

    def __init__(
        self,
        model: str | Path,
        *,
        executable: str | Path = "vllm",
        served_model_name: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: str | Path | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_S,
        poll_interval: float = 0.5,
    ) -> None:
        self.model = str(model)
        self.executable = str(executable)
        self.served_model_name = served_model_name or Path(self.model).name
        self.host = host
        self.port = port
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.log_path = Path(log_path) if log_path else None
        self.startup_timeout = startup_timeout
        self.poll_interval = poll_interval
        self.proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, as an OpenAI client's `base_url` expects it."""
        return f"{self.root_url}/v1"

    def command(self) -> list[str]:
        return [
            self.executable, "serve", self.model,
            "--host", self.host, "--port", str(self.port),
            "--served-model-name", self.served_model_name,
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> VLLMServer:
        if self.proc is not None:
            raise RuntimeError("VLLMServer.start() called twice")
        exe = shutil.which(self.executable)
        if exe is None:
            raise VLLMServerError(
                f"vLLM executable not found: {self.executable} (`make vllm-env` installs one in .venv-vllm)"
            )
        self.executable = exe
        if self.port is None:
            self.port = free_port(self.host)
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="vllm-serve-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,  # its own process group, so close() can stop all its children
            )
        # Stops the server even if the caller never calls close() (garbage collection, interpreter exit).
        self._finalizer = weakref.finalize(self, _stop_group, self.proc, STOP_GRACE_S)
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        started = time.monotonic()
        deadline = started + self.startup_timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise self._error(f"exited with code {code} during startup")
            if self._ready():
                return
            if time.monotonic() > deadline:
                raise self._error(f"was not ready after {self.startup_timeout:.0f} s")
            time.sleep(self.poll_interval)

    def _ready(self) -> bool:
        # /health answers 200 only once the engine is up; /v1/models then confirms the API is mounted
        # and serving the expected name (another server on a reused port would fail this).
        try:
            with _opener.open(f"{self.root_url}/health", timeout=5) as resp:
                if resp.status != 200:
                    return False
            models = http_json(f"{self.base_url}/models", timeout=5)
        except (OSError, ValueError):  # refused, reset, timed out, HTTP error, not JSON yet
            return False
        return any(m.get("id") == self.served_model_name for m in models.get("data", []))

    def _error(self, what: str) -> VLLMServerError:
        return VLLMServerError(
            f"vLLM server for {self.model} {what}.\ncommand: {' '.join(self.command())}\n"
            f"log: {self.log_path}\n--- last lines of the log ---\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64_000))  # the tail is enough; logs can be long
            text = f.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Stop the server and all its processes (idempotent)."""
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_group once; later calls do nothing

    def __enter__(self) -> VLLMServer:
        return self if self.proc is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
