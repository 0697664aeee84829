"""A run's ledger (its JSONL files, their counts, the summary's numbers) and the one context
manager that puts set-aside work back (`checkpoint.replacing`), on tiny hand-made states."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from curlora_bench.core.layout import (
    GENERATIONS,
    PREDICTIONS,
    PREVIOUS,
    RECORDS,
    SUMMARY,
    TRAIN_LOG,
)
from curlora_bench.run.events import RunEvents
from curlora_bench.run.ledger import Ledger, further_perplexities, last_row, metrics
from curlora_bench.store import checkpoint
from curlora_bench.store.folders import cut_back, records_lines
from curlora_bench.store.schema import (
    Generation,
    PerplexitySummary,
    Prediction,
    Record,
    RunProgress,
    StageStats,
    TrainLogEntry,
)


class Seen(RunEvents):
    def __init__(self) -> None:
        self.records, self.logged_lines = [], []

    def record(self, record: Record) -> None:
        self.records.append(record)

    def logged(self, entry: TrainLogEntry) -> None:
        self.logged_lines.append(entry)


def entry(step: int) -> TrainLogEntry:
    return TrainLogEntry(1, "a", step, step, 0.5, 1e-3, 1.0, 8 * step, 64 * step, 100.0, 0.1 * step)


def stats(stage: int) -> StageStats:
    return StageStats(stage, "t", 1.0, 1.0, 3, 24, 100, 0.5, 0.6)


def test_every_line_is_counted_and_records_and_log_lines_reach_the_sink(tmp_path):
    progress, seen = RunProgress.empty(2), Seen()
    ledger = Ledger(tmp_path, progress, seen, generations=True)
    ledger.record(Record(0, None, "corpus", "perplexity", 30.0, 100))
    ledger.record(Record(1, "a", "a", "accuracy", 0.75, 4))
    ledger.log(entry(1))
    ledger.predicted(Prediction(1, "a", "a", "accuracy", [1, 0, 1, 1]))
    ledger.generated(Generation(1, "a", "a", ["x"]))
    ledger.sync()
    ledger.close()
    assert (progress.records, progress.train_log, progress.predictions, progress.generations) == (2, 1, 1, 1)
    assert [len(records_lines(tmp_path / n)) for n in (RECORDS, TRAIN_LOG, PREDICTIONS, GENERATIONS)] == [2, 1, 1, 1]
    assert [r.value for r in seen.records] == [30.0, 0.75] and seen.logged_lines == [entry(1)]


def test_a_run_without_prompted_tasks_has_no_generations_file(tmp_path):
    Ledger(tmp_path, RunProgress.empty(1), RunEvents(), generations=False).close()
    assert not (tmp_path / GENERATIONS).exists() and (tmp_path / RECORDS).exists()


def test_cut_back_keeps_the_lines_a_checkpoint_counted(tmp_path):
    progress = RunProgress.empty(1)
    ledger = Ledger(tmp_path, progress, RunEvents(), generations=False)
    ledger.record(Record(1, "a", "a", "accuracy", 0.5, 4))
    ledger.log(entry(1))
    counted = RunProgress.empty(1)
    counted.records, counted.train_log = progress.records, progress.train_log
    ledger.record(Record(2, "b", "a", "accuracy", 0.6, 4))  # the stage in flight when the run died
    ledger.log(entry(2))
    ledger.close()
    cut_back(tmp_path, counted)
    assert len(records_lines(tmp_path / RECORDS)) == 1 and len(records_lines(tmp_path / TRAIN_LOG)) == 1
    counted.records = 5
    with pytest.raises(Exception, match="the checkpoint counts 5"):
        cut_back(tmp_path, counted)


def test_last_row_and_metrics_of_a_sequence_and_of_joint():
    progress = RunProgress.empty(2)
    assert last_row(progress) is None
    progress.matrix = [[0.8, None], [0.6, 0.9]]
    progress.stages = [stats(1), stats(2)]
    assert last_row(progress) == 1
    seq = SimpleNamespace(progress=progress, regime=SimpleNamespace(sequence=True))
    m = metrics(seq, 20.0, 22.0)
    assert m["average_accuracy"] == pytest.approx(0.75) and m["forgetting"] == pytest.approx(0.2)
    joint_progress = RunProgress.empty(2)
    joint = SimpleNamespace(progress=joint_progress, regime=SimpleNamespace(sequence=False))
    assert metrics(joint, 20.0, None) == {}
    joint_progress.matrix = [[None, None], [0.7, 0.5]]
    joint_progress.stages = [stats(2)]  # joint's one stage fills the last row
    m = metrics(joint, 20.0, 22.0)
    assert m["average_accuracy"] == pytest.approx(0.6) and m["forgetting"] is None
    assert m["perplexity_drift"] == pytest.approx(1.1)  # final / initial


def test_further_perplexities_read_the_last_finished_row():
    progress = RunProgress.empty(2)
    progress.extra_ppl = {"wiki": [31.0, 33.0]}
    progress.stages = [stats(1)]
    corpus = lambda name: SimpleNamespace(name=name)  # noqa: E731
    base = lambda value: SimpleNamespace(perplexity=value, protocol=None)  # noqa: E731
    state = SimpleNamespace(progress=progress, prepared=SimpleNamespace(corpora=[corpus("main"), corpus("wiki")]),
                            inputs=SimpleNamespace(base_ppls=[base(20.0), base(30.0)]), tasks=[1, 2])
    assert further_perplexities(state) == {"wiki": PerplexitySummary(30.0, [31.0, 33.0], 31.0, None)}
    state.prepared.corpora = state.prepared.corpora[:1]
    assert further_perplexities(state) is None


def work(run, text: str) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / SUMMARY).write_text(text)


def test_replacing_puts_the_work_back_when_the_block_fails_before_a_stage(tmp_path):
    run, said = tmp_path / "run", []
    work(run, "old")
    with pytest.raises(RuntimeError), checkpoint.replacing(run, fresh=True,
                                                           on_restore=lambda r, earlier: said.append(earlier)):
        assert (run / PREVIOUS).is_dir() and not (run / SUMMARY).exists()
        (run / SUMMARY).write_text("new, unfinished")
        raise RuntimeError("stopped")
    assert (run / SUMMARY).read_text() == "old" and not (run / PREVIOUS).exists() and said == [False]


def test_replacing_keeps_the_new_work_once_it_has_a_stage(tmp_path):
    run, said = tmp_path / "run", []
    work(run, "old")
    with checkpoint.replacing(run, fresh=True, on_restore=lambda r, earlier: said.append(earlier)) as replacement:
        (run / "checkpoints" / "stage-1").mkdir(parents=True)
        (run / "checkpoints" / "stage-1" / "state.json").write_text("{}")
        checkpoint.drop_previous(run)  # what a stage's checkpoint does
        (run / SUMMARY).write_text("new")
        assert not replacement.settle()
    assert (run / SUMMARY).read_text() == "new" and said == []


def test_replacing_first_settles_what_an_earlier_attempt_left(tmp_path):
    run, said = tmp_path / "run", []
    work(run, "old")
    checkpoint.set_aside(run)  # an attempt killed before its first stage
    (run / SUMMARY).write_text("killed attempt")
    with checkpoint.replacing(run, on_restore=lambda r, earlier: said.append((r, earlier))):
        assert (run / SUMMARY).read_text() == "old"
    assert said == [(run, True)]


def test_settle_inside_the_block_restores_once(tmp_path):
    run, said = tmp_path / "run", []
    work(run, "old")
    with checkpoint.replacing(run, on_restore=lambda r, earlier: said.append(earlier)) as replacement:
        replacement.start_over(run)
        assert replacement.settle() and not replacement.settle()
    assert (run / SUMMARY).read_text() == "old" and said == [False]


def test_a_finished_stage_reads_on_the_console_and_the_board_from_its_numbers():
    import io

    from rich.console import Console

    from curlora_bench.experiment.events import ConsoleEvents, stage_text
    from curlora_bench.run.events import StageNumbers

    out = io.StringIO()
    numbers = StageNumbers(2, 3, "polarity", [("pairs", 0.5), ("polarity", 0.875)], 31.25, 1.5e-3, 2.04)
    console = ConsoleEvents(Console(file=out, width=200))
    console.stage_finished("lora-r2 seed 0", 2, numbers)
    console.stage_finished("lora-r2 seed 0", 3)  # stopped: a message says why
    assert out.getvalue() == ("  lora-r2 seed 0 stage 2/3 polarity: pairs 0.500, polarity 0.875, ppl 31.250, "
                              "drift 1.50e-03 (2.0s train)\n")
    no_ppl = StageNumbers(1, 1, "a", [("a", 1.0)], None, 0.0, 0.04)
    assert stage_text(no_ppl) == "a 1.000, drift 0.00e+00 (0.0s train)"


def test_the_ray_board_shows_a_finished_stage_from_its_numbers():
    from curlora_bench.experiment.events import stage_text
    from curlora_bench.experiment.executors import BoardEvents
    from curlora_bench.run.events import StageNumbers

    updates = []
    board = SimpleNamespace(update=SimpleNamespace(remote=lambda key, **fields: updates.append((key, fields))))
    sink = BoardEvents(board, "0")
    numbers = StageNumbers(1, 2, "pairs", [("pairs", 0.5)], None, 1e-3, 1.0)
    sink.message("  lora-r2 seed 0: resuming after stage 1/2")  # messages are the console's alone
    sink.stage_finished("lora-r2 seed 0", 1, numbers)
    sink.stage_finished("lora-r2 seed 0", 2)
    assert updates == [("0", {"done_stages": 1, "last": stage_text(numbers)}), ("0", {"done_stages": 2})]
