"""Login shell strings (native `/execute` and `/commands`: `/bin/sh -lc` in
meaning) in the login environment the agent works out once per user and
keeps (src/agent/login.c): PATH and what a script in /etc/profile.d exports
are seen exactly as `sh -lc` shows them, without a login shell per command
(the profile counts its runs); the sandbox's and the call's env win; shell
syntax, exit codes and 127 for a missing program are unchanged; a changed
profile script is seen at once, and after a restart, where the agent works
the login environment out as it starts."""
import pytest

from commands_util import execute, make_sandbox
from harness.wait import until

SCRIPT = "/etc/profile.d/sb-login-test.sh"
TOOL = "/opt/sbtool/bin/sbtool"
PROBE = "printenv PATH; printenv SB_PROFILE_VAR; printenv SB_OTHER"


def install(client, sid, value):
    """The profile script (as root): a variable, a PATH entry with a tool in
    it, and a count of its runs per user in that user's HOME."""
    script = (f'echo run >> "$HOME/.sb-profile-runs"\n'
              f'export SB_PROFILE_VAR={value} SB_OTHER=other\n'
              'PATH="$PATH:/opt/sbtool/bin"; export PATH\n')
    setup = (f"mkdir -p /opt/sbtool/bin && printf '#!/bin/sh\\necho tool says $SB_OTHER\\n' > {TOOL} && "
             f"chmod 755 {TOOL} && cat > {SCRIPT}.new && mv {SCRIPT}.new {SCRIPT}")
    r = execute(client, sid, ["sh", "-c", setup], user="root", stdin=script)
    assert r.status == 200 and r.json["exitCode"] == 0, r


def runs(client, sid, user=None):
    kw = {"user": user} if user else {}
    r = execute(client, sid, ["sh", "-c", 'cat "$HOME/.sb-profile-runs" 2>/dev/null | wc -l'], **kw)
    return int(r.json["stdout"])


def login_view(client, sid, **kw):
    """What a real login shell shows (argv: no agent shortcut)."""
    r = execute(client, sid, ["/bin/sh", "-lc", PROBE], **kw)
    assert r.status == 200 and r.json["exitCode"] == 0, r
    return r.json["stdout"]


def settled(client, sid, want, during=None, **kw):
    """Runs PROBE as a shell string until the login environment is kept (the
    first ones may run the login shell while the agent works it out): two in
    a row that ran no profile. Those must show want, the others want or
    during (a login shell's view; by default the same: the capture's own
    run of the profile may be counted after a command that ran none)."""
    last = [runs(client, sid, kw.get("user"))]

    def quiet():
        r = execute(client, sid, PROBE, **kw)
        n = runs(client, sid, kw.get("user"))
        same, last[0] = n == last[0], n
        assert r.status == 200 and r.json["exitCode"] == 0, r
        assert r.json["stdout"] in ((want,) if same else (want, during or want)), (r.json, want, during)
        return same

    until(quiet, timeout=30, what="the login environment kept")


@pytest.fixture
def sandbox(client):
    sb = make_sandbox(client, env_vars={"FROM_CREATE": "yes"})
    yield sb
    client.delete(f"/api/sandboxes/{sb['id']}")


