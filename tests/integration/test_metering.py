"""Metering and billing (issue 5): one row per invocation in the real
SQLite file, billed duration and cost by the documented formula, the usage
API against the rows, budgets, retention roll-up, price changes, and rows
surviving kill -9 of the daemon under load."""
import csv
import io
import os
import sqlite3
import struct
import threading
import time
import uuid

import pytest
import requests

from conftest import db_write_lock, invoke_in_background, testfn
from conftest import wait_invocations_ok

PRICE_REQ = 200000           # picos: $0.20 per million requests
PRICE_GBS = 16666700         # picos: $0.0000166667 per GB-second
WIDE = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}


def db_of(d):
    return sqlite3.connect(os.path.join(d.state_dir, "sofaas.db"))


def rows(d, where="1", args=()):
    db = db_of(d)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(
            "SELECT * FROM invocations WHERE " + where + " ORDER BY seq",
            args)]
    finally:
        db.close()


def age_first(db, n, days):
    """Makes the n first rows (by id) look as if they ran `days` earlier.
    Ids follow the clock (seq >= start_us), so both move, as they would
    have for rows written then. Returns their ids."""
    shift = days * 86400000000
    seqs = [r[0] for r in db.execute(
        "SELECT seq FROM invocations ORDER BY seq LIMIT ?", (n,))]
    for s in seqs:
        db.execute("UPDATE invocations SET start_us = start_us - ?,"
                   " seq = seq - ? WHERE seq = ?", (shift, shift, s))
    return [s - shift for s in seqs]


