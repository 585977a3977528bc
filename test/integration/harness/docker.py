"""Docker helpers through the docker CLI: inspect, list and remove by label."""
import json
import subprocess

MANAGED = "sandbar.managed=true"


def _docker(*args, check=True, timeout=120):
    r = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and r.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {r.stderr.strip()}")
    return r


def inspect(ref, kind="container"):
    """The inspect document (dict), or None when it does not exist."""
    r = _docker(kind, "inspect", ref, check=False)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)[0]


def exec_starts(container, since, until):
    """How many Docker execs started in the container between two Unix times."""
    r = _docker("events", "--since", f"{since:.6f}", "--until", f"{until:.6f}", "--filter",
                f"container={container}", "--filter", "event=exec_start", "--format", "{{.Action}}")
    return len(r.stdout.splitlines())


def mem_total():
    """The Docker host's memory in bytes (MemTotal of /info)."""
    return int(_docker("info", "--format", "{{.MemTotal}}").stdout.strip())


def exists(container):
    return inspect(container) is not None


def running(container):
    d = inspect(container)
    return bool(d and d["State"]["Running"])


def ps(*labels, all=True):
    """Container ids carrying every label given ("k=v" or "k")."""
    args = ["ps", "-q", "--no-trunc"] + (["-a"] if all else [])
    for l in labels:
        args += ["--filter", "label=" + l]
    return _docker(*args).stdout.split()


def volumes(*labels):
    args = ["volume", "ls", "-q"]
    for l in labels:
        args += ["--filter", "label=" + l]
    return _docker(*args).stdout.split()


def volume_labels(name):
    d = inspect(name, kind="volume")
    return (d or {}).get("Labels") or {}


def labels(container):
    d = inspect(container)
    return (d or {}).get("Config", {}).get("Labels") or {}


def remove_containers(ids):
    ids = [i for i in ids if i]
    if ids:
        _docker("rm", "-f", "-v", *ids, check=False)


def remove_volumes(names):
    names = [n for n in names if n]
    if names:
        _docker("volume", "rm", "-f", *names, check=False)


def networks(*labels):
    """Network names carrying every label given."""
    args = ["network", "ls", "-q", "--format", "{{.Name}}"]
    for l in labels:
        args += ["--filter", "label=" + l]
    return _docker(*args).stdout.split()


def remove_networks(names):
    names = [n for n in names if n]
    if names:
        _docker("network", "rm", *names, check=False)


def exec_(container, *cmd):
    """Runs cmd in the container; returns (exit code, stdout)."""
    r = _docker("exec", container, *cmd, check=False)
    return r.returncode, r.stdout


def images(*labels):
    """Image ids carrying every label given."""
    args = ["images", "-q", "--no-trunc"]
    for l in labels:
        args += ["--filter", "label=" + l]
    return sorted(set(_docker(*args).stdout.split()))


def remove_image(ref):
    """Removes an image a test built and the images sandbard derived from it
    (the agent baked in, labelled sandbar.base=<its id>)."""
    d = inspect(ref, kind="image")
    if d is None:
        return
    derived = images("sandbar.base=" + d["Id"])
    if derived:
        _docker("rmi", "-f", *derived, check=False)
    _docker("rmi", "-f", ref, check=False)
