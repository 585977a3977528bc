"""Debian's nginx for tests and benchmarks: not a daemon, one worker, on a
free loopback port, its config, pid, logs and temporary files in a folder of
the data folder; stopped with SIGQUIT (then SIGKILL). sandbar_conf() renders
the shipped tools/nginx/sandbar.conf for a sandbard under test."""
import os
import re
import shutil
import signal
import subprocess

from . import client as httpc
from . import paths
from .server import free_port

SANDBAR_CONF = os.path.join(paths.ROOT, "tools", "nginx", "sandbar.conf")
# the names the shipped config serves: a test sends them as Host
API_HOST = "sandbar.example.com"
PREVIEW_DOMAIN = "preview.example.com"


class NginxError(RuntimeError):
    pass


def binary():
    """nginx's path, or None when it is not installed."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")


def sandbar_conf(listen_port, upstream):
    """tools/nginx/sandbar.conf with its `listen 80` lines on 127.0.0.1:listen_port
    and its upstream at `upstream` (host:port); nothing else changes, so the
    shipped file is what runs. Fails when the file no longer has those lines."""
    with open(SANDBAR_CONF) as f:
        text = f.read()
    text, listens = re.subn(r"(?m)^(\s*)listen\s+80;", rf"\g<1>listen 127.0.0.1:{listen_port};", text)
    text, ups = re.subn(r"(?m)^(\s*)server\s+127\.0\.0\.1:8080;", rf"\g<1>server {upstream};", text)
    if listens != 2 or ups != 1:
        raise NginxError(f"{SANDBAR_CONF}: expected 2 uncommented `listen 80;` lines and one "
                         f"`server 127.0.0.1:8080;`, found {listens} and {ups}")
    return text


class Nginx:
    """nginx.start(http_body) with the body of the http{} block (servers
    listening on 127.0.0.1:nginx.port); nginx.stop()."""

    def __init__(self, folder, port=None):
        self.dir = folder
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.proc = None

    def api_client(self, **kw):
        """An HTTP client of the API through the shipped config's API server."""
        return httpc.Client(self.host, self.port, headers={"Host": API_HOST}, **kw)

    @property
    def error_log(self):
        return os.path.join(self.dir, "logs", "error.log")

    def start(self, http_body, timeout=10.0):
        nginx = binary()
        if nginx is None:
            raise NginxError("nginx is not installed (Debian's nginx; tools/lib/setup.sh installs it for tests)")
        shutil.rmtree(self.dir, ignore_errors=True)
        for sub in ("logs", "tmp"):
            os.makedirs(os.path.join(self.dir, sub))
        d = self.dir
        # as root the workers would otherwise be nobody, who cannot write here
        user = "user root;" if os.getuid() == 0 else ""
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""{user}
worker_processes 1;
worker_shutdown_timeout 5s;
daemon off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/logs/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
{http_body}
}}
""")
        with open(os.path.join(d, "logs", "stderr.log"), "w") as err:
            self.proc = subprocess.Popen([nginx, "-p", d, "-c", conf], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)
        if not httpc.wait_port(self.host, self.port, timeout) or self.proc.poll() is not None:
            self.stop()
            self.proc = None
            raise NginxError(f"nginx did not start on port {self.port}:\n{self.log_tail()}")
        return self

    def log_tail(self, n=40):
        out = []
        for name in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.dir, "logs", name), errors="replace") as f:
                    out += f.read().splitlines()[-n:]
            except OSError:
                pass
        return "\n".join(out)

    def stop(self, timeout=10.0):
        """Graceful stop; True when nginx was still running (it never exits by itself)."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return True
