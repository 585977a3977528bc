"""gVisor as an opt-in runtime (SANDBAR_RUNTIMES=gvisor, dockerd's runtime
sandbar-gvisor: Debian's runsc with --network=host --platform=ptrace, see
README "gVisor"). Under it: exec, files (the file API, uploads, downloads,
archives), the terminal and previews (published and through the agent) work
as under runc; the runtime is recorded, shown, named to Docker and kept
across stop, start, restart and a recreate; bad or disabled runtimes are
refused with their codes; sandbard refuses to start when dockerd lacks a
runtime it enables. The escape probes (apps/escape_probe.py) run in both
runtimes and must all be refused. The gVisor tests need the word `gvisor`
(tools/test provides it once setup.sh has registered runsc)."""
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import urllib.parse

import pytest

from harness import docker
from harness.need import need
from harness.ws import Closed, WebSocket
from hermes_util import API, ok, patch, wait_status
from preview_util import PORT, request, start_app, ws_echo
from sandboxes import TEMPLATES, check_shape

GVISOR = "sandbar-gvisor"
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "escape_probe.py")


def dockerd_runtimes():
    out = subprocess.run(["docker", "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return json.loads(out)


def need_gvisor():
    rt = dockerd_runtimes()
    if GVISOR not in rt:
        need("gvisor", f"dockerd has no runtime {GVISOR} (runtimes: {', '.join(sorted(rt))}); "
             "SANDBAR_RUNTIMES=gvisor tools/lib/setup.sh docker registers it (README, gVisor)")


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """The test templates and one that asks for gVisor: a folder of this
    module's own (servers without gVisor would skip that template)."""
    root = tmp_path_factory.mktemp("gvisor-templates")
    shutil.copytree(os.path.join(TEMPLATES, "plain"), root / "plain")
    (root / "gvisor").mkdir()
    (root / "gvisor" / "devcontainer.json").write_text(
        '// gVisor by default\n{"image": "sandbar/base:latest", "forwardPorts": [8000],\n'
        ' "customizations": {"sandbar": {"runtime": "gvisor"}, "vscode": {"extensions": []}}}\n')
    return str(root)


@pytest.fixture(scope="module")
def gsrv(run, templates):
    need_gvisor()
    env = {"DEVCONTAINERS_PATH": templates, "SANDBAR_RUNTIMES": "gvisor", "UPLOAD_LIMIT": "20m"}
    with run.own_server(f"{run.run_id}_gvisor", env=env) as srv:
        yield srv


@pytest.fixture(scope="module")
def gc(gsrv):
    return gsrv.client()


def create(c, **body):
    r = c.post("/api/sandboxes", json={"template": "plain", **body}, timeout=180)
    assert r.status == 201, r
    check_shape(r.json)
    return r.json


def execute(c, sid, command, **kw):
    r = c.post(f"/api/sandboxes/{sid}/execute", json={"command": command, **kw}, timeout=60)
    assert r.status == 200, r
    return r.json


def q(path):
    return urllib.parse.quote(path, safe="")


def test_exec_files_terminal_previews_under_gvisor(gsrv, gc):
    sb = create(gc, runtime="gvisor", ports=[PORT])
    sid, cid = sb["id"], sb["container_id"]
    assert sb["runtime"] == "gvisor" and sb["status"] == "running", sb
    assert docker.inspect(cid)["HostConfig"]["Runtime"] == GVISOR
    assert gc.get(f"/api/sandboxes/{sid}").json["runtime"] == "gvisor"
    # gVisor's own kernel answers, not the host's
    assert execute(gc, sid, ["uname", "-r"])["stdout"].strip() != os.uname().release
    assert "gVisor" in execute(gc, sid, "dmesg")["stdout"]

    # exec: argv, shell strings, exit codes, both streams, stdin, env, cwd, a user
    r = execute(gc, sid, ["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r["stdout"], r["stderr"], r["exit_code"]) == ("out\n", "err\n", 7), r
    r = execute(gc, sid, "cat | tr a-z A-Z; echo $GREETING; pwd; id -un", stdin="hello\n",
                env={"GREETING": "hi"}, cwd="/tmp", user="sandbox")
    assert r["stdout"] == "HELLO\nhi\n/tmp\nsandbox\n" and r["exit_code"] == 0, r
    r = gc.post(f"/api/sandboxes/{sid}/commands", json={"command": "sleep 0.2; echo later"})
    assert r.status == 201, r

    # the file API through the agent
    blob = os.urandom(1 << 20)
    r = gc.put(f"/api/sandboxes/{sid}/files/content?path={q('/tmp/dir/blob.bin')}", body=blob)
    assert r.status == 201 and r.json["size"] == len(blob), r
    r = gc.get(f"/api/sandboxes/{sid}/files/content?path={q('/tmp/dir/blob.bin')}")
    assert r.status == 200 and hashlib.sha256(r.body).digest() == hashlib.sha256(blob).digest()
    r = gc.get(f"/api/sandboxes/{sid}/files/content?path={q('/tmp/dir/blob.bin')}",
               headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == blob[10:20]
    assert gc.post(f"/api/sandboxes/{sid}/files/mkdir", json={"path": "/tmp/dir/sub"}).status == 201
    r = gc.post(f"/api/sandboxes/{sid}/files/move", json={"from": "/tmp/dir/blob.bin", "to": "/tmp/dir/sub/b"})
    assert r.status == 200, r
    r = gc.get(f"/api/sandboxes/{sid}/files?path={q('/tmp/dir')}&depth=2")
    assert r.status == 200 and [e["path"] for e in r.json] == ["/tmp/dir/sub", "/tmp/dir/sub/b"], r
    r = gc.get(f"/api/sandboxes/{sid}/files/stat?path={q('/tmp/dir/sub/b')}")
    assert r.json["exists"] and r.json["size"] == len(blob) and r.json["is_file"], r
    r = gc.post(f"/api/sandboxes/{sid}/files/edit",
                json={"path": "/tmp/e.txt", "old_text": "a", "new_text": "b"})
    assert r.status == 404, r
    assert gc.request("DELETE", f"/api/sandboxes/{sid}/files?path={q('/tmp/dir')}&recursive=true").status == 200

    # uploads, downloads and archives through Docker's archive API
    boundary = "gvisorboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n/home/sandbox/work\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"up.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + blob + f"\r\n--{boundary}--\r\n".encode()
    r = gc.post(f"/api/sandboxes/{sid}/files/upload", body=body,
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status == 200 and r.json["path"] == "/home/sandbox/work/up.bin", r
    r = gc.get(f"/api/sandboxes/{sid}/files/download?path={q('/home/sandbox/work/up.bin')}")
    assert r.status == 200 and r.body == blob
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("proj/run.sh")
        ti.mode, data = 0o755, b"#!/bin/sh\necho ran\n"
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    r = gc.put(f"/api/sandboxes/{sid}/files/archive?path=/home/sandbox/work", body=buf.getvalue())
    assert r.status == 200, r
    assert execute(gc, sid, ["/home/sandbox/work/proj/run.sh"])["stdout"] == "ran\n"
    r = gc.get(f"/api/sandboxes/{sid}/files/archive?path={q('/home/sandbox/work/proj')}")
    assert r.status == 200
    tf = tarfile.open(fileobj=io.BytesIO(r.body))
    assert tf.extractfile("proj/run.sh").read() == data and tf.getmember("proj/run.sh").mode & 0o777 == 0o755

    # the terminal: a PTY that follows a resize
    ws = WebSocket(gsrv.host, gsrv.port, f"/api/sandboxes/{sid}/terminal?rows=30&cols=100")
    assert ws.status == 101, ws.head
    binary, first = ws.recv()
    assert not binary and json.loads(first)["type"] == "started"
    got = b""

    def seen(*needles):
        def pred(binary, payload):
            nonlocal got
            got += payload if binary else b""
            return all(n in got for n in needles)
        return pred

    ws.send(b"stty size; tty\n")
    ws.recv_until(seen(b"30 100", b"/dev/pts/"), timeout=20)
    ws.send(json.dumps({"type": "resize", "rows": 40, "cols": 120}))
    got = b""
    ws.send(b"stty size\n")
    ws.recv_until(seen(b"40 120"), timeout=20)
    ws.send(b"exit 3\n")
    msgs = ws.recv_until(lambda b, p: not b and json.loads(p)["type"] == "exit", timeout=20)
    assert json.loads(msgs[-1][1])["exit_code"] == 3
    try:
        ws.recv()
    except Closed:
        pass
    ws.close()

    # previews: a published port (HTTP and a WebSocket) and one through the agent
    _, host = start_app(gsrv, gc, sid=sid)
    r, data = request(gsrv, "GET", "/hello", host)
    assert (r.status, data) == (200, b"hello from the app")
    ws_echo(gsrv, host)
    _, host2 = start_app(gsrv, gc, sid=sid, port=8001)
    r, data = request(gsrv, "GET", "/hello", host2)
    assert (r.status, data) == (200, b"hello from the app")
    assert gc.delete(f"/api/sandboxes/{sid}").status == 204


def test_template_runtime_kept_across_stop_start_restart(gsrv, gc):
    """A template's runtime, kept by stop, start and restart (the same
    container); a create may ask for runc from that template."""
    sb = create(gc, template="gvisor")
    sid = sb["id"]
    assert sb["runtime"] == "gvisor" and docker.inspect(sb["container_id"])["HostConfig"]["Runtime"] == GVISOR
    for action, status in (("stop", "stopped"), ("start", "running"), ("restart", "running")):
        r = gc.post(f"/api/sandboxes/{sid}/{action}", timeout=120)
        assert r.status == 200 and r.json["status"] == status and r.json["runtime"] == "gvisor", (action, r)
    assert execute(gc, sid, ["uname", "-r"])["stdout"].strip() != os.uname().release
    assert execute(gc, sid, ["true"])["exit_code"] == 0
    assert gc.delete(f"/api/sandboxes/{sid}").status == 204

    sb = create(gc, template="gvisor", runtime="runc")
    assert sb["runtime"] == "runc" and docker.inspect(sb["container_id"])["HostConfig"]["Runtime"] == "runc"
    assert execute(gc, sb["id"], ["uname", "-r"])["stdout"].strip() == os.uname().release
    assert gc.delete(f"/api/sandboxes/{sb['id']}").status == 204


def test_network_none_under_gvisor(gc):
    """With --network=host runsc uses the container's own network namespace:
    Docker's `none` leaves it loopback only, as under runc."""
    sb = create(gc, runtime="gvisor", network="none")
    assert sb["network"] == "none" and sb["port_mappings"] == [], sb
    out = execute(gc, sb["id"], "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")["stdout"]
    assert out.split() == ["lo"], out
    assert gc.delete(f"/api/sandboxes/{sb['id']}").status == 204


def test_recreate_keeps_gvisor(run, templates):
    """PATCH of the image (Hermes) makes the container again: under gVisor."""
    need_gvisor()
    tag = f"sandbar/gvisor-test:{run.run_id}"
    subprocess.run(["docker", "tag", "sandbar/base:latest", tag], check=True)
    env = {"DEVCONTAINERS_PATH": templates, "SANDBAR_RUNTIMES": "gvisor", "SANDBAR_ALLOWED_IMAGES": tag}
    try:
        with run.own_server(f"{run.run_id}_gvisor_recreate", env=env) as srv:
            c = srv.client()
            sb = create(c, runtime="gvisor")
            sid, old = sb["id"], sb["container_id"]
            ok(patch(c, f"{API}/{sid}", json={"image": tag}))
            wait_status(c, sid, "active")
            now = c.get(f"/api/sandboxes/{sid}").json
            assert now["container_id"] != old and now["runtime"] == "gvisor", now
            assert docker.inspect(now["container_id"])["HostConfig"]["Runtime"] == GVISOR
            assert execute(c, sid, ["uname", "-r"])["stdout"].strip() != os.uname().release
            assert c.delete(f"/api/sandboxes/{sid}").status == 204
    finally:
        subprocess.run(["docker", "rmi", tag], check=False, capture_output=True)


def test_runtime_refused(server_factory, templates):
    """Without SANDBAR_RUNTIMES only runc: gvisor is 400 runtime_not_enabled,
    a template asking for it is skipped; a bad runtime is 400 invalid_runtime;
    nothing is left either way. A runtime dockerd lacks stops the start-up,
    a bad SANDBAR_RUNTIMES too (exit 2)."""
    srv = server_factory(env={"DEVCONTAINERS_PATH": templates})
    c = srv.client()
    for body, code in (({"runtime": "gvisor"}, "runtime_not_enabled"), ({"runtime": "kata"}, "invalid_runtime"),
                       ({"runtime": 5}, "invalid_runtime"), ({"runtime": ""}, "invalid_runtime")):
        r = c.post("/api/sandboxes", json={"template": "plain", **body})
        assert r.status == 400 and r.json["error"]["code"] == code, (body, r)
    r = c.post("/api/sandboxes", json={"template": "gvisor"})
    assert r.status == 400 and r.json["error"]["code"] == "unknown_template", r
    assert "runtime gvisor is not enabled (set SANDBAR_RUNTIMES=gvisor)" in srv.log_text()
    r = c.post("/api/sandboxes", json={"template": "plain", "runtime": "runc"})
    assert r.status == 201 and r.json["runtime"] == "runc", r
    assert docker.inspect(r.json["container_id"])["HostConfig"]["Runtime"] == "runc"  # Docker's default
    assert c.delete(f"/api/sandboxes/{r.json['id']}").status == 204

    bad = server_factory(env={"SANDBAR_RUNTIMES": "gvisor=sandbar-no-such-runtime"}, start=False)
    out = subprocess.run([bad.binary], env=bad.environment(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 1, out
    assert "dockerd at" in out.stderr and "has no runtime 'sandbar-no-such-runtime'" in out.stderr, out.stderr
    worse = server_factory(env={"SANDBAR_RUNTIMES": "kata"}, start=False)
    out = subprocess.run([worse.binary], env=worse.environment(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "SANDBAR_RUNTIMES: unknown runtime 'kata'" in out.stderr, out.stderr


@pytest.mark.parametrize("runtime", ["runc", "gvisor"])
def test_escape_probes_refused(server_factory, templates, runtime):
    """Raw and packet sockets, a mount, writes to the host kernel's
    /proc/sys knobs, the Docker socket, loading a kernel module: refused to
    root and to the sandbox user; ptrace of PID 1 (the agent, root) refused
    to the sandbox user. Under both runtimes."""
    env = {"DEVCONTAINERS_PATH": templates}
    if runtime == "gvisor":
        need_gvisor()
        env["SANDBAR_RUNTIMES"] = "gvisor"
    srv = server_factory(env=env)
    c = srv.client()
    sb = create(c, runtime=runtime)
    sid = sb["id"]
    with open(PROBE, "rb") as f:
        r = c.put(f"/api/sandboxes/{sid}/files/content?path={q('/tmp/escape_probe.py')}&mode=0755", body=f.read())
    assert r.status == 201, r
    every = ["raw_socket", "packet_socket", "mount", "write_proc_sys", "docker_socket", "load_module"]
    for user, probes in (("root", every), ("sandbox", every + ["ptrace_pid1"])):
        r = execute(c, sid, ["python3", "/tmp/escape_probe.py", *probes], user=user)
        assert r["exit_code"] == 0, r
        got = json.loads(r["stdout"])
        print(runtime, user, json.dumps(got, sort_keys=True))
        allowed = {k: v for k, v in got.items() if not v.startswith("refused")}
        assert set(got) == set(probes) and not allowed, (runtime, user, got)
    assert c.delete(f"/api/sandboxes/{sid}").status == 204
