"""nginx in front of gunicorn, as in the API pod: the project's one template
(k8s/base/api-nginx.conf.template), rendered by the real envsubst and run by the real nginx.

nginx is Debian's (``bin/setup`` installs ``nginx-light`` as root); the pod runs the same
template in an unprivileged nginx image. Tests that need it skip with :data:`MISSING` as the
reason when either tool is absent.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

from tests.support import ROOT, wait_for

TEMPLATE = ROOT / "k8s" / "base" / "api-nginx.conf.template"
# How every place runs the rendered file: errors to stderr before the file is read too, and in
# the foreground, so that the caller (kubelet, bin/local, a test) owns the process.
RUN_FLAGS = ("-e", "stderr", "-g", "daemon off;")


def variables() -> list[str]:
    """The template's ``${NGINX_…}`` variables, in order of first use."""
    found = re.findall(r"\$\{(NGINX_[A-Z_]+)\}", TEMPLATE.read_text())
    return list(dict.fromkeys(found))


def envsubst_list() -> str:
    """envsubst's SHELL-FORMAT argument: only these are replaced, nginx's own $vars stay."""
    return " ".join(f"${{{name}}}" for name in variables())


def nginx_binary() -> str | None:
    """nginx lives in /usr/sbin, which is not on every user's PATH."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def _missing() -> str | None:
    if nginx_binary() is None:
        return (
            "nginx is not installed: bin/setup installs it (Debian package nginx-light) when run "
            "as root on a system with apt-get; elsewhere install nginx to run these tests"
        )
    if shutil.which("envsubst") is None:
        return "envsubst is not installed (Debian package gettext-base)"
    return None


MISSING = _missing()


def render(values: Mapping[str, str]) -> str:
    """The template with ``values``, by envsubst as the pod renders it."""
    assert set(values) == set(variables()), "every variable, and only those"
    result = subprocess.run(
        ["envsubst", envsubst_list()],
        input=TEMPLATE.read_text(),
        env={"PATH": os.environ.get("PATH", ""), **values},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return result.stdout


def scratch_directory() -> Path:
    """A writable directory for NGINX_TEMP that nginx's workers can enter.

    nginx started as root (bin/setup, CI containers) runs its workers as ``nobody``; they write
    temporary files here, so the directory must not be private like pytest's tmp_path.
    """
    directory = Path(tempfile.mkdtemp(prefix="top-coins-nginx-"))
    directory.chmod(0o755)
    return directory


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports: the sockets stay bound until all are picked.

    Processes started by the tests listen on these, never on the ports the manifests declare
    (8080, 9090, 9101-9103), which bin/local or anything else on this machine may be using.
    """
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


class Nginx:
    """The real nginx with the project's template, in front of ``upstream`` (host:port)."""

    def __init__(self, upstream: str, upstream_timeout: str = "10s") -> None:
        binary = nginx_binary()
        assert binary is not None, MISSING
        self.port, self.metrics_port = free_ports(2)
        self.base = f"http://127.0.0.1:{self.port}"
        self.metrics_base = f"http://127.0.0.1:{self.metrics_port}"
        self.directory = scratch_directory()
        self.values = {
            "NGINX_PORT": str(self.port),
            "NGINX_METRICS_PORT": str(self.metrics_port),
            "NGINX_UPSTREAM": upstream,
            "NGINX_UPSTREAM_TIMEOUT": upstream_timeout,
            "NGINX_TEMP": str(self.directory),
        }
        self.config = self.directory / "nginx.conf"
        self.config.write_text(render(self.values))
        self.log_path = self.directory / "nginx.log"
        # Appending: nginx opens /dev/stdout anew for its access log, with its own file offset
        # (and O_APPEND), while its error log writes to the stderr it inherits. Into a file
        # opened without O_APPEND, each would overwrite lines the other wrote.
        self._log = self.log_path.open("ab")
        self.final_output = ""
        self.process = subprocess.Popen(
            [binary, "-c", str(self.config), *RUN_FLAGS],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_until_up(self) -> None:
        def up() -> bool:
            assert self.process.poll() is None, f"nginx exited:\n{self.output()}"
            return listening(self.port) and listening(self.metrics_port)

        assert wait_for(up, timeout=10), self.output()

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGQUIT: nginx's graceful shutdown, as the pod's image stops it.
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._log.close()
        self.final_output = self.log_path.read_text(errors="replace")
        shutil.rmtree(self.directory, ignore_errors=True)

    def output(self) -> str:
        if self._log.closed:
            return self.final_output
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Nginx:
        try:
            self.wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
