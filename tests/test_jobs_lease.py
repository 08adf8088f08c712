import datetime as dt
import json
import shutil
import subprocess
import sys
import threading
import time

import boto3
import pytest

from jobs.lease import LOCK_NAME, Lease, LeaseConfig, LeaseError

FAST = LeaseConfig(heartbeat_s=0.1, stale_after_s=1.0)


@pytest.fixture(params=["local", "s3"])
def output(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "out")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/index"


def _read(output):
    if output.startswith("s3://"):
        bucket, _, key = output[5:].partition("/")
        try:
            body = boto3.client("s3").get_object(Bucket=bucket, Key=f"{key}/{LOCK_NAME}")["Body"].read()
        except boto3.client("s3").exceptions.NoSuchKey:
            return None
        return json.loads(body)
    try:
        with open(f"{output}/{LOCK_NAME}") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _write(output, info):
    body = json.dumps(info).encode()
    if output.startswith("s3://"):
        bucket, _, key = output[5:].partition("/")
        boto3.client("s3").put_object(Bucket=bucket, Key=f"{key}/{LOCK_NAME}", Body=body)
    else:
        import os
        os.makedirs(output, exist_ok=True)
        with open(f"{output}/{LOCK_NAME}", "wb") as f:
            f.write(body)


def test_one_holder_heartbeat_and_release(output):
    with Lease(output, "run-a", FAST):
        first = _read(output)
        assert first["run_id"] == "run-a"
        with pytest.raises(LeaseError, match="in use by run run-a"):
            Lease(output, "run-b", FAST).acquire()
        time.sleep(0.5)
        assert _read(output)["heartbeat_at"] > first["heartbeat_at"]  # refreshed
    assert _read(output) is None  # released
    with Lease(output, "run-b", FAST):  # free again
        assert _read(output)["run_id"] == "run-b"


def test_stale_lease_is_taken_over_once(output):
    # eight runs find the same stale lease at the same instant, several times over: exactly one
    # wins each time (the old local rename-aside-then-O_EXCL takeover let 2-3 win most rounds)
    rounds = 20 if not output.startswith("s3://") else 3
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=60)).isoformat()
    for r in range(rounds):
        _write(output, {"run_id": "dead", "host": "h", "pid": 1, "heartbeat_at": old})
        # a longer staleness than FAST: on a loaded machine the winner's first beat may come late
        leases = [Lease(output, f"run-{r}-{i}", LeaseConfig(heartbeat_s=0.1, stale_after_s=30)) for i in range(8)]
        won, refused, errors = [], [], []
        start = threading.Barrier(len(leases))

        def take(lease):
            start.wait()
            try:
                lease.acquire()
                won.append(lease)
            except LeaseError:
                refused.append(lease)
            except Exception as e:  # e.g. a half-written lease file read by a racer
                errors.append(e)
        threads = [threading.Thread(target=take, args=(lease,)) for lease in leases]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert len(won) == 1 and len(refused) == len(leases) - 1, (r, [w.run_id for w in won])
        assert _read(output)["run_id"] == won[0].run_id
        assert won[0].took_over["run_id"] == "dead"  # the lease never vanished in between
        won[0].release()
        assert _read(output) is None


_RACER = """
import os, sys, time
from jobs.lease import Lease, LeaseConfig, LeaseError
output, run_id, go, release = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
while time.time() < go:  # spin, so that all start within microseconds
    pass
try:
    lease = Lease(output, run_id, LeaseConfig(heartbeat_s=0.1, stale_after_s=30)).acquire()
except LeaseError:
    print("refused", flush=True)
    sys.exit(0)
print("won", flush=True)
while not os.path.exists(release):  # hold it until every other racer has answered
    time.sleep(0.05)
lease.release()
"""


def test_stale_lease_race_between_processes(tmp_path):
    # separate processes (separate runs on one host), not threads: still exactly one winner
    output = str(tmp_path / "out")
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=60)).isoformat()
    for r in range(8):
        _write(output, {"run_id": "dead", "host": "h", "pid": 1, "heartbeat_at": old})
        go = time.time() + 1.5  # start together once every interpreter has imported the module
        release = tmp_path / f"release-{r}"
        procs = [subprocess.Popen([sys.executable, "-c", _RACER, output, f"p{r}-{i}", str(go), str(release)],
                                  stdout=subprocess.PIPE, text=True) for i in range(6)]
        said = sorted(p.stdout.readline().strip() for p in procs)
        release.touch()
        for p in procs:
            p.communicate(timeout=60)
        assert all(p.returncode == 0 for p in procs), said
        assert said == ["refused"] * 5 + ["won"], (r, said)
        assert _read(output) is None  # the winner released it


def test_a_lost_lease_is_noticed(output):
    lease = Lease(output, "slow", FAST).acquire()
    _write(output, {"run_id": "other", "host": "h", "pid": 2,
                    "heartbeat_at": dt.datetime.now(dt.timezone.utc).isoformat()})
    time.sleep(0.4)
    with pytest.raises(LeaseError, match="taken over"):
        lease.check()
    lease.release()
    assert _read(output)["run_id"] == "other"  # not deleted: it is not ours any more


def test_a_lease_that_cannot_be_refreshed_stops_the_run(tmp_path):
    # the output folder is gone and a file stands in its place: every heartbeat fails; once the
    # lease could be stale, another run may take it over, so this run must stop, not write on
    output = str(tmp_path / "out")
    lease = Lease(output, "cut-off", FAST).acquire()
    shutil.rmtree(output)
    (tmp_path / "out").write_text("not a folder")
    time.sleep(0.5)
    lease.check()  # a few failed beats inside stale_after_s are retried, not fatal
    time.sleep(FAST.stale_after_s + 0.5)
    with pytest.raises(LeaseError, match="no heartbeat for .*FileExistsError"):
        lease.check()
    lease.release()


def test_settings_are_validated():
    with pytest.raises(ValueError, match="stale_after_s > 2"):
        LeaseConfig(heartbeat_s=10, stale_after_s=15)
