"""Where things are: the repository, the data folder, the sandbard binary."""
import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DATA = os.environ.get("SANDBAR_DATA") or os.path.join(ROOT, ".data")
SETUP_SH = os.path.join(ROOT, "tools", "lib", "setup.sh")


def sandbard_binary():
    """The binary under test: $SANDBARD, else the ASan build, else build/."""
    if os.environ.get("SANDBARD"):
        return os.path.abspath(os.environ["SANDBARD"])
    for d in ("build-asan", "build"):
        p = os.path.join(ROOT, d, "src", "sandbard")
        if os.path.exists(p):
            return p
    return os.path.join(ROOT, "build-asan", "src", "sandbard")
