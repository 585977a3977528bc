"""The soak (soak.py) in a bounded form: CHAOS_SECONDS of mixed load with
faults at random (45 s under tools/test; tools/chaos runs it for longer),
seeded by CHAOS_SEED (else a fresh seed, printed), then the audit: nothing
acknowledged lost, no orphans, nothing stuck, no 500."""
import os
import random

import soak


def test_soak_with_faults_loses_nothing(local_dockerd, on_dockerd, pg_cluster, capsys):
    seed = int(os.environ.get("CHAOS_SEED") or random.randrange(2**31))
    seconds = float(os.environ.get("CHAOS_SECONDS") or 45)
    srv = on_dockerd(local_dockerd)
    lines = []

    def log(s):
        lines.append(s)
        with capsys.disabled():
            print(s, flush=True)

    report = soak.run(srv, local_dockerd, seed, seconds, pg_cluster=pg_cluster, log=log)
    summary = "\n".join(lines)
    assert report["faults injected"] > 0, summary
    assert report["operations acknowledged"] > 0, summary
    assert report["lost"] == 0, (summary, report["details"])
    assert report["orphans"] == 0, (summary, report["details"])
    assert report["stuck"] == 0, (summary, report["details"])
    assert report["bad answers"] == 0, (summary, report["details"])