def ceil_div(a, b):
    return -(-a // b)


def expected_cost(billed_ms, memory_mb, preq=PRICE_REQ, pgbs=PRICE_GBS):
    return preq + ceil_div(billed_ms * memory_mb * pgbs, 1000 * 1024)


def get(d, path, **params):
    return requests.get(d.url(path), params=params, timeout=30)


def test_billed_duration_and_cost_follow_the_formula(daemon):
    daemon.deploy("sleepy", testfn("sleepy"), params={"memory_mb": "256"})
    ids = []
    for ms in (0, 30, 75, 30):
        r = daemon.invoke("sleepy", params={"ms": str(ms)})
        assert r.status_code == 200
        ids.append((r.headers["X-Request-Id"], ms,
                    int(r.headers["X-Sofaas-Billed-Ms"])))
    for rid, ms, header_ms in ids:
        (row,) = rows(daemon, "request_id = ?", (rid,))
        assert row["function"] == "sleepy" and row["version"] == 1
        assert row["status"] == "ok" and row["http_status"] == 200
        assert row["billed"] == 1 and row["memory_mb"] == 256
        # The daemon measured at least the sleep; billed = the measured
        # duration plus init (cold starts) rounded up to 1 ms.
        assert row["duration_us"] >= ms * 1000
        assert row["billed_ms"] == ceil_div(
            row["duration_us"] + row["init_us"], 1000)
        assert row["billed_ms"] == header_ms
        assert ms <= row["billed_ms"]
        assert row["cost_pico"] == expected_cost(row["billed_ms"], 256)
        assert row["price_request_pico"] == PRICE_REQ
        assert row["price_gb_second_pico"] == PRICE_GBS
        assert row["currency"] == "USD" and row["tenant"] is None
        assert row["bytes_out"] == len("slept %d\n" % ms)
    first = rows(daemon, "request_id = ?", (ids[0][0],))[0]
    assert first["cold_start"] == 1 and first["init_us"] > 0
    assert rows(daemon, "request_id = ?", (ids[1][0],))[0]["init_us"] == 0


def test_granularity_rounds_up(daemon_factory):
    d = daemon_factory(args=["--billing-granularity-ms", "100"])
    d.deploy("sleepy", testfn("sleepy"))
    for ms in (1, 120):
        r = d.invoke("sleepy", params={"ms": str(ms)})
        row = rows(d, "request_id = ?", (r.headers["X-Request-Id"],))[0]
        assert row["billed_ms"] % 100 == 0
        total = row["duration_us"] + row["init_us"]
        assert row["billed_ms"] * 1000 >= total > (row["billed_ms"] - 100) * 1000
        assert row["granularity_ms"] == 100
        assert row["cost_pico"] == expected_cost(row["billed_ms"], 128)


def drive_mixed(d):
    d.deploy("sleepy", testfn("sleepy"))
    d.deploy("boom", testfn("crash"))
    d.deploy("err", testfn("fn_error"), params={"memory_mb": "512"})
    for i in range(5):
        assert d.invoke("sleepy", params={"ms": str(i)}).status_code == 200
    for _ in range(3):
        assert d.invoke("err").status_code == 500
    assert d.invoke("boom").status_code == 200
    assert d.invoke("boom", "/crash").status_code == 502
    assert d.invoke("boom").status_code == 200  # a new instance: cold


def sums_from_rows(rs):
    out = {"invocations": len(rs), "cold_starts": sum(r["cold_start"] for r in rs),
           "pico": sum(r["cost_pico"] for r in rs),
           "mb_ms": sum(r["billed_ms"] * r["memory_mb"] for r in rs),
           "errors": {}}
    for r in rs:
        if r["status"] != "ok":
            out["errors"][r["status"]] = out["errors"].get(r["status"], 0) + 1
    return out


def assert_agg_matches(agg, expect):
    assert agg["invocations"] == expect["invocations"]
    assert agg["cold_starts"] == expect["cold_starts"]
    assert agg["cost_nanos"] == (expect["pico"] + 500) // 1000
    # the decimal string is the exact pico sum
    units, _, frac = agg["cost"].partition(".")
    assert int(units) * 10**12 + int(frac.ljust(12, "0")) == expect["pico"]
    assert agg["billed_gb_seconds"] == round(
        (expect["mb_ms"] * 1000 + 512) // 1024 / 1e6, 6)
    for cls, n in agg["errors"].items():
        assert n == expect["errors"].get(cls, 0), cls
    assert set(expect["errors"]) <= set(agg["errors"])
    assert agg["currency"] == "USD"


def test_usage_sums_equal_rows_and_csv_equals_json(daemon):
    drive_mixed(daemon)
    allrows = rows(daemon)
    assert len(allrows) == 11
    # ids: unique and never below their row's start time (they follow
    # the clock; see test_time_ranges_find_rows_that_finished_late)
    seqs = [r["seq"] for r in allrows]
    assert len(set(seqs)) == 11
    assert all(r["seq"] >= r["start_us"] for r in allrows)
    statuses = {r["request_id"]: r["status"] for r in allrows}
    assert sorted(statuses.values()).count("function_error") == 3
    assert list(statuses.values()).count("crashed") == 1

    u = get(daemon, "/v1/usage").json()  # default: this month, by function
    assert u["group_by"] == "function"
    assert u["from"].endswith("-01T00:00:00Z")
    byfn = {r["function"]: r for r in u["rows"]}
    assert set(byfn) == {"sleepy", "boom", "err"}
    for fn, agg in byfn.items():
        assert_agg_matches(agg, sums_from_rows(
            [r for r in allrows if r["function"] == fn]))
    assert_agg_matches(u["total"], sums_from_rows(allrows))

    for group in ("function", "hour", "day"):
        j = get(daemon, "/v1/usage", group_by=group, **WIDE).json()
        c = get(daemon, "/v1/usage.csv", group_by=group, **WIDE)
        assert c.headers["Content-Type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(c.text)))
        assert len(table) == len(j["rows"]) + 1
        for line, agg in zip(table, j["rows"] + [j["total"]]):
            assert line[group] == agg.get(group, "total")
            assert int(line["invocations"]) == agg["invocations"]
            assert int(line["cold_starts"]) == agg["cold_starts"]
            assert line["cost"] == agg["cost"]
            assert int(line["cost_nanos"]) == agg["cost_nanos"]
            assert float(line["billed_gb_seconds"]) == agg["billed_gb_seconds"]
            assert line["currency"] == agg["currency"]
            for cls, n in agg["errors"].items():
                assert int(line[cls]) == n
        assert j["total"]["invocations"] == 11


def test_usage_filters_grouping_and_bad_parameters(daemon):
    drive_mixed(daemon)
    allrows = rows(daemon)
    u = get(daemon, "/v1/usage", function="err", **WIDE).json()
    assert [r["function"] for r in u["rows"]] == ["err"]
    assert_agg_matches(u["total"], sums_from_rows(
        [r for r in allrows if r["function"] == "err"]))

    hour = get(daemon, "/v1/usage", group_by="hour", **WIDE).json()
    for r in hour["rows"]:
        assert r["hour"].endswith(":00:00Z")
    day = get(daemon, "/v1/usage", group_by="day", **WIDE).json()
    assert all(r["day"].endswith("T00:00:00Z") for r in day["rows"])
    assert hour["total"] == day["total"]

    # A window in the past holds nothing.
    empty = get(daemon, "/v1/usage", **{"from": "2001-01-01T00:00:00Z",
                                        "to": "2001-02-01T00:00:00+01:00"})
    assert empty.status_code == 200
    assert empty.json()["rows"] == [] and empty.json()["total"]["invocations"] == 0

    for params, name in (({"from": "yesterday"}, "from"),
                         ({"to": "2026-13-01T00:00:00Z"}, "to"),
                         ({"from": "2026-11-02T00:00:00Z",
                           "to": "2026-11-01T00:00:00Z"}, "from"),
                         ({"group_by": "week"}, "group_by"),
                         ({"function": "Bad_Name"}, "function"),
                         ({"colour": "blue"}, "colour")):
        for path in ("/v1/usage", "/v1/usage.csv"):
            r = get(daemon, path, **params)
            assert r.status_code == 400, (path, params, r.text)
            err = r.json()["error"]
            assert err["code"] == "invalid_parameter"
            assert err["message"].startswith(name), err

    # /v1/invocations: filters and pagination, newest first.
    r = get(daemon, "/v1/invocations", function="err").json()
    assert [i["function"] for i in r["invocations"]] == ["err"] * 3
    assert all(i["status"] == "function_error" and i["billed"]
               for i in r["invocations"])
    r = get(daemon, "/v1/invocations", status="crashed").json()
    assert len(r["invocations"]) == 1
    assert r["invocations"][0]["function"] == "boom"
    seen = []
    before = None
    while True:
        params = {"limit": "4"}
        if before is not None:
            params["before"] = str(before)
        page = get(daemon, "/v1/invocations", **params).json()
        seen += [i["request_id"] for i in page["invocations"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == [r["request_id"] for r in reversed(allrows)]
    for params, name in (({"limit": "0"}, "limit"), ({"status": "meh"}, "status"),
                         ({"before": "x"}, "before")):
        r = get(daemon, "/v1/invocations", **params)
        assert r.status_code == 400
        assert r.json()["error"]["message"].startswith(name)


def test_budget_block_refuses_records_and_does_not_bill(daemon):
    daemon.deploy("sleepy", testfn("sleepy"))
    # 1000 nanos; each 1-2 ms invocation at 128 MB costs about 202 nanos.
    r = requests.patch(daemon.url("/v1/functions/sleepy"), timeout=30,
                       json={"budget": {"amount": "0.000001",
                                        "action": "block"}})
    assert r.status_code == 200, r.text
    assert r.json()["config"]["budget"] == {"amount": "0.000001",
                                            "action": "block"}
    codes = []
    for _ in range(12):
        codes.append(daemon.invoke("sleepy").status_code)
    assert 200 in codes and codes[-1] == 402
    first_block = codes.index(402)
    assert all(c == 200 for c in codes[:first_block])
    assert all(c == 402 for c in codes[first_block:])
    r = daemon.invoke("sleepy")
    assert r.status_code == 402
    assert r.json()["error"]["code"] == "budget_exceeded"
    assert r.headers["X-Sofaas-Billed-Ms"] == "0"
    row = rows(daemon, "request_id = ?", (r.headers["X-Request-Id"],))[0]
    assert row["status"] == "rejected" and row["http_status"] == 402
    assert row["billed"] == 0 and row["cost_pico"] == 0 and row["billed_ms"] == 0
    billed = rows(daemon, "billed = 1")
    assert len(billed) == first_block
    assert sum(x["cost_pico"] for x in billed) >= 1000 * 1000

    st = get(daemon, "/v1/functions/sleepy").json()["budget_status"]
    assert st["warning"] == "100%" and st["blocked"] is True
    assert st["amount"] == "0.000001" and st["action"] == "block"
    assert st["spent_nanos"] == sum(x["cost_pico"] for x in billed) // 1000
    log = daemon.log()
    assert log.count("reached 100%% of its monthly budget".replace("%%", "%")) == 1
    # the spend survives a restart (it is read back from the rows)
    daemon.restart()
    assert daemon.invoke("sleepy").status_code == 402
    # lifting the budget lets invocations through again
    requests.patch(daemon.url("/v1/functions/sleepy"), json={"budget": None},
                   timeout=30)
    assert daemon.invoke("sleepy").status_code == 200
    assert "budget_status" not in get(daemon, "/v1/functions/sleepy").json()


def test_budget_warn_logs_once_per_level_and_never_blocks(daemon):
    daemon.deploy("sleepy", testfn("sleepy"),
                  params=None)
    requests.patch(daemon.url("/v1/functions/sleepy"), timeout=30,
                   json={"budget": {"amount": "0.000001", "action": "warn"}})
    for _ in range(12):
        assert daemon.invoke("sleepy").status_code == 200
    log = daemon.log()
    assert log.count("reached 80% of its monthly budget") == 1
    assert log.count("reached 100% of its monthly budget") == 1
    st = get(daemon, "/v1/functions/sleepy").json()["budget_status"]
    assert st["warning"] == "100%" and st["blocked"] is False
    r = requests.patch(daemon.url("/v1/functions/sleepy"), timeout=30,
                       json={"budget": {"amount": "1.0000000001"}})
    assert r.status_code == 400
    assert "budget.amount" in r.json()["error"]["message"]


def usage_all(d):
    return {g: get(d, "/v1/usage", group_by=g, **WIDE).json()
            for g in ("function", "hour", "day")}


def test_retention_rollup_keeps_totals(daemon_factory):
    d = daemon_factory(args=["--meter-retention-days", "0"])
    drive_mixed(d)
    d.stop()
    # Age 7 of the 11 rows by 3 days (and one by 40) directly in the file.
    db = db_of(d)
    age_first(db, 7, 3)
    age_first(db, 1, 40)
    db.commit()
    db.close()
    d.start()
    before = usage_all(d)
    assert before["function"]["total"]["invocations"] == 11
    d.stop()
    d.args = ["--meter-retention-days", "2"]
    d.start()  # the roll-up runs on start
    assert "rolled up into hourly usage\" rows=7" in d.log()
    db = db_of(d)
    assert db.execute("SELECT COUNT(*) FROM invocations").fetchone()[0] == 4
    assert db.execute("SELECT SUM(invocations) FROM usage_hourly").fetchone()[0] == 7
    db.close()
    after = usage_all(d)
    assert after == before
    # Idempotent: another start rolls up nothing more.
    d.restart()
    assert usage_all(d) == before


def test_price_change_keeps_old_rows_cost(daemon_factory):
    d = daemon_factory()
    d.deploy("sleepy", testfn("sleepy"))
    for _ in range(3):
        d.invoke("sleepy", params={"ms": "2"})
    old = rows(d)
    d.stop()
    d.args = ["--price-per-request", "0.000001", "--price-per-gb-second",
              "0.0001", "--currency", "USD"]
    d.start()
    for _ in range(2):
        d.invoke("sleepy", params={"ms": "2"})
    now = rows(d)
    assert now[:3] == old
    for r in now[3:]:
        assert r["price_request_pico"] == 1000000
        assert r["price_gb_second_pico"] == 100000000
        assert r["cost_pico"] == expected_cost(r["billed_ms"], 128, 1000000,
                                               100000000)
    total = get(d, "/v1/usage", **WIDE).json()["total"]
    assert_agg_matches(total, sums_from_rows(now))
    # rows in another currency are reported under that currency only
    d.stop()
    d.args = ["--currency", "EUR"]
    d.start()
    d.invoke("sleepy")
    assert get(d, "/v1/usage", **WIDE).json()["total"]["invocations"] == 1
    assert get(d, "/v1/usage", currency="USD",
               **WIDE).json()["total"]["invocations"] == 5


def load(d, stop, acked, errors):
    s = requests.Session()
    while not stop.is_set():
        rid = str(uuid.uuid4())
        try:
            r = s.get(d.url("/fn/sleepy"), params={"ms": "1"},
                      headers={"X-Request-Id": rid}, timeout=10)
        except requests.RequestException:
            errors.append(rid)
            time.sleep(0.01)
            continue
        if 200 <= r.status_code < 300:
            acked.append(rid)


@pytest.mark.parametrize("locked", [False, True],
                         ids=["committed", "spilled"])
def test_kill_9_under_load_loses_no_answered_invocation(daemon_factory,
                                                         locked):
    # "spilled": before each kill another connection takes the write lock
    # and keeps it, so the rows of the requests answered meanwhile are only
    # in the spill journal when the daemon dies; the next start inserts
    # them.
    d = daemon_factory(args=os.environ.get("SF_TEST_METER_ARGS", "").split())
    d.deploy("sleepy", testfn("sleepy"))
    all_acked = []
    # SF_TEST_METER_ARGS="--meter-mode async" shows the test catching the
    # rows async mode loses on a crash.
    for round_ in range(5):
        stop = threading.Event()
        acked, errors = [], []
        threads = [threading.Thread(target=load, args=(d, stop, acked, errors))
                   for _ in range(4)]
        for t in threads:
            t.start()
        # wait until load is flowing, then kill mid-load
        deadline = time.time() + 30
        while len(acked) < 200 + 50 * round_ and time.time() < deadline:
            time.sleep(0.02)
        lock = None
        if locked:
            lock = db_of(d)
            lock.isolation_level = None
            lock.execute("BEGIN IMMEDIATE")
            locked_at = len(acked)
            while len(acked) < locked_at + 100 and time.time() < deadline:
                time.sleep(0.02)
            assert len(acked) >= locked_at + 100, "not answered while locked"
        d.stop(sig=9)
        if lock is not None:
            lock.execute("ROLLBACK")
            lock.close()
        time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join()
        assert len(acked) >= 200
        all_acked += acked
        d.start()
        db = db_of(d)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            counts = dict(db.execute(
                "SELECT request_id, COUNT(*) FROM invocations"
                " GROUP BY request_id").fetchall())
        finally:
            db.close()
        missing = [rid for rid in all_acked if counts.get(rid) != 1]
        assert missing == [], "round %d: %d answered invocations without " \
            "exactly one row" % (round_, len(missing))
        assert all(n == 1 for n in counts.values())
    replays = d.log().count("replayed from the spill journal")
    assert replays == (5 if locked else 0)


def test_failure_classes_are_recorded_and_billed(daemon):
    # What the client saw (error code) must match the row's status class;
    # failures that ran are billed, with the daemon's own measurements.
    daemon.deploy("faulty", testfn("faulty"),
                  params={"memory_mb": "32", "timeout_ms": "300"})
    expect = {"function_crashed": "crashed", "timeout": "timeout",
              "out_of_memory": "out_of_memory",
              "invalid_response": "function_error",
              "function_error": "function_error"}
    seen = set()
    for path, params in (("/abort", None), ("/hang", None),
                         ("/oom", {"mb": "256"}), ("/garbage", None),
                         ("/", None)):
        r = daemon.invoke("faulty", path, params=params)
        (row,) = rows(daemon, "request_id = ?", (r.headers["X-Request-Id"],))
        assert row["http_status"] == r.status_code
        assert int(r.headers["X-Sofaas-Billed-Ms"]) == row["billed_ms"]
        if r.status_code == 200:
            assert row["status"] == "ok"
        else:
            code = r.json()["error"]["code"]
            assert row["status"] == expect[code], (path, code)
            seen.add(row["status"])
        assert row["billed"] == 1
        assert row["cost_pico"] == expected_cost(row["billed_ms"], 32)
        if path == "/hang":
            # killed at timeout_ms: billed for the time it held the instance
            assert row["billed_ms"] >= 300
    assert {"crashed", "timeout", "function_error"} <= seen
    by_class = get(daemon, "/v1/usage")
    assert by_class.json()["total"]["errors"]["timeout"] == 1


def test_rollup_on_the_running_daemon_keeps_totals(daemon_factory):
    # The writer thread checks retention every --meter-rollup-interval-s and
    # rolls up one batch between group commits while invocations go on.
    d = daemon_factory(args=["--meter-retention-days", "2",
                             "--meter-rollup-interval-s", "1"])
    drive_mixed(d)
    db = db_of(d)
    db.execute("PRAGMA busy_timeout=10000")
    last = db.execute("SELECT MAX(seq) FROM invocations").fetchone()[0]
    aged = age_first(db, 6, 5)
    db.commit()
    before = usage_all(d)
    deadline = time.time() + 30
    while time.time() < deadline:
        assert d.invoke("sleepy").status_code == 200
        n = db.execute("SELECT COUNT(*) FROM invocations WHERE seq IN"
                       " (%s)" % ",".join(map(str, aged))).fetchone()[0]
        if n == 0:
            break
        time.sleep(0.1)
    assert n == 0, "the running daemon never rolled the aged rows up"
    assert db.execute("SELECT SUM(invocations) FROM usage_hourly"
                      ).fetchone()[0] == 6
    extra = db.execute("SELECT COUNT(*) FROM invocations WHERE seq > ?",
                       (last,)).fetchone()[0]
    db.close()
    after = usage_all(d)
    assert after["function"]["total"]["invocations"] == 11 + extra
    # Everything but the new sleepy invocations is unchanged.
    for fn in ("boom", "err"):
        b = [r for r in before["function"]["rows"] if r["function"] == fn]
        a = [r for r in after["function"]["rows"] if r["function"] == fn]
        assert a == b
    assert "rolled up into hourly usage\" rows=6" in d.log()


def test_billing_from_the_config_file(daemon_factory, tmp_path):
    import json
    import subprocess
    from conftest import SOFAASD
    cfg = tmp_path / "sofaasd.json"
    cfg.write_text(json.dumps({
        "billing": {"price_per_request": "0.000001",
                    "price_per_gb_second": "0.00002", "granularity_ms": 10,
                    "currency": "EUR"},
        "meter": {"retention_days": 7}}))
    d = daemon_factory(args=["--config", str(cfg)])
    d.deploy("sleepy", testfn("sleepy"))
    r = d.invoke("sleepy", params={"ms": "3"})
    (row,) = rows(d, "request_id = ?", (r.headers["X-Request-Id"],))
    assert (row["price_request_pico"], row["price_gb_second_pico"],
            row["granularity_ms"], row["currency"]) == (1000000, 20000000,
                                                        10, "EUR")
    assert row["billed_ms"] % 10 == 0
    assert row["cost_pico"] == expected_cost(row["billed_ms"], 128, 1000000,
                                             20000000)
    # Prices are exact decimals; a bad one is refused naming the key.
    cfg.write_text(json.dumps({"billing": {"price_per_gb_second": 0.5}}))
    out = subprocess.run([SOFAASD, "--check-config", str(cfg)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "billing.price_per_gb_second: expected string" in out.stderr
    cfg.write_text(json.dumps({"billing": {"price_per_request": "1e-7"}}))
    out = subprocess.run([SOFAASD, "--check-config", str(cfg)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "billing.price_per_request: expected a decimal" in out.stderr
    cfg.write_text(json.dumps({"meter": {"mode": "later"}}))
    out = subprocess.run([SOFAASD, "--check-config", str(cfg)],
                         capture_output=True, text=True, timeout=30)
    assert "meter.mode: expected sync, async or off" in out.stderr


def spill_path(d):
    return os.path.join(d.state_dir, "sofaas.db-spill")


def count_rows(d, rids):
    db = db_of(d)
    try:
        counts = dict(db.execute("SELECT request_id, COUNT(*) FROM"
                                 " invocations GROUP BY request_id"))
    finally:
        db.close()
    return [counts.get(rid, 0) for rid in rids]


def invoke_ids(d, n):
    """Invokes echo n times, each answered 200; returns the request ids."""
    rids = []
    for _ in range(n):
        r = d.invoke("echo", params={"ms": "0"}, timeout=60)
        assert r.status_code == 200
        rids.append(r.headers["X-Request-Id"])
    return rids


def test_a_held_database_lock_never_holds_up_responses(daemon):
    """Another connection (an operator's sqlite3 shell) holds the write
    lock, so the loop cannot commit. In sync mode the rows go to the spill
    journal and the invocations are answered meanwhile; once the lock is
    released the running daemon commits them, each exactly once, and
    empties the journal."""
    daemon.deploy("echo", testfn("sleepy"))
    assert daemon.invoke("echo", params={"ms": "0"}).status_code == 200
    with db_write_lock(daemon):
        rids = invoke_ids(daemon, 10)
        # readers still see the database: none of them is committed yet
        assert count_rows(daemon, rids) == [0] * 10
        assert os.path.getsize(spill_path(daemon)) > 0
    # No further request: the daemon commits them by itself.
    for _ in range(600):
        if count_rows(daemon, rids) == [1] * 10:
            break
        time.sleep(0.05)
    assert count_rows(daemon, rids) == [1] * 10
    assert os.path.getsize(spill_path(daemon)) == 0


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h


def test_a_spilled_row_it_cannot_read_stops_the_start(daemon_factory):
    """A whole frame (checksum right) whose row has another layout is an
    answered invocation this build cannot read: the daemon must refuse to
    start and leave the file as it is, not drop the row."""
    d = daemon_factory()
    d.deploy("echo", testfn("sleepy"))
    with db_write_lock(d):
        rids = invoke_ids(d, 3)
        d.stop(sig=9)
    with open(spill_path(d), "rb") as f:
        frames = f.read()
    magic, length, _ = struct.unpack_from("<IIQ", frames, 0)
    payload = bytearray(frames[16:16 + length])
    struct.pack_into("<I", payload, 0, 99)  # the row's layout field
    bad = struct.pack("<IIQ", magic, length, fnv1a64(payload)) + \
        bytes(payload) + frames[16 + length:]
    with open(spill_path(d), "wb") as f:
        f.write(bad)
    d.start(wait=False)
    d.proc.wait(30)
    assert d.stop() != 0
    assert "a spilled invocation row has an unknown layout" in d.log()
    with open(spill_path(d), "rb") as f:
        assert f.read() == bad
    assert count_rows(d, rids) == [0, 0, 0]
    # the operator restores a readable journal: every row goes in
    with open(spill_path(d), "wb") as f:
        f.write(frames)
    d.start()
    assert count_rows(d, rids) == [1, 1, 1]


def test_without_the_journal_responses_wait_for_the_lock(daemon_factory):
    """meter.spill_max_mb = 0 turns the spill journal off: the response
    then waits for its row, which waits for the lock, while the loop keeps
    serving (/healthz answered meanwhile); once the lock is released the
    invocation is answered and recorded exactly once."""
    d = daemon_factory(args=["--meter-spill-max-mb", "0"])
    d.deploy("echo", testfn("sleepy"))
    assert d.invoke("echo", params={"ms": "0"}).status_code == 200
    with db_write_lock(d):
        t, result = invoke_in_background(d, "echo", {"ms": "0"})
        # the function has run (counted before it is metered); its
        # response now waits for the row
        wait_invocations_ok(d, "echo", 2)
        assert requests.get(d.url("/healthz"), timeout=60).status_code == 200
        answered_while_locked = "status" in result
    t.join(60)
    assert not answered_while_locked
    assert result.get("status") == 200
    assert count_rows(d, [result["rid"]]) == [1]
    assert os.path.getsize(spill_path(d)) == 0


def test_spilled_rows_survive_kill_9_and_are_inserted_once(daemon_factory):
    """Rows answered from the spill journal while the database was locked
    are inserted at the next start when the daemon was killed first; a torn
    last frame (a crash in the middle of its write: never answered) is
    dropped with a warning, and a row already committed is not counted
    twice."""
    d = daemon_factory()
    d.deploy("echo", testfn("sleepy"))
    first = d.invoke("echo", params={"ms": "0"}).headers["X-Request-Id"]
    with db_write_lock(d):
        rids = invoke_ids(d, 10)
        d.stop(sig=9)
    with open(spill_path(d), "rb") as f:
        frames = f.read()
    assert frames[:4] == b"SFJ1"
    # the first frame again (its row would be a duplicate), then half of
    # one more: what a crash in the middle of a write leaves
    size = len(frames) // 10
    with open(spill_path(d), "ab") as f:
        f.write(frames[:size] + frames[:size // 2])
    d.start()
    assert count_rows(d, [first] + rids) == [1] * 11
    assert os.path.getsize(spill_path(d)) == 0
    log = d.log()
    assert 'msg="invocation rows replayed from the spill journal" ' \
        'rows=11 new=10' in log
    assert "torn or bad tail" in log
    db = db_of(d)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


def rfc3339_us(us):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us // 10**6)) + \
        ".%06dZ" % (us % 10**6)


def test_time_ranges_find_rows_that_finished_late(daemon):
    # Ids follow the clock: seq = MAX(start_us, previous seq + 1). A slow
    # invocation that finishes after one started later gets an id above its
    # start time; time-range queries must still find it by start_us.
    daemon.deploy("sleepy", testfn("sleepy"))
    t, slow = invoke_in_background(daemon, "sleepy", {"ms": "1500"})
    time.sleep(0.4)
    assert daemon.invoke("sleepy", params={"ms": "0"}).status_code == 200
    t.join()
    assert slow["status"] == 200
    (row,) = rows(daemon, "request_id = ?", (slow["rid"],))
    fast = [r for r in rows(daemon) if r["request_id"] != slow["rid"]]
    assert len(fast) == 1
    assert fast[0]["start_us"] > row["start_us"]
    assert row["seq"] > fast[0]["seq"] > row["start_us"]
    db = db_of(daemon)
    lag = db.execute("SELECT value FROM meter_state WHERE key = 'seq_lag_us'"
                     ).fetchone()[0]
    db.close()
    assert lag >= row["seq"] - row["start_us"]
    # a range that holds only the slow invocation's start
    one = {"from": rfc3339_us(row["start_us"]),
           "to": rfc3339_us(row["start_us"] + 1)}
    u = get(daemon, "/v1/usage", group_by="function", **one).json()
    assert u["total"]["invocations"] == 1
    c = get(daemon, "/v1/usage.csv", group_by="function", **one).text
    assert [(line["function"], line["invocations"]) for line in
            csv.DictReader(io.StringIO(c))] == [("sleepy", "1"),
                                                ("total", "1")]


def test_schema_3_ids_are_renumbered_on_upgrade(daemon_factory):
    # Databases written before ids followed the clock (schema 3) had
    # ids 1, 2, 3... and an index on start_us. Make one from a current
    # database, then let the daemon migrate it.
    d = daemon_factory()
    drive_mixed(d)
    before = usage_all(d)
    order = [r["request_id"] for r in rows(d)]
    d.stop()
    db = db_of(d)
    old = [r[0] for r in db.execute("SELECT seq FROM invocations"
                                    " ORDER BY seq")]
    db.execute("UPDATE invocations SET seq = -seq")
    for n, seq in enumerate(old, 1):
        db.execute("UPDATE invocations SET seq = ? WHERE seq = ?", (n, -seq))
    db.execute("CREATE INDEX invocations_start ON invocations(start_us)")
    db.execute("DELETE FROM meter_state WHERE key = 'seq_lag_us'")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    assert [r[0] for r in db.execute("SELECT seq FROM invocations"
                                     " ORDER BY seq")] == list(range(1, 12))
    db.close()
    d.start()
    assert "database migrated\" schema=4" in d.log()
    after = rows(d)
    assert [r["request_id"] for r in after] == order
    assert all(r["seq"] >= r["start_us"] for r in after)
    db = db_of(d)
    assert db.execute("SELECT name FROM sqlite_master WHERE name ="
                      " 'invocations_start'").fetchone() is None
    assert db.execute("SELECT value FROM meter_state WHERE key ="
                      " 'seq_lag_us'").fetchone()[0] == \
        max(r["seq"] - r["start_us"] for r in after)
    db.close()
    assert usage_all(d) == before
    r = d.invoke("sleepy", params={"ms": "0"})
    (new,) = rows(d, "request_id = ?", (r.headers["X-Request-Id"],))
    assert new["seq"] > after[-1]["seq"]


def test_the_wal_stays_bounded_under_sustained_load(daemon_factory):
    # Under sustained load a commit always lands while a PASSIVE
    # checkpoint runs, so the WAL never restarted and grew without bound
    # (hundreds of MB a minute). Past meter.wal_max_mb the checkpointer
    # catches up holding the meter's lock so that the next commit restarts
    # it. 1 MiB here; the clients write ~30 MB of WAL frames.
    d = daemon_factory(args=["--meter-wal-max-mb", "1",
                             "--log-level", "debug"])
    d.deploy("sleepy", testfn("sleepy"), params={"min_warm": "2"})
    wal = os.path.join(d.state_dir, "sofaas.db-wal")
    sizes = []

    def client(n):
        s = requests.Session()
        for _ in range(n):
            r = s.get(d.url("/fn/sleepy"), params={"ms": "0"}, timeout=30)
            assert r.status_code == 200

    threads = [threading.Thread(target=client, args=(400,)) for _ in range(8)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        if os.path.exists(wal):
            sizes.append(os.path.getsize(wal))
        time.sleep(0.01)
    for t in threads:
        t.join()
    assert len(rows(d)) == 3200
    # journal_size_limit is twice wal_max_mb; a restart leaves the file's
    # size as it was, so the bound is that plus the frames of one commit
    assert max(sizes) <= 2 * 1024 * 1024 + 64 * 1024, max(sizes)
    assert 'msg="WAL caught up for a restart"' in d.log()
    # the restart (and its fsync of the WAL header) was the checkpointer's
    # own write, not the loop's next commit
    db = db_of(d)
    try:
        restarts = db.execute("SELECT value FROM meter_state"
                              " WHERE key = 'wal_restarts'").fetchone()
    finally:
        db.close()
    assert restarts is not None and restarts[0] >= 1


def test_ids_are_exact_json_integers(daemon_factory):
    # Ids follow the clock (~1.8e15). cJSON printed such a double as
    # 1.7957618407355e+15 when its last digits were zeros, so a client read
    # a float and sent it back as before=1795761840735500.0 (400).
    d = daemon_factory()
    d.deploy("sleepy", testfn("sleepy"))
    for _ in range(3):
        assert d.invoke("sleepy", params={"ms": "0"}).status_code == 200
    d.stop()
    db = db_of(d)
    seqs = [r[0] for r in db.execute("SELECT seq FROM invocations"
                                     " ORDER BY seq")]
    new = [1795761840735000, 1795761840735100, 1795761840735200]
    for old, s in zip(seqs, new):
        db.execute("UPDATE invocations SET seq = ?, start_us = ?"
                   " WHERE seq = ?", (s, s, old))
    db.commit()
    db.close()
    d.start()
    raw = get(d, "/v1/invocations", limit="2").text
    assert '"invocation_id":1795761840735200,' in raw
    assert '"start_us":1795761840735100,' in raw
    assert raw.endswith('"next_before":1795761840735100}')
    page = get(d, "/v1/invocations", limit="2",
               before=str(get(d, "/v1/invocations", limit="2")
                          .json()["next_before"])).json()
    assert [i["invocation_id"] for i in page["invocations"]] == [new[0]]
