"""The integration suite's fixtures and hooks: harness/fixtures.py (shared
with the chaos suite). Run the tests with tools/test, or:
SANDBARD=build/src/sandbard /usr/bin/python3 -m pytest -q test/integration
(after tools/lib/setup.sh has set DATABASE_URL)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness.fixtures import *  # noqa: E402,F401,F403
