"""A PostgreSQL 15 cluster of a test's own whose data directory (WAL
included) sits on a small tmpfs, to fill up: initdb and pg_ctl from
Debian's binaries, run as the postgres user, listening on a free port of
127.0.0.1 only (trust for the loopback: a throwaway), fsync off.

  pg = TinyCluster(folder, size_mb=96); pg.start(); pg.url("sandbar")
  pg.fill(leave_kb) / pg.unfill()   a file taking the tmpfs's free space
  pg.psql(sql, db); pg.destroy()    stop, unmount, remove"""
import os
import shutil
import subprocess
import time

from harness import paths
from harness.need import need
from harness.server import free_port

BIN = "/usr/lib/postgresql/15/bin"


def _run(args, timeout=120, check=True, as_postgres=False):
    if as_postgres and os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): {r.stdout}{r.stderr}")
    return r


class TinyCluster:
    def __init__(self, folder, size_mb=96):
        if os.geteuid() != 0:
            need("root", "a tmpfs and a cluster run as postgres need root")
        if not os.access(os.path.join(BIN, "initdb"), os.X_OK):
            need("postgres", f"{BIN}/initdb is missing (Debian's postgresql-15)")
        self.folder = folder
        self.mnt = os.path.join(folder, "disk")
        self.data = os.path.join(self.mnt, "data")
        self.log = os.path.join(folder, "postgresql.log")
        self.filler = os.path.join(self.mnt, "filler")
        self.size_mb = size_mb
        self.port = free_port()
        self.mounted = False

    def start(self):
        os.makedirs(self.mnt, exist_ok=True)
        if _run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0755", "sandbar-tinypg", self.mnt],
                check=False).returncode != 0:
            need("mount", "mount -t tmpfs was refused here")
        self.mounted = True
        shutil.chown(self.mnt, "postgres", "postgres")
        shutil.chown(self.folder, "postgres", "postgres")
        _run([f"{BIN}/initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
              "--auth-local=trust", "--auth-host=trust", "--wal-segsize=1"], as_postgres=True)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"\n# a chaos test's tiny cluster (test/chaos/tiny_pg.py)\n"
                    f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
                    "max_connections = 40\nshared_buffers = 16MB\nfsync = off\nsynchronous_commit = off\n"
                    "full_page_writes = off\nmin_wal_size = 4MB\nmax_wal_size = 8MB\n"
                    "log_min_messages = warning\n")
        self.pg_start()
        self.psql("CREATE DATABASE sandbar")

    def pg_start(self):
        _run([f"{BIN}/pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "30", "start"], as_postgres=True)

    def running(self):
        return _run([f"{BIN}/pg_ctl", "-D", self.data, "status"], check=False, as_postgres=True).returncode == 0

    def url(self, db="sandbar"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def psql(self, sql, db="postgres", check=True):
        r = _run(["psql", self.url(db), "-XtAq", "-v", "ON_ERROR_STOP=1", "-c", sql], timeout=60, check=check)
        return r.stdout if r.returncode == 0 else None

    def free_kb(self):
        st = os.statvfs(self.mnt)
        return st.f_bavail * st.f_frsize // 1024

    def fill(self, leave_kb=0):
        """Takes all but leave_kb of the tmpfs's free space with one file."""
        size = max(0, self.free_kb() - leave_kb) * 1024
        with open(self.filler, "ab") as f:
            chunk = b"\0" * (1 << 20)
            while size > 0:
                try:
                    f.write(chunk[:min(size, len(chunk))])
                    f.flush()
                except OSError:
                    break
                size -= min(size, len(chunk))

    def unfill(self):
        if os.path.exists(self.filler):
            os.unlink(self.filler)

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def destroy(self):
        if self.mounted:
            self.unfill()
            if self.running():
                _run([f"{BIN}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "-t", "30", "stop"],
                     check=False, as_postgres=True)
            deadline = time.monotonic() + 10
            while _run(["umount", self.mnt], check=False).returncode != 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            self.mounted = False
        # its log beside the servers' logs of the step
        logs = os.environ.get("SANDBAR_TEST_LOGS") or os.path.join(paths.DATA, "test-logs")
        os.makedirs(logs, exist_ok=True)
        if os.path.exists(self.log):
            shutil.copy(self.log, os.path.join(logs, f"{os.path.basename(self.folder)}.postgresql.log"))
        shutil.rmtree(self.folder, ignore_errors=True)
