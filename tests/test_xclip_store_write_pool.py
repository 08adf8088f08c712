"""xclip_store.write_pool on real Ray (local) and real LanceDB, locally and on moto S3: N writers
produce the same tables and Parquet rows as 1, in-flight chunks stay bounded, commits keep the
submission order when a later task ends first, a failing task stops the run with OutputError."""
from __future__ import annotations

import re

import lance
import lancedb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import STATUS_FAILED, STATUS_OK
from xclip_core import storage
from xclip_store import flat_commit as fc
from xclip_store.errors import LeaseError, OutputError
from xclip_store.write_pool import WritePool, WritePoolConfig, Written
from jobs.write_tasks import RayTasks
from tests.conftest import own_ray
from jobs.config import WriterConfig
from xclip_store.writer import Writer, per_video_columns
from tests.test_xclip_store_flat_commit import DIM, check_reader_view, make_output, segs, videos

pytestmark = pytest.mark.slow

RUN = "r2"
TIMEOUT_S = 60  # a gate that is never opened fails the test instead of hanging it


@pytest.fixture(scope="module")
def ray_session(s3_server):
    import sys

    from ray import cloudpickle

    # the write hooks below travel to the workers by value (pytest's module name is not importable there)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with own_ray():  # after the S3 server: the workers inherit its AWS_* environment
        yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(params=["local", "s3"])
def out_base(request, tmp_path):
    if request.param == "local":
        return str(tmp_path)
    return f"s3://{request.getfixturevalue('s3_bucket')}"


class Committer:
    """The writer's leased commit, as ``xclip_store.pooled`` passes it: ``Writer.commit_staged`` of
    the batch (placeholder videos rows, then the segments; the videos rows, then the segments of
    videos no longer ok), recording the order and the batch sizes."""

    def __init__(self, output_uri: str):
        self.writer = Writer(WriterConfig(output=output_uri), run_id=RUN, dim=DIM)
        self.out = self.writer.out
        self.order: list[tuple[str, int]] = []
        self.on_commit = None
        self.pool = None
        self.batches: list[int] = []

    def __call__(self, batch: list[Written]) -> None:
        if self.on_commit is not None:
            self.on_commit(batch)
        assert len({w.name for w in batch}) == 1
        self.order += [(w.name, w.seq) for w in batch]
        self.batches.append(len(batch))
        self.writer.commit_staged(batch[0].name, [w.staged for w in batch], [w.parquet_uri for w in batch])


# run r2 over an output holding r1 (A: 3 segments, C: 2, both ok): A rewritten with 2 segments,
# 7 new videos, C failed; segments in 5 chunks, then the videos rows
SEGMENT_CHUNKS = [[("A", 2), ("N0", 3)], [("N1", 4)], [("N2", 2), ("N3", 5)], [("N4", 1)], [("N5", 3), ("N6", 2)]]


def segment_chunk(i: int) -> pa.Table:
    return pa.concat_tables([segs(v, n, RUN, seed=sum(map(ord, v))) for v, n in SEGMENT_CHUNKS[i]])


def final_videos() -> pa.Table:
    rows = [(v, STATUS_OK, n) for chunk in SEGMENT_CHUNKS for v, n in chunk] + [("C", STATUS_FAILED, 0)]
    return videos(rows, RUN)


def run_pool(output_uri: str, cfg: WritePoolConfig, *, hook=None, chunks=None, as_refs: bool = False,
             committer: Committer | None = None) -> tuple[WritePool, Committer]:
    com = committer or Committer(output_uri)
    pool = com.pool = WritePool(output_uri, run_id=RUN, commit=com, cfg=cfg, hook=hook, per_video=per_video_columns,
                                executor=RayTasks() if cfg.writers > 1 else None)
    seen = []
    with pool:
        for i in (range(len(SEGMENT_CHUNKS)) if chunks is None else chunks):
            chunk = segment_chunk(i)
            if as_refs:
                import ray

                chunk = ray.put(chunk)
            pool.submit("segments", chunk)
            seen.append((pool.in_flight, pool.running))
            assert pool.in_flight <= cfg.in_flight_limit and pool.running <= cfg.writers
        pool.submit("videos", final_videos(), barrier=True)
    pool.seen = seen
    return pool, com


