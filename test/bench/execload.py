"""A small asyncio HTTP/1.1 load generator for POST .../execute: N requests
at concurrency C over keep-alive connections, one connection per worker, no
threads. Checks every answer (status 200 and the expected stdout) and
returns the wall time, the latencies and the error count. Its own CPU time is
returned too, so a run can show the client was not the bottleneck (Python
threads at concurrency 200 were: GIL hand-offs and http.client parsing cost
more CPU than the server spent).
Usable alone: execload.py HOST PORT N C SANDBOX_ID..."""
import asyncio
import json
import resource
import sys
import time


def _cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _read_response(reader):
    """(status, body bytes) of one response with a Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _run(host, port, jobs, concurrency, timeout):
    """jobs: list of (path, body bytes, check(status, body) -> bool)."""
    latencies = [0.0] * len(jobs)
    errors = [0]
    next_job = iter(range(len(jobs)))

    async def worker():
        reader = writer = None
        for i in next_job:
            path, body, check = jobs[i]
            req = (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            t0 = time.perf_counter()
            ok = False
            for attempt in (0, 1):
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, port)
                    writer.write(req)
                    status, data = await asyncio.wait_for(_read_response(reader), timeout)
                    ok = check(status, data)
                    break
                except (ConnectionError, asyncio.IncompleteReadError) as e:
                    # a kept-alive connection closed by the server: one retry
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    if attempt:
                        print(f"execload: request {i}: {e!r}", file=sys.stderr)
                except asyncio.TimeoutError:
                    print(f"execload: request {i}: timed out", file=sys.stderr)
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    break
            latencies[i] = time.perf_counter() - t0
            if not ok:
                errors[0] += 1
        if writer is not None:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(jobs)))))
    return time.perf_counter() - t0, latencies, errors[0]


def echo_jobs(sandbox_ids, n, shell=False):
    """Job i runs `echo i` in sandbox i % len(sandbox_ids) and expects "i\\n":
    argv ["echo", "i"], or with shell the string "echo i" (/bin/sh -lc)."""
    jobs = []
    for i in range(n):
        want = f"{i}\n"

        def check(status, body, want=want):
            if status != 200:
                return False
            try:
                return json.loads(body).get("stdout") == want
            except ValueError:
                return False

        sid = sandbox_ids[i % len(sandbox_ids)]
        jobs.append((f"/api/sandboxes/{sid}/execute", json.dumps({"command": f"echo {i}" if shell else ["echo", str(i)]}).encode(), check))
    return jobs


def run(host, port, jobs, concurrency, timeout=60.0):
    """(wall seconds, latencies in seconds, errors, client CPU seconds)."""
    cpu0 = _cpu_seconds()
    wall, lat, errors = asyncio.run(_run(host, port, jobs, concurrency, timeout))
    return wall, lat, errors, _cpu_seconds() - cpu0


if __name__ == "__main__":
    h, p, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    ids = sys.argv[5:]
    shell = ids[0] == "--shell"
    wall, lat, errs, cpu = run(h, p, echo_jobs(ids[1:] if shell else ids, n, shell), c)
    lat.sort()
    print(
        f"{n / wall:.0f} execs/s, p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
        f"p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms, errors {errs}, client CPU {cpu:.2f} s"
    )
