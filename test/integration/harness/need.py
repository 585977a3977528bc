"""What a test needs from the machine, and the skip rule: a test that lacks a
dependency calls need(word, why). Outside tools/test that is a skip, listed
by name in the summary. tools/test names what its scripts provide in
SANDBAR_TEST_PROVIDED (postgres, docker, nginx, pg-cluster, root, mount, gvisor); lacking one
of those fails the test, and under tools/test any skip that does not go
through need() fails too (conftest.py), so nothing is skipped unseen."""
import os

import pytest

PREFIX = "needs "


def provided():
    """The words tools/test provides, or None when not run by it."""
    words = os.environ.get("SANDBAR_TEST_PROVIDED")
    return None if words is None else set(words.split())


def need(word, why):
    """Skips (or fails, when tools/test provides `word`) a test that cannot
    run here: why says what is missing."""
    if word in (provided() or ()):
        pytest.fail(f"needs {word}, which tools/test provides, but {why}", pytrace=False)
    pytest.skip(f"{PREFIX}{word}: {why}")


def unprovided_skip(reason):
    """For a skip under tools/test: None when it is allowed (a need() for a
    word that is not provided), else why it fails."""
    words = provided()
    if words is None:
        return None
    reason = reason.removeprefix("Skipped: ")
    if reason.startswith(PREFIX):
        word = reason[len(PREFIX):].partition(":")[0]
        if word not in words:
            return None
    return f"skipped under tools/test, which provides {' '.join(sorted(words)) or 'nothing'}: {reason}"