def tables(output_uri: str) -> dict[str, pa.Table]:
    """LanceDB tables and Parquet rows, sorted (the pool's result, independent of file names)."""
    db = lancedb.connect(storage.join(output_uri, "lancedb"), storage_options=storage.lancedb_storage_options(output_uri))
    out = {"segments": db.open_table("segments").to_arrow().sort_by("segment_id"),
           "videos": db.open_table("videos").to_arrow().sort_by("video_id")}
    fs, base = storage.pyarrow_filesystem(output_uri)
    for name, key in (("segments", "segment_id"), ("videos", "video_id")):
        import pyarrow.fs as pafs

        files = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(f"{base}/parquet/{name}",
                                                                           allow_not_found=True)))
        out[f"parquet {name}"] = (pa.concat_tables([pq.read_table(f, filesystem=fs) for f in files]).sort_by(key)
                                  if files else None)
        out[f"files {name}"] = [f.rsplit("/", 1)[1] for f in files]
    return out


def test_n_writers_write_the_same_tables_as_one(ray_session, out_base):
    got = {}
    for writers in (1, 3):
        uri = f"{out_base}/out{writers}"
        make_output(storage.join(uri, "lancedb"))
        pool, com = run_pool(uri, WritePoolConfig(writers=writers, max_in_flight=4, max_batch=2), as_refs=writers > 1)
        assert com.order == [("segments", i) for i in range(5)] + [("videos", 0)]
        got[writers] = tables(uri)
        assert [f.rsplit("/", 3)[-2:] for f in pool.parquet_files] == (  # in commit order, full URIs
            [["segments", f"{RUN}-{i:05d}-{pool.token}.parquet"] for i in range(5)]
            + [["videos", f"{RUN}-00000-{pool.token}.parquet"]])
        assert all(f.startswith(uri.split("://")[-1] if "://" not in uri else uri) for f in pool.parquet_files)
        check_reader_view(got[writers]["videos"], got[writers]["segments"])
    one, many = got[1], got[3]
    assert one["segments"].num_rows == 2 + 3 + 4 + 2 + 5 + 1 + 3 + 2  # A rewritten with 2, C's deleted
    assert set(one["videos"].column("status").to_pylist()) == {STATUS_OK, STATUS_FAILED}
    for key in ("segments", "videos", "parquet segments", "parquet videos"):
        assert one[key].equals(many[key]), key
    for writers, t in got.items():
        assert [re.sub(r"-[0-9a-f]{8}\.parquet$", "", f) for f in t["files segments"]] == \
            [f"{RUN}-{i:05d}" for i in range(5)], writers
    assert lance.dataset(fc.table_uri(storage.join(f"{out_base}/out3", "lancedb"), "segments"),
                         storage_options=storage.lancedb_storage_options(out_base)).to_table(
        filter="video_id = 'A'").num_rows == 2


def gate_actor():
    """A Ray actor the write tasks report to and wait on (no sleeps): ``arrive(key)``, ``wait(key)``,
    and how many tasks were inside ``write_chunk`` at once."""
    import asyncio

    import ray

    @ray.remote(num_cpus=0)
    class Gate:
        def __init__(self):
            self.events, self.inside, self.max_inside, self.log = {}, 0, 0, []

        def _event(self, key):
            return self.events.setdefault(key, asyncio.Event())

        async def arrive(self, key):
            self.log.append(key)
            self._event(key).set()

        async def wait(self, key, timeout):
            await asyncio.wait_for(self._event(key).wait(), timeout)

        async def enter(self):
            self.inside += 1
            self.max_inside = max(self.max_inside, self.inside)

        async def leave(self):
            self.inside -= 1

        async def state(self):
            return {"log": list(self.log), "max_inside": self.max_inside, "arrived": [
                k for k, e in self.events.items() if e.is_set()]}

    return Gate.remote()


