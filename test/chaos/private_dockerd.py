"""A dockerd of the chaos tests' own, to stop, restart and cut without touching
the machine's dockerd or anything else running on it.

It has its own data root, exec root (and so its own containerd), socket and
address pool under .data/chaos/<name>/, no iptables rules, and a network
namespace of its own: a second dockerd in the host's namespace deletes the
host's docker0 bridge (the machine's dockerd's) when it starts, whatever its
--bridge. So ports its sandboxes publish are not reachable from the host:
previews go through the agent (sandbard does that for a tcp:// DOCKER_HOST). The images sandbard needs are copied
from the machine's dockerd once (docker save | docker load) and kept in the data
root between runs.

remote=True also listens on tcp://10.213.<n>.2:2375, reached from the host
over a veth pair: a Docker host on the other side of a network. cut() drops every packet to that port inside the namespace (a
partition: connects and open streams hang), heal() takes the rule away.

Needs root (tools/test provides "root")."""
import json
import os
import signal
import subprocess
import time

from harness import paths

IMAGES = ("sandbar/base:latest",)


def _run(*args, check=True, timeout=60, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


class PrivateDockerd:
    def __init__(self, name, remote=False, subnet=213):
        self.name = name
        self.remote = remote
        self.root = os.path.join(paths.DATA, "chaos", name)
        self.sock = os.path.join(self.root, "docker.sock")
        self.netns = f"sbchaos-{name}"
        self.addr = f"10.{subnet}.{os.getpid() % 250}.2" if remote else None
        self.host_addr = f"10.{subnet}.{os.getpid() % 250}.1" if remote else None
        self.proc = None
        self.live_restore = False  # containers run on while it is down (daemon.json live-restore)
        self.log_path = os.path.join(self.root, "dockerd.log")

    # ---------------------------------------------------------- addresses
    @property
    def local_url(self):
        """Where the tests' own docker CLI reaches it (the socket, also for a remote one)."""
        return f"unix://{self.sock}"

    @property
    def url(self):
        """What sandbard is given as DOCKER_HOST."""
        return f"tcp://{self.addr}:2375" if self.remote else self.local_url

    def docker(self, *args, check=True, timeout=120):
        return _run("docker", "-H", self.local_url, *args, check=check, timeout=timeout)

    # ---------------------------------------------------------- network namespace
    def _netns_up(self):
        _run("ip", "netns", "del", self.netns, check=False)
        _run("ip", "netns", "add", self.netns)
        ns = ("nsenter", f"--net=/run/netns/{self.netns}")
        _run(*ns, "ip", "link", "set", "lo", "up")
        if not self.remote:
            return
        veth = f"vsb{os.getpid() % 100000}"
        _run("ip", "link", "del", veth, check=False)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        _run("ip", "addr", "add", f"{self.host_addr}/30", "dev", veth)
        _run("ip", "link", "set", veth, "up")
        _run(*ns, "ip", "addr", "add", f"{self.addr}/30", "dev", "eth0")
        _run(*ns, "ip", "link", "set", "eth0", "up")
        self.veth = veth

    def _netns_down(self):
        _run("ip", "netns", "del", self.netns, check=False)
        if self.remote:
            _run("ip", "link", "del", self.veth, check=False)

    def cut(self):
        """Every packet to the API port dropped inside the namespace."""
        _run("nsenter", f"--net=/run/netns/{self.netns}", "iptables", "-I", "INPUT", "-p", "tcp", "--dport", "2375", "-j", "DROP")

    def heal(self):
        _run("nsenter", f"--net=/run/netns/{self.netns}", "iptables", "-D", "INPUT", "-p", "tcp", "--dport", "2375", "-j", "DROP")

    # ---------------------------------------------------------- process
    def _argv(self):
        argv = [
            "dockerd",
            "--data-root", os.path.join(self.root, "data"),
            "--exec-root", os.path.join(self.root, "exec"),
            "--pidfile", os.path.join(self.root, "dockerd.pid"),
            "--config-file", os.path.join(self.root, "daemon.json"),
            "-H", self.local_url,
            "--iptables=false",
            "--ip6tables=false",
            "--default-address-pool", "base=10.214.0.0/16,size=24",
            "--log-level", "warn",
        ]
        if self.remote:
            # --tls=false: no TLS on purpose (a test network), and no 15 s start-up pause for saying so
            argv += ["-H", f"tcp://{self.addr}:2375", "--tls=false"]
        # nsenter, not `ip netns exec`: that remounts /sys and hides the cgroup mounts
        return ["nsenter", f"--net=/run/netns/{self.netns}"] + argv

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def answers(self, timeout=1.0):
        r = subprocess.run(
            ["curl", "-sf", "-m", str(timeout), "--unix-socket", self.sock, "http://d/_ping"],
            capture_output=True, stdin=subprocess.DEVNULL,
        )
        return r.returncode == 0

    def start(self, timeout=60.0):
        os.makedirs(os.path.join(self.root, "exec"), exist_ok=True)
        with open(os.path.join(self.root, "daemon.json"), "w") as f:
            # never the machine's /etc/docker/daemon.json
            json.dump({"live-restore": True} if self.live_restore else {}, f)
        if not os.path.exists(f"/run/netns/{self.netns}"):
            self._netns_up()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self._argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self.answers():
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"private dockerd {self.name} did not answer:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def load_images(self):
        """Copies the images sandbard needs from the machine's dockerd, once."""
        for ref in IMAGES:
            if self.docker("image", "inspect", ref, check=False).returncode == 0:
                continue
            save = subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
            r = subprocess.run(
                ["docker", "-H", self.local_url, "load", "-q"], stdin=save.stdout, capture_output=True, text=True,
                timeout=300,
            )
            save.stdout.close()
            if save.wait() != 0 or r.returncode != 0:
                raise RuntimeError(f"copying {ref} into the private dockerd failed: {r.stderr.strip()}")

    def stop(self, timeout=60.0):
        """SIGTERM, as a package upgrade does: without live-restore dockerd
        stops every container on its way out."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self):
        self.stop()
        return self.start()

    def destroy(self):
        """Stops it and takes the namespace away; the data root stays (the images)."""
        self.stop()
        self._netns_down()

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

