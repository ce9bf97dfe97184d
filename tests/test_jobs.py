"""ragkit.jobs.thread.Job: background work whose progress and outcome a page can poll."""
import threading
import time

import pytest

from ragkit.errors import GenerationError
from ragkit.jobs.thread import Job


def test_the_work_runs_in_the_background_and_reports_progress():
    gate, reported = threading.Event(), threading.Event()

    def work(progress):
        progress(0, 3)
        progress(1, 3)
        reported.set()
        gate.wait(10)
        progress(3, 3)
        return "three images"

    job = Job.start(work)
    assert reported.wait(10)
    assert not job.done and job.progress == (1, 3)  # start() returned while the work waits
    with pytest.raises(RuntimeError, match="still running"):
        job.outcome()
    assert job.wait(0.05) is False
    gate.set()
    assert job.wait(10)
    assert job.done and job.progress == (3, 3) and job.outcome() == "three images"


def test_a_failure_is_kept_and_raised_to_whoever_collects_it():
    def work(progress):
        raise GenerationError("The model refused the brief (PROHIBITED_CONTENT).")

    job = Job.start(work)
    assert job.wait(10)
    with pytest.raises(GenerationError, match="PROHIBITED_CONTENT"):
        job.outcome()
    with pytest.raises(GenerationError):  # collecting twice gives the same answer
        job.outcome()


def test_elapsed_stops_when_the_job_ends():
    job = Job.start(lambda progress: time.sleep(0.2))
    assert job.wait(10)
    first = job.elapsed
    time.sleep(0.1)
    assert 0.2 <= first == job.elapsed < 5