class Hold:
    """Write hook: the task of segments chunk ``hold`` waits (inside, before writing) until the tasks
    of ``until`` have written their chunks; every task reports entering and leaving."""

    def __init__(self, gate, hold: int, until: tuple[int, ...], fail: Exception | None = None):
        self.gate, self.hold, self.until, self.fail = gate, hold, until, fail

    def __call__(self, name, seq, point):
        import ray

        if point != "parquet":
            ray.get(self.gate.leave.remote())
            ray.get(self.gate.arrive.remote((point, seq) if name == "segments" else (point, name)))
            return
        ray.get(self.gate.enter.remote())  # the held task counts as inside while it waits: a task
        if name == "segments" and seq == self.hold:  # of ``until`` is then inside with it, always
            for other in self.until:
                try:
                    ray.get(self.gate.wait.remote(("done", other), TIMEOUT_S))
                except ray.exceptions.RayError as e:  # not retried as storage trouble: the test fails at once
                    raise AssertionError(f"chunk {other} was never written: {e}") from None
            if self.fail is not None:
                ray.get(self.gate.leave.remote())
                ray.get(self.gate.arrive.remote(("failed", seq)))
                raise self.fail


@pytest.mark.parametrize("max_batch", [1, 4])
def test_commits_keep_the_submission_order_when_a_later_task_ends_first(ray_session, tmp_path, max_batch):
    """Chunk 0's task waits until chunks 1 and 2 are written: they are committed only after 0 (with
    max_batch=4: in the same commit as 0)."""
    import ray

    uri = str(tmp_path / "out")
    make_output(storage.join(uri, "lancedb"))
    gate = gate_actor()
    com = Committer(uri)
    at_first_commit = []
    com.on_commit = lambda w: at_first_commit.append(ray.get(gate.state.remote())) if not com.order else None
    run_pool(uri, WritePoolConfig(writers=3, max_in_flight=5, max_batch=max_batch), hook=Hold(gate, 0, (1, 2)),
             committer=com)
    assert com.order == [("segments", i) for i in range(5)] + [("videos", 0)]
    if max_batch == 1:
        assert com.batches == [1] * 6
    else:  # 0, 1, 2 (maybe 3) at once; never more than 4; the videos chunk alone (another table)
        assert com.batches[0] >= 3 and max(com.batches) <= 4 and com.batches[-1] == 1 and sum(com.batches) == 6
    log = at_first_commit[0]["log"]
    assert log.index(("done", 1)) < log.index(("done", 0)) and log.index(("done", 2)) < log.index(("done", 0))
    v, s = tables(uri)["videos"], tables(uri)["segments"]
    check_reader_view(v, s)
    assert s.num_rows == 22


def test_in_flight_chunks_and_running_tasks_stay_bounded(ray_session, tmp_path):
    """writers=2, max_in_flight=3; chunk 0 is held until chunks 1 and 2 are written, so the queue
    fills up: at every submit at most 3 chunks in flight, never more than 2 tasks inside a write."""
    import ray

    uri = str(tmp_path / "out")
    make_output(storage.join(uri, "lancedb"))
    gate = gate_actor()
    cfg = WritePoolConfig(writers=2, max_in_flight=3)
    pool, com = run_pool(uri, cfg, hook=Hold(gate, 0, (1, 2)))
    assert max(n for n, _ in pool.seen) == 3 == pool.max_seen_in_flight  # the bound was reached, not passed
    assert all(n <= 3 and r <= 2 for n, r in pool.seen)
    assert ray.get(gate.state.remote())["max_inside"] == 2
    assert com.order == [("segments", i) for i in range(5)] + [("videos", 0)]


