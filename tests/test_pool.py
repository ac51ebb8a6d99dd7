"""lstm_exp.sweeps.pool: a job per forked process; a process that dies costs its job alone."""

import os
import signal

from lstm_exp.sweeps.pool import Pool, cause


def returns(value):
    return lambda: value


def dies_by(sig):
    return lambda: os.kill(os.getpid(), sig)


def test_every_job_runs_and_a_dead_one_is_reported_with_its_cause():
    jobs = [returns(1.5), dies_by(signal.SIGKILL), returns(None), lambda: os._exit(3), returns({"loss": 0.25})]
    seen = []
    ended = Pool(2).run(jobs, seen.append)
    assert [e.index for e in ended] == [0, 1, 2, 3, 4] and sorted(e.index for e in seen) == [0, 1, 2, 3, 4]
    assert [(e.returned, e.value) for e in ended] == [
        (True, 1.5),
        (False, None),
        (True, None),
        (False, None),
        (True, {"loss": 0.25}),
    ]
    assert ended[1].exitcode == -signal.SIGKILL and ended[3].exitcode == 3
    assert cause(ended[1].exitcode).startswith("the job's process was killed by SIGKILL (kill -9")
    assert cause(3) == "the job's process exited with status 3 before the job returned"


def test_a_result_larger_than_a_pipe_holds_comes_back_whole():
    big = {"jobs": [{"status": "x" * 1000, "k": k} for k in range(1000)]}  # about 1 MB; a pipe holds 64 KB
    ended = Pool(2, timeout=60).run([returns(big), returns(big)], lambda e: None)  # a deadlock: killed at 60 s
    assert [(e.returned, e.value == big) for e in ended] == [(True, True), (True, True)]


def test_a_job_that_raises_fails_alone():
    def raises():
        raise RuntimeError("boom")

    ended = Pool(1).run([raises, returns(2)], lambda e: None)
    assert [(e.returned, e.exitcode != 0) for e in ended] == [(False, True), (True, False)]


def test_a_stopped_pool_starts_nothing():
    pool = Pool(2)
    pool.stopped_by = signal.SIGINT
    assert pool.run([returns(1), returns(2)], lambda e: None) == []


def test_the_jobs_run_in_their_own_process_groups():
    (ended,) = Pool(1).run([lambda: os.getpgid(0) == os.getpid() != os.getpgid(os.getppid())], lambda e: None)
    assert ended.value is True


def test_a_jobs_first_step_is_timed_from_its_fork_or_its_program_start():
    import subprocess
    import sys
    import time

    from lstm_exp.common.ownership import process_age

    time.sleep(0.5)
    (ended,) = Pool(1).run([process_age], lambda e: None)
    assert ended.value < 0.4  # the job's own process, not the launcher's
    probe = (
        f"sleep 1 && exec {sys.executable} -c 'from lstm_exp.common.ownership import process_age; print(process_age())'"
    )
    assert float(subprocess.run(["bash", "-c", probe], capture_output=True, text=True).stdout) < 0.9


def test_work_alongside_the_jobs_runs_once_in_this_process_while_they_run(tmp_path):
    import time

    marker = tmp_path / "alongside"

    def job():  # returns whether the work alongside was done while it ran
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return marker.exists()

    calls = []

    def alongside():
        calls.append(os.getpid())
        marker.touch()

    ended = Pool(2).run([job, job, job], lambda e: None, alongside=alongside)
    assert calls == [os.getpid()]  # once, in this process
    assert [e.value for e in ended] == [True, True, True]  # the first two were running: it did not wait for them


def test_work_alongside_that_fails_is_a_warning_and_every_job_still_ends(capsys):
    def fails():
        raise ImportError("no scipy here")

    ended = Pool(2).run([returns(1), returns(2), returns(3)], lambda e: None, alongside=fails)
    assert [e.value for e in ended] == [1, 2, 3]
    assert "warning: the work alongside the jobs failed: ImportError: no scipy here" in capsys.readouterr().err
