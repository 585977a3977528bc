"""One sandbard process under test: started on 127.0.0.1 with a free port and
given environment, waited for on /health, stopped with SIGTERM (expecting
exit 0) or killed, restarted with the same environment. Every end of the
process is either caused by the test (stop, kill) or an error: a server
that died on its own (an ASan abort after the last request) is reported by
stop(), which the fixtures call at teardown."""
import os
import signal
import socket
import subprocess
import time

from . import client as httpc
from . import paths


class SandbardMissing(RuntimeError):
    pass


class ServerError(RuntimeError):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_env(database_url, port, instance):
    """The environment every test server gets before overrides."""
    env = {
        "DATABASE_URL": database_url,
        "SERVER_ADDR": f"127.0.0.1:{port}",
        "DEVCONTAINERS_PATH": os.path.join(paths.ROOT, "devcontainers"),
        "SANDBAR_MIGRATIONS_PATH": os.path.join(paths.ROOT, "sql"),
        "SANDBAR_DATA_DIR": paths.DATA,  # preview.secret, made by the first server
        "SANDBAR_LOG_LEVEL": "info",
        # the run's own bridge network (made by the first server), removed by
        # the run's clean-up: never the production default `sandbar`
        "SANDBAR_NETWORK": instance,
        # runtimes beside runc only where a test asks (test_gvisor.py), not
        # tools/test's SANDBAR_RUNTIMES
        "SANDBAR_RUNTIMES": None,
        # sanitizer builds: fail loudly, and make leaks turn exit 0 into 23
        "ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1:exitcode=23:strict_string_checks=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=24",
        "LSAN_OPTIONS": "exitcode=23",
    }
    return env


class Server:
    def __init__(self, name, env, binary=None, log_dir=None, port=None):
        """env: overrides on top of os.environ; a None value unsets a variable."""
        self.name = name
        self.binary = binary or paths.sandbard_binary()
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.env_overrides = dict(env)
        self.log_dir = log_dir or os.environ.get("SANDBAR_TEST_LOGS") or os.path.join(paths.DATA, "test-logs")
        os.makedirs(self.log_dir, exist_ok=True)
        self.log_path = os.path.join(self.log_dir, f"{name}.log")
        self.proc = None
        self.starts = 0
        self.exit_codes = []
        self.ended = True  # the current process's end was caused and seen by the test

    # ------------------------------------------------------------ process
    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def environment(self):
        env = dict(os.environ)
        for k, v in self.env_overrides.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        env["SERVER_ADDR"] = f"{self.host}:{self.port}"
        return env

    def start(self, wait=True, timeout=30.0):
        if self.alive():
            raise ServerError(f"{self.name} is already running (pid {self.pid})")
        if not os.access(self.binary, os.X_OK):
            raise SandbardMissing(
                f"sandbard binary not found at {self.binary}: build it first "
                f"(tools/test builds build-asan/; or `meson setup build && ninja -C build` "
                f"and SANDBARD=build/src/sandbard)"
            )
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts} of {self.name} on port {self.port} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [self.binary],
            env=self.environment(),
            cwd=paths.ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.ended = False
        if wait:
            try:
                self.wait_healthy(timeout)
            except ServerError:
                # reported by this raise: teardown need not report it again
                self.ended = True
                if self.alive():
                    self.proc.kill()
                self.proc.wait()
                raise
        return self

    def wait_healthy(self, timeout=30.0):
        """Polls GET /health until it answers 200; raises with the log tail
        when the process dies or the time runs out."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self.proc.returncode} before /health answered; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                r = httpc.Client(self.host, self.port, timeout=2).get("/health", fresh=True)
                if r.status == 200:
                    return r
                last = f"status {r.status}"
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        raise ServerError(
            f"{self.name} did not answer /health with 200 within {timeout:.0f} s ({last}); "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, timeout=15.0, expect=0):
        """SIGTERM, wait up to timeout, and check the exit status (expect=None:
        any). Kills it with SIGKILL if it does not exit in time. A process
        that had already exited without the test ending it is an error
        whatever its status: it died on its own."""
        if self.proc is None or self.ended:
            return None
        self.ended = True
        if self.proc.poll() is not None:
            code = self.proc.returncode
            self.exit_codes.append(code)
            raise ServerError(
                f"{self.name} died on its own with status {code} before the test stopped it; "
                f"log {self.log_path}:\n{self.log_tail()}"
            )
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.exit_codes.append("timeout")
                raise ServerError(
                    f"{self.name} did not exit within {timeout:.0f} s of SIGTERM (killed); "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
        code = self.proc.returncode
        self.exit_codes.append(code)
        if expect is not None and code != expect:
            raise ServerError(
                f"{self.name} exited with {code} after SIGTERM, expected {expect}; "
                f"log {self.log_path}:\n{self.log_tail()}"
            )
        return code

    def kill(self):
        """SIGKILL, like a crash: no clean-up runs in the server. Killing a
        process that already died on its own is an error, as in stop()."""
        if self.proc is None or self.ended:
            return
        self.ended = True
        if not self.alive():
            self.exit_codes.append(self.proc.returncode)
            raise ServerError(
                f"{self.name} died on its own with status {self.proc.returncode} before the test "
                f"killed it; log {self.log_path}:\n{self.log_tail()}"
            )
        self.proc.kill()
        self.proc.wait()
        self.exit_codes.append(self.proc.returncode)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def restart(self, wait=True, timeout=30.0, kill=False):
        """Stops (SIGTERM, or SIGKILL with kill=True) and starts again with the
        same environment and port."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(wait=wait, timeout=timeout)

    # ------------------------------------------------------------ looking at it
    def client(self, **kw):
        return httpc.Client(self.host, self.port, **kw)

    def raw(self, data, **kw):
        return httpc.raw_request(self.host, self.port, data, **kw)

    def rss_kb(self, field="VmRSS"):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return None

    def open_files(self, folder):
        """What the process has open directly in folder, not below it (an
        unlinked file, as a spool file, reads `<folder>/#<inode> (deleted)`)."""
        folder = os.path.realpath(folder)
        found = []
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except OSError:
                continue  # closed meanwhile
            if target.startswith("/") and os.path.dirname(target) == folder:
                found.append(target)
        return found

    def rss_peak(self):
        """with server.rss_peak() as p: ...; then p.grew_kb(): how far the
        resident memory rose above its level at the start at any instant of
        the block (the kernel's high-water mark, reset at the start: nothing
        between two samples is missed)."""
        return RssPeak(self)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])

    def log_mark(self):
        """Where the log ends now: wait_log(..., since=mark) looks only after it."""
        return len(self.log_text())

    def wait_log(self, needle, timeout=10.0, since=0):
        """True once needle appears in the log (after the mark since)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text()[since:]:
                return True
            time.sleep(0.05)
        return False


class RssPeak:
    def __init__(self, server):
        self.server = server
        self.start_kb = None

    def __enter__(self):
        # 5: reset the peak resident set size (VmHWM) to the current size
        with open(f"/proc/{self.server.pid}/clear_refs", "w") as f:
            f.write("5")
        self.start_kb = self.server.rss_kb()
        return self

    def __exit__(self, *exc):
        return False

    def grew_kb(self):
        """The peak so far above the start; may be called inside the block."""
        return self.server.rss_kb("VmHWM") - self.start_kb