@pytest.mark.parametrize("writers", [1, 3])
def test_a_failing_task_stops_the_run_and_nothing_after_it_is_committed(ray_session, out_base, writers):
    """Chunk 2's Parquet write keeps failing with a transient S3 error (after chunks 3 and 4 are
    written, with 3 writers): OutputError after the retries; chunks 0 and 1 committed, nothing of
    2, 3, 4 nor the videos rows visible; the written Parquet files of 2-4 are gone."""
    import ray

    uri = f"{out_base}/out"
    make_output(storage.join(uri, "lancedb"))
    so = storage.lancedb_storage_options(uri)
    seg_uri = fc.table_uri(storage.join(uri, "lancedb"), "segments")
    gate = gate_actor()
    fault = ConnectionError("connection reset by peer (S3 PutObject)")
    cfg = WritePoolConfig(writers=writers, max_in_flight=5, attempts=2, max_batch=4)
    com = Committer(uri)
    with pytest.raises(OutputError, match=r"cannot write segments chunk 2 \(.*connection reset.*rerun"):
        run_pool(uri, cfg, hook=Hold(gate, 2, (3, 4) if writers > 1 else (), fail=fault), committer=com)
    assert com.order == [("segments", 0), ("segments", 1)]
    state = ray.get(gate.state.remote())
    assert state["log"].count(("failed", 2)) == 2  # retried once, then given up
    if writers > 1:
        assert ("done", 3) in state["arrived"] and ("done", 4) in state["arrived"]  # written, not committed
    t = tables(uri)
    want = {v for c in SEGMENT_CHUNKS[:2] for v, _ in c} | {"C"}
    assert set(t["segments"].column("video_id").to_pylist()) == want
    assert t["files segments"] and all(re.match(rf"{RUN}-0000[01]-", f) for f in t["files segments"])
    assert t["parquet videos"] is None
    check_reader_view(t["videos"], t["segments"])
    versions = len(lance.dataset(seg_uri, storage_options=so).versions())
    with pytest.raises(OutputError, match="stopped after an error"):  # the pool is stopped: no later commit
        com.pool.submit("segments", segment_chunk(4))
    assert versions == len(lance.dataset(seg_uri, storage_options=so).versions())


def test_a_lost_lease_stops_the_pool_before_the_chunks_in_flight_are_committed(ray_session, tmp_path):
    """max_in_flight=2, chunk 1's task held until the lease is lost: the 3rd submit waits for chunk
    0's commit; the lease check before the 4th submit fails: LeaseError as is, chunks 1 and 2 are
    never committed (though written), their Parquet files are gone."""
    import ray

    uri = str(tmp_path / "out")
    make_output(storage.join(uri, "lancedb"))
    com = Committer(uri)
    checks = []
    gate = gate_actor()

    def check():
        checks.append(1)
        if len(checks) == 4:
            ray.get(gate.arrive.remote(("done", "lease lost")))  # chunk 1 goes on now
            raise LeaseError("lease lost")

    pool = WritePool(uri, run_id=RUN, commit=com, cfg=WritePoolConfig(writers=2, max_in_flight=2), check=check,
                     hook=Hold(gate, 1, ("lease lost",)), executor=RayTasks(), per_video=per_video_columns)
    with pytest.raises(LeaseError, match="lease lost"):
        for i in range(4):
            pool.submit("segments", segment_chunk(i))
    assert com.order == [("segments", 0)]
    assert pool.in_flight == 0
    assert ("done", 1) in ray.get(gate.state.remote())["arrived"]  # written, then dropped
    with pytest.raises(OutputError, match="stopped after an error: LeaseError"):
        pool.drain()  # never reads as "everything committed"
    t = tables(uri)
    assert t["files segments"] == [f"{RUN}-00000-{pool.token}.parquet"]
    assert set(t["segments"].column("video_id").to_pylist()) == {"A", "N0", "C"}


def test_settings_are_checked_up_front():
    with pytest.raises(ValueError, match="needs an executor"):
        WritePool("/nowhere", run_id=RUN, commit=print, cfg=WritePoolConfig(writers=2))
    with pytest.raises(ValueError, match="max_in_flight must be 0"):
        WritePoolConfig(writers=4, max_in_flight=2)
    with pytest.raises(ValueError, match="writers must be an integer"):
        WritePoolConfig(writers=0)
    assert (WritePoolConfig().in_flight_limit, WritePoolConfig(writers=3, max_batch=1).batch_limit) == (2, 1)
