"""The images sandboxes run: the template's image with the agent baked in,
as a derived image built once per (image id, agent) and reused, and derived
images of other agents removed at start unless a container still uses them."""
import hashlib
import subprocess
import uuid

from harness import docker
from harness.wait import until
from test_agent_host import agent_binary


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _build_labelled(tag, agent):
    """An image like a derived one of another agent: sandbar/base plus labels."""
    dockerfile = f"FROM sandbar/base:latest\nLABEL sandbar.managed=true sandbar.agent={agent}\n"
    r = subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return docker.inspect(tag, kind="image")["Id"]


def test_agent_is_baked_into_a_derived_image_built_once(server, client):
    agent = _sha256(agent_binary())
    base = docker.inspect("sandbar/base:latest", kind="image")["Id"]
    made = [client.post("/api/sandboxes", json={"template": "base"}) for _ in range(2)]
    assert [r.status for r in made] == [201, 201], made
    images = set()
    for r in made:
        sb = r.json
        assert sb["image"] == "sandbar/base:latest"  # the template's, as the API shows it
        info = docker.inspect(sb["container_id"])
        assert info["Config"]["Image"].startswith("sandbar/with-agent:"), info["Config"]["Image"]
        images.add(info["Image"])
        # the agent in the container is this build's, byte for byte
        rc, out = docker.exec_(sb["container_id"], "sha256sum", "/.sandbar/agent")
        assert rc == 0 and out.split()[0] == agent, out
    [image] = images  # one derived image for both
    labels = docker.inspect(image, kind="image")["Config"]["Labels"]
    assert labels["sandbar.agent"] == agent and labels["sandbar.base"] == base
    assert labels["sandbar.managed"] == "true"
    for r in made:
        assert client.delete(f"/api/sandboxes/{r.json['id']}").status == 204
    # the image stays for the next create
    assert docker.inspect(image, kind="image") is not None


def test_images_of_other_agents_are_pruned_at_start_unless_used(server_factory):
    old = "0" * 64
    unused_tag = "sandbar/with-agent:test-unused-" + uuid.uuid4().hex[:8]
    used_tag = "sandbar/with-agent:test-used-" + uuid.uuid4().hex[:8]
    # the two differ (each build gets its own label), so one can go while the other stays
    unused = _build_labelled(unused_tag, old)
    used = _build_labelled(used_tag, "1" * 64)
    holder = "sandbar-image-holder-" + uuid.uuid4().hex[:8]
    r = subprocess.run(["docker", "create", "--name", holder, "--label", docker.MANAGED, used_tag, "true"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    try:
        srv = server_factory(env={"SANDBAR_IMAGE_PRUNE_AGE": "0"})
        until(lambda: docker.inspect(unused, kind="image") is None, timeout=30,
              what="the unused image of another agent removed")
        until(lambda: f"images: {used} stays" in srv.log_text(), timeout=30,
              what="the used image's removal refused")
        assert docker.inspect(used, kind="image") is not None  # a container still uses it
        assert docker.inspect(unused_tag, kind="image") is None
    finally:
        docker.remove_containers([holder])
        subprocess.run(["docker", "rmi", "-f", unused_tag, used_tag], capture_output=True, timeout=60)
