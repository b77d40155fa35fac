"""The studio's job queue: order, progress, cancellation, errors (no gradio needed)."""

from __future__ import annotations

import threading

import pytest

from sds_audio.errors import SDSAudioError
from sds_audio.ui.queue import CANCELLED, DONE, FAILED, QUEUED, RUNNING, JobCancelled, JobQueue

WAIT_S = 10.0


@pytest.fixture
def job_queue():
    q = JobQueue(max_pending=3)
    yield q
    q.close()


def _blocker(gate: threading.Event, started: threading.Event | None = None):
    def work(job):
        if started is not None:
            started.set()
        assert gate.wait(WAIT_S)
        return "unblocked"
    return work


def test_jobs_run_one_at_a_time_in_submission_order(job_queue):
    order, running, overlap = [], [], []

    def work(name):
        def run(job):
            running.append(name)
            overlap.append(len(running))
            order.append(name)
            running.remove(name)
            return name * 2
        return run

    gate, started = threading.Event(), threading.Event()
    first = job_queue.submit("block", _blocker(gate, started))
    assert started.wait(WAIT_S)
    jobs = [job_queue.submit("w", work(n)) for n in "abc"]
    assert [j.id for j in jobs] == [first.id + 1, first.id + 2, first.id + 3]
    assert [job_queue.position(j) for j in jobs] == [1, 2, 3]      # the running job counts as ahead
    assert jobs[0].status == QUEUED and first.status == RUNNING
    gate.set()
    assert all(j.wait(WAIT_S) for j in jobs)
    assert order == ["a", "b", "c"] and overlap == [1, 1, 1]
    assert [j.result for j in jobs] == ["aa", "bb", "cc"] and all(j.status == DONE for j in jobs)
    assert first.result == "unblocked" and job_queue.position(jobs[0]) == 0


def test_cancelling_a_queued_job_means_it_never_runs(job_queue):
    gate, ran = threading.Event(), []
    job_queue.submit("block", _blocker(gate))
    waiting = job_queue.submit("w", lambda job: ran.append(job.id))
    assert job_queue.cancel(waiting.id) is True
    gate.set()
    assert waiting.wait(WAIT_S)
    assert waiting.status == CANCELLED and ran == []
    assert job_queue.cancel(waiting.id) is False                # finished: nothing to cancel
    assert job_queue.cancel(12345) is False and job_queue.cancel(None) is False


def test_a_running_job_stops_at_its_next_step_and_reports_progress(job_queue):
    at_step, go_on = threading.Event(), threading.Event()
    steps_done = []

    def work(job):
        for step in range(1, 1000):
            job.report(step=step, steps=999)
            steps_done.append(step)
            if step == 3:
                at_step.set()
                assert go_on.wait(WAIT_S)
            job.check_cancelled()
        return "finished"

    job = job_queue.submit("loop", work)
    assert at_step.wait(WAIT_S)
    status, progress = job.snapshot()
    assert status == RUNNING and progress == {"step": 3, "steps": 999}
    job.cancel()
    go_on.set()
    assert job.wait(WAIT_S)
    assert job.status == CANCELLED and job.result is None
    assert steps_done == [1, 2, 3]                                # stopped at the step boundary after 3
    assert issubclass(JobCancelled, KeyboardInterrupt) and JobCancelled.at_step_boundary


def test_errors_fail_the_job_and_keep_the_worker_alive(job_queue, capsys):
    def user_error(job):
        raise SDSAudioError("the prompt is empty; describe the sound")

    def bug(job):
        raise ZeroDivisionError("division by zero")

    bad_input, crash = job_queue.submit("a", user_error), job_queue.submit("b", bug)
    after = job_queue.submit("c", lambda job: 41 + 1)
    assert after.wait(WAIT_S)
    assert bad_input.status == FAILED and bad_input.error == "the prompt is empty; describe the sound"
    assert crash.status == FAILED and crash.error == "ZeroDivisionError: division by zero"
    assert "Traceback" in capsys.readouterr().err                 # a bug keeps its traceback in the log
    assert after.status == DONE and after.result == 42


def test_a_full_queue_refuses_new_jobs_with_a_message(job_queue):
    gate, started = threading.Event(), threading.Event()
    job_queue.submit("block", _blocker(gate, started))
    assert started.wait(WAIT_S)                                    # running: no longer waiting
    waiting = [job_queue.submit("w", lambda job: None) for _ in range(3)]
    with pytest.raises(SDSAudioError, match="3 jobs are already waiting"):
        job_queue.submit("w", lambda job: None)
    gate.set()
    assert all(j.wait(WAIT_S) for j in waiting)
    assert job_queue.submit("w", lambda job: 7).wait(WAIT_S)


def test_old_finished_jobs_are_forgotten():
    q = JobQueue(keep_finished=2)
    try:
        jobs = []
        for i in range(5):
            jobs.append(q.submit("w", lambda job, i=i: i))
            assert jobs[-1].wait(WAIT_S)
        assert [q.get(j.id) is not None for j in jobs] == [False, False, True, True, True]
        assert q.jobs() == jobs[2:]
    finally:
        q.close()
