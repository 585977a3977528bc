"""Fixtures of the chaos suite: the integration suite's (servers, databases,
clean-up) plus dockerds of its own to take away (private_dockerd.py).

  local_dockerd   a private dockerd on a socket (the session's; restarted by tests)
  remote_dockerd  a private dockerd in a network namespace, over TCP
  on_dockerd      make(dockerd, env={...}) -> a started Server using that dockerd
Run them with `tools/test chaos`."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import paths  # noqa: E402
from harness.fixtures import *  # noqa: E402,F401,F403
from harness.need import need  # noqa: E402
from private_dockerd import PrivateDockerd  # noqa: E402


def _private(name, **kw):
    if os.geteuid() != 0:
        need("root", "a private dockerd needs root")
    d = PrivateDockerd(name, **kw)
    d.start()
    d.load_images()
    return d


def _clear(d):
    """Everything sandbard made on a dockerd that is ours alone."""
    if not d.alive():
        d.start()
    for kind, ls in (("container", ["ps", "-aq"]), ("volume", ["volume", "ls", "-q"]),
                     ("network", ["network", "ls", "-q", "--filter", "type=custom"])):
        ids = d.docker(*ls, "--filter", "label=sandbar.managed=true", check=False).stdout.split()
        if kind == "network":
            ids = d.docker(*ls, check=False).stdout.split()
        if ids:
            rm = {"container": ["rm", "-f", "-v"], "volume": ["volume", "rm", "-f"], "network": ["network", "rm"]}[kind]
            d.docker(*rm, *ids, check=False)


@pytest.fixture(scope="session")
def local_dockerd():
    d = _private("local")
    yield d
    _clear(d)
    d.destroy()


@pytest.fixture(scope="session")
def remote_dockerd():
    d = _private("remote", remote=True)
    yield d
    _clear(d)
    d.destroy()


# Only the base template: the others' images are not on a private dockerd.
TEMPLATES = os.path.join(paths.DATA, "chaos", "devcontainers")


@pytest.fixture
def on_dockerd(monkeypatch, server_factory):
    os.makedirs(os.path.join(TEMPLATES, "base"), exist_ok=True)
    src = os.path.join(paths.ROOT, "devcontainers", "base", "devcontainer.json")
    with open(src) as f, open(os.path.join(TEMPLATES, "base", "devcontainer.json"), "w") as g:
        g.write(f.read())

    def make(dockerd, env=None, start=True):
        # the harness's docker CLI (clean-up included) talks to the same dockerd
        monkeypatch.setenv("DOCKER_HOST", dockerd.local_url)
        e = {"DOCKER_HOST": dockerd.url, "DEVCONTAINERS_PATH": TEMPLATES}
        e.update(env or {})
        return server_factory(env=e, start=start)

    return make
