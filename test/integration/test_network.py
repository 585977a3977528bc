"""Network isolation: sandboxes sit on a bridge network of our own with
inter-container traffic off (SANDBAR_NETWORK; a test run's is named after the
run and removed by its clean-up), so one cannot reach another's ports while
previews of both still work; `"network": "none"` leaves a sandbox with
loopback only, its previews through the agent, exec and files as usual."""
import subprocess
import uuid

from harness import docker
from hermes_util import API, ok, patch, wait_status
from preview_util import PORT, request, start_app
from sandboxes import templates_env

# exit 0 when a TCP connection to argv[1]:argv[2] opens within 3 s, else 1
PROBE = ("import socket, sys\n"
         "s = socket.socket(); s.settimeout(3)\n"
         "try:\n"
         "    s.connect((sys.argv[1], int(sys.argv[2])))\n"
         "except OSError as e:\n"
         "    print(e); sys.exit(1)\n")


def connects(c, sid, addr, port):
    """Whether sandbox sid opens a TCP connection to addr:port."""
    r = c.post(f"/api/sandboxes/{sid}/execute", json={"command": ["python3", "-c", PROBE, addr, str(port)]},
               timeout=60)
    assert r.status == 200, r
    return r.json["exit_code"] == 0


def address(c, sid, network):
    """The sandbox's address and gateway on the network."""
    cid = c.get(f"/api/sandboxes/{sid}").json["container_id"]
    n = docker.inspect(cid)["NetworkSettings"]["Networks"][network]
    return n["IPAddress"], n["Gateway"]


def test_network_isolation(server_factory, run):
    srv = server_factory(env=templates_env())
    c = srv.client()

    # made at start-up: ours, a bridge with inter-container traffic off
    net = docker.inspect(run.run_id, kind="network")
    assert net is not None and net["Driver"] == "bridge", net
    assert net["Labels"].get("sandbar.managed") == "true", net["Labels"]
    assert net["Options"].get("com.docker.network.bridge.enable_icc") == "false", net["Options"]

    sid_a, host_a = start_app(srv, c)
    sid_b, host_b = start_app(srv, c)
    ip_a, gateway = address(c, sid_a, run.run_id)
    ip_b, _ = address(c, sid_b, run.run_id)
    sb_b = c.get(f"/api/sandboxes/{sid_b}").json
    assert sb_b["network"] == "full", sb_b
    host_port_b = sb_b["port_mappings"][0]["host_port"]

    # the probe works (A reaches its own app at its own address) ...
    assert connects(c, sid_a, ip_a, PORT)
    # ... but not B's, on the same network, nor sandbard on the host's loopback
    assert not connects(c, sid_a, ip_b, PORT)
    assert not connects(c, sid_b, ip_a, PORT)
    assert not connects(c, sid_a, gateway, srv.port)
    # nor B's published port through the host (published on 127.0.0.1 only)
    assert not connects(c, sid_a, gateway, host_port_b)

    # previews of both still go through the published ports
    for host in (host_a, host_b):
        r, data = request(srv, "GET", "/hello", host)
        assert (r.status, data) == (200, b"hello from the app")


def test_network_none(server_factory, run):
    srv = server_factory(env=templates_env())
    c = srv.client()
    r = c.post("/api/sandboxes", json={"template": "plain", "network": "bridge"})
    assert r.status == 400 and r.json["error"]["code"] == "invalid_network", r

    sid_a, _ = start_app(srv, c)
    ip_a, gateway = address(c, sid_a, run.run_id)

    r = c.post("/api/sandboxes", json={"template": "plain", "ports": [PORT], "network": "none"}, timeout=120)
    assert r.status == 201, r
    sid = r.json["id"]
    assert r.json["port_mappings"] == [] and r.json["network"] == "none", r.json  # nothing published
    cid = r.json["container_id"]
    assert docker.inspect(cid)["HostConfig"]["NetworkMode"] == "none"

    # exec and files as usual
    r = c.put(f"/api/sandboxes/{sid}/files/content?path=/tmp/x.txt", body=b"kept")
    assert r.status in (200, 201), r
    r = c.post(f"/api/sandboxes/{sid}/execute", json={"command": "cat /tmp/x.txt; echo; ls /sys/class/net"})
    assert r.status == 200 and r.json["exit_code"] == 0, r
    assert r.json["stdout"].startswith("kept") and r.json["stdout"].split()[1:] == ["lo"], r.json

    # no route out: not to another sandbox, not to the host
    assert not connects(c, sid, ip_a, PORT)
    assert not connects(c, sid, gateway, srv.port)

    # its previews go through the agent (no port is published)
    _, host = start_app(srv, c, sid=sid)
    r, data = request(srv, "GET", "/hello", host)
    assert (r.status, data) == (200, b"hello from the app")


def test_network_none_kept_by_recreate(server_factory):
    """A recreate (PATCH image through the Hermes dialect) makes the container
    again with the sandbox's network policy, not the default one."""
    tag = f"sandbar/network-test:{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "tag", "sandbar/base:latest", tag], check=True)
    try:
        srv = server_factory(env=templates_env(SANDBAR_ALLOWED_IMAGES=tag))
        c = srv.client()
        r = c.post("/api/sandboxes", json={"template": "plain", "ports": [PORT], "network": "none"}, timeout=120)
        assert r.status == 201, r
        sid, old = r.json["id"], r.json["container_id"]
        ok(patch(c, f"{API}/{sid}", json={"image": tag}))
        wait_status(c, sid, "active")
        sb = c.get(f"/api/sandboxes/{sid}").json
        assert sb["container_id"] != old and sb["network"] == "none" and sb["port_mappings"] == [], sb
        assert docker.inspect(sb["container_id"])["HostConfig"]["NetworkMode"] == "none"
        assert c.delete(f"/api/sandboxes/{sid}").status in (200, 202, 204)
    finally:
        subprocess.run(["docker", "rmi", tag], check=False, capture_output=True)
