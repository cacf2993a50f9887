"""Progress lines: silent for quick work, a line at a time in logs."""

from sft_tf.log import Progress


def test_quick_work_prints_nothing(capsys):
    with Progress("Checking", 1000) as progress:
        for done in range(0, 1001, 100):
            progress.update(done)
    assert capsys.readouterr().out == ""


def test_slow_work_prints_lines_and_a_final_one(capsys):
    with Progress("Checking folder:/x", 2000, delay=0, every=0) as progress:
        progress.update(500)
        progress.update(1500)
    lines = capsys.readouterr().out.splitlines()  # captured output is not a terminal
    assert lines[0].startswith("Checking folder:/x: 500/2,000 images (25%), ")
    assert lines[1].startswith("Checking folder:/x: 1,500/2,000 images (75%)")
    assert lines[-1].startswith("Checking folder:/x: 2,000/2,000 images (100%)")


def test_lines_in_logs_are_spaced_out(capsys):
    with Progress("Features", 10, "batches", delay=0, every=3600) as progress:
        for done in range(1, 11):
            progress.update(done)
    assert len(capsys.readouterr().out.splitlines()) == 2  # the first, then the final one


def test_a_log_that_reached_the_end_does_not_repeat_it(capsys):
    with Progress("Phase 2 cache", 90, delay=0, every=0) as progress:
        progress.update(90)
    assert capsys.readouterr().out.count("90/90 images (100%)") == 1


def test_progress_can_go_to_stderr_where_stdout_holds_results(capsys):
    import sys

    with Progress("Predicting", 40, "files", delay=0, every=0, stream=sys.stderr) as progress:
        progress.update(32)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[0].startswith("Predicting: 32/40 files (80%)")
