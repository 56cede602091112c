"""A short run of the soak test (tests/soak/soak.py) inside the suite.

About 15 s of the same mixed load — keep-alive and one-shot clients, good
and malformed requests, worker kills, redeploys and SIGHUP reloads — with
the same checks as `make soak`: only documented responses, no hangs, and
the daemon's fds (and, outside ASan, RSS) flat between the warm-up and the
end.
"""
import os
import sys

from conftest import BUILD, SOURCE

sys.path.insert(0, os.path.join(SOURCE, "tests", "soak"))
import soak  # noqa: E402


def test_soak_short(daemon_factory):
    d = daemon_factory(args=["--workers", "2", "--max-workers", "12",
                             "--log-level", "info"])
    report = soak.Soak(d, soak.artifacts(BUILD), duration=10, warmup=5,
                       clients=4,
                       sighup=os.environ.get("SOAK_SIGHUP", "1") != "0").run()
    soak.summarize(report)
    assert d.proc.poll() is None, "sofaasd died:\n" + d.log()[-4000:]
    assert report["failures"] == [], report["failures"]
    # The run did exercise what it claims to.
    assert report["chaos"].get("worker_killed", 0) > 0
    assert report["chaos"].get("redeployed", 0) > 0
    assert report["chaos"].get("sighup", 0) > 0 or \
        os.environ.get("SOAK_SIGHUP") == "0"
    assert report["requests"] > 100
