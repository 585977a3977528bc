"""Run inside a sandbox by test_gvisor.py: tries what a process breaking out
of its container would try first, and prints one JSON object, each probe's
name -> "allowed" or "refused: <errno name> <why>". Nothing it tries does
harm if it were allowed (a tmpfs mounted and unmounted at once, the current
core_pattern written back, an attach detached at once)."""
import ctypes
import errno
import json
import os
import socket
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]

SYS_INIT_MODULE = 175  # x86_64
SYS_FINIT_MODULE = 313
PTRACE_ATTACH, PTRACE_DETACH = 16, 17


def check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def raw_socket():
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()


def packet_socket():
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()


def mount_tmpfs():
    target = "/tmp/.escape-probe-mnt"
    os.makedirs(target, exist_ok=True)
    check(libc.mount(b"probe", target.encode(), b"tmpfs", 0, None), "mount")
    libc.umount2(target.encode(), 0)


def write_proc_sys():
    # the knobs of the host's kernel a container escape goes for (a pipe in
    # core_pattern or a path in modprobe runs a program as root on the host;
    # ip_forward of the network namespace), each written back unchanged;
    # refused when no write went through
    why = []
    for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe", "/proc/sys/net/ipv4/ip_forward"):
        try:
            with open(path, "rb") as f:
                now = f.read()
            with open(path, "wb") as f:
                f.write(now)
        except OSError as e:
            why.append(f"{os.path.basename(path)} {errno.errorcode.get(e.errno, e.errno)}")
            continue
        return
    raise PermissionError(errno.EPERM, ", ".join(why))


def docker_socket():
    for path in ("/var/run/docker.sock", "/run/docker.sock"):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
        except FileNotFoundError:
            continue
        finally:
            s.close()
        return
    raise FileNotFoundError(errno.ENOENT, "no docker socket")


def load_module():
    # init_module of an empty image, then finit_module of /dev/null: the
    # capability check comes before the image is looked at
    buf = ctypes.create_string_buffer(64)
    rc = libc.syscall(SYS_INIT_MODULE, buf, ctypes.c_ulong(64), b"")
    if rc == 0:
        return
    first = ctypes.get_errno()
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        rc = libc.syscall(SYS_FINIT_MODULE, fd, b"", 0)
    finally:
        os.close(fd)
    if rc != 0:
        e = ctypes.get_errno()
        # EPERM/ENOSYS: refused; anything else (ENOEXEC, EINVAL) means the
        # capability check let it through to the image
        if first in (errno.EPERM, errno.ENOSYS) and e in (errno.EPERM, errno.ENOSYS):
            raise OSError(e, f"init_module: {os.strerror(first)}, finit_module: {os.strerror(e)}")


def ptrace_pid1():
    check(libc.ptrace(PTRACE_ATTACH, 1, None, None), "ptrace(PTRACE_ATTACH, 1)")
    os.waitpid(1, getattr(os, "__WALL", 0x40000000))
    libc.ptrace(PTRACE_DETACH, 1, None, None)


PROBES = {
    "raw_socket": raw_socket,
    "packet_socket": packet_socket,
    "mount": mount_tmpfs,
    "write_proc_sys": write_proc_sys,
    "docker_socket": docker_socket,
    "load_module": load_module,
    "ptrace_pid1": ptrace_pid1,
}


def main():
    out = {}
    for name in sys.argv[1:] or PROBES:
        try:
            PROBES[name]()
            out[name] = "allowed"
        except OSError as e:
            out[name] = f"refused: {errno.errorcode.get(e.errno, e.errno)} {e.strerror or e}"
        except Exception as e:  # noqa: BLE001: anything that stops it is a refusal, named
            out[name] = f"refused: {type(e).__name__} {e}"
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