def test_profile_d_seen_as_sh_lc_without_a_login_shell_each(client, sandbox):
    sid = sandbox["id"]
    install(client, sid, "from-profile-d")
    assert runs(client, sid) == 0
    r = client.post(f"/api/sandboxes/{sid}/restart", timeout=120)
    assert r.status == 200, r
    # the agent works the remote user's login environment out as it starts
    # (`--login sandbox`), before any shell string
    until(lambda: runs(client, sid) == 1, timeout=30, what="the profile run at the start")
    want = login_view(client, sid)
    assert want.split("\n")[1:3] == ["from-profile-d", "other"], want
    assert want.split("\n")[0].endswith(":/opt/sbtool/bin"), want
    settled(client, sid, want)
    before = runs(client, sid)
    for _ in range(10):
        r = execute(client, sid, PROBE)
        assert r.json["stdout"] == want, r.json
    # a program found through the profile's PATH, exec'd directly
    r = execute(client, sid, "sbtool")
    assert r.json["stdout"] == "tool says other\n" and r.json["exitCode"] == 0, r.json
    # through /commands too
    r = client.post(f"/api/sandboxes/{sid}/commands", json={"command": "echo $SB_PROFILE_VAR"})
    assert r.status == 201, r
    cid = r.json["id"]
    until(lambda: client.get(f"/api/sandboxes/{sid}/commands/{cid}").json["status"] == "exited",
          timeout=30, what="the command's exit")
    r = client.get(f"/api/sandboxes/{sid}/commands/{cid}/logs")
    assert b"from-profile-d" in r.body, r
    assert runs(client, sid) == before, "a login shell ran for a kept login environment"

    # root's login environment is its own (its own PATH from /etc/profile)
    want_root = login_view(client, sid, user="root")
    settled(client, sid, want_root, user="root")
    assert execute(client, sid, PROBE).json["stdout"] == want

    # a changed script is seen by the next command, then kept again
    install(client, sid, "changed")
    r = execute(client, sid, "printenv SB_PROFILE_VAR")
    assert r.json["stdout"] == "changed\n", r.json
    settled(client, sid, login_view(client, sid))


def test_sandbox_and_call_env_win(client):
    sb = make_sandbox(client, env_vars={"SB_PROFILE_VAR": "from-sandbox"})
    sid = sb["id"]
    try:
        install(client, sid, "from-profile-d")
        # what the sandbox's env_vars set wins over the profile (a real sh -lc
        # lets the profile overwrite it); what it left alone comes from the
        # profile
        want = login_view(client, sid)
        assert "\nfrom-profile-d\n" in want
        settled(client, sid, want.replace("\nfrom-profile-d\n", "\nfrom-sandbox\n"), during=want)
        r = execute(client, sid, "echo $SB_PROFILE_VAR $SB_OTHER")
        assert r.json["stdout"] == "from-sandbox other\n", r.json
        r = execute(client, sid, "echo $SB_PROFILE_VAR $SB_OTHER", env={"SB_PROFILE_VAR": "from-call",
                                                                        "SB_OTHER": "mine"})
        assert r.json["stdout"] == "from-call mine\n", r.json
        r = execute(client, sid, "printenv PATH", env={"PATH": "/usr/bin:/bin"})
        assert r.json["stdout"] == "/usr/bin:/bin\n", r.json
        r = execute(client, sid, "sbtool", env={"PATH": "/usr/bin:/bin"})
        assert r.json["exitCode"] == 127 and "not found" in r.json["stderr"], r.json
        # the next command has the profile's again: nothing leaks
        r = execute(client, sid, "sbtool")
        assert r.json["stdout"] == "tool says other\n", r.json
    finally:
        client.delete(f"/api/sandboxes/{sid}")


def test_shell_syntax_and_exit_codes(client, sandbox):
    sid = sandbox["id"]
    install(client, sid, "v")
    settled(client, sid, login_view(client, sid))
    before = runs(client, sid)
    cases = [
        ("cd /tmp && pwd", "/tmp\n", 0),
        ("echo $SB_PROFILE_VAR-$FROM_CREATE | tr a-z A-Z", "V-YES\n", 0),
        ("printf '%s\\n' 'a b' | wc -w", "2\n", 0),
        ("X=1; echo ${X}2 \"$HOME\"", "12 /home/sandbox\n", 0),
        ("pwd", "/workspace\n", 0),
        ("exit 5", "", 5),
        ("false", "", 1),
        ("sh -c 'exit 9'", "", 9),
    ]
    for cmd, out, code in cases:
        r = execute(client, sid, cmd)
        assert (r.json["stdout"], r.json["exitCode"]) == (out, code), (cmd, r.json)
    for cmd in ("no-such-program-sb", "no-such-program-sb arg", "true | no-such-program-sb"):
        r = execute(client, sid, cmd)
        assert r.json["exitCode"] == 127 and "not found" in r.json["stderr"], (cmd, r.json)
    r = execute(client, sid, "/etc/passwd")  # not executable: the shell says so
    assert r.json["exitCode"] == 126, r.json
    assert runs(client, sid) == before
