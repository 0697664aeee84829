"""Faults: signals, a second run on the folder, full disks and wrong-kind targets, damaged files."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import (
    ROOT,
    one_line,
    records,
    run_in,
    signal_at_step,
    snapshot,
    tiny_config,
    two_runs,
)


def two_stage(toy_data: Path) -> dict:
    return tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}])


@pytest.fixture(scope="module")
def reference(tmp_path_factory, toy_data):
    """One uninterrupted two-stage LoRA run (with perplexity)."""
    d = tmp_path_factory.mktemp("ref")
    return d / "exp.yaml", run_in(d, two_stage(toy_data))


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_stage_drops_it_exits_128_plus_and_rerun_resumes(reference, tmp_path, cli, monkeypatch, sig, code):
    cfg_path, ref = reference
    out = tmp_path / "o"
    # 48 examples / batch 16 = 3 steps per stage: step 5 is in the middle of stage 2 (the exit code of
    # a real process: tests/test_signals.py)
    signal_at_step(monkeypatch, 5, sig)
    rc, _, stderr = cli("run", cfg_path, "--output", out)
    assert rc == code, stderr
    err = stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"interrupted ({sig.name})") and "Traceback" not in stderr
    run = out / "lora-r2" / "seed-0"
    assert (run / "checkpoints" / "stage-1" / "state.json").is_file()
    assert not (run / "checkpoints" / "stage-2").exists() and not (run / "summary.json").exists()
    assert not (out / ".lock").exists()
    rc, stdout, stderr = cli("run", cfg_path, "--output", out)
    assert rc == 0, stderr
    assert "resuming after stage 1/2" in stdout
    assert records(run) == records(ref / "lora-r2" / "seed-0")


def test_a_second_run_on_the_same_folder_is_refused(reference, tmp_path, cli):
    from curlora_bench.store.folders import FolderLock

    cfg_path, ref = reference
    out = tmp_path / "o"
    shutil.copytree(ref, out)  # finished: once the lock is free, the run finds it complete
    with FolderLock(out):
        before = snapshot(out)
        code, _, err = cli("run", cfg_path, "--output", out)
        assert code == 2 and f"pid {os.getpid()}" in err and "in use by another run" in err, err
        assert len(err.strip().splitlines()) == 1
        assert snapshot(out) == before
    assert not (out / ".lock").exists()
    code, stdout, _ = cli("run", cfg_path, "--output", out)
    assert code == 0 and "already complete" in stdout  # released: the next one runs


def test_the_lock_of_a_dead_process_does_not_block(reference, tmp_path, cli):
    cfg_path, ref = reference
    out = tmp_path / "o"
    shutil.copytree(ref, out)
    code = ("import sys, os; from pathlib import Path; from curlora_bench.store.folders import FolderLock; "
            "FolderLock(Path(sys.argv[1])).__enter__(); os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(out)], env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert (out / ".lock").exists()  # left behind, but no process holds it
    code, stdout, _ = cli("run", cfg_path, "--output", out)
    assert code == 0 and "already complete" in stdout


def test_disk_full_at_a_checkpoint_keeps_the_previous_one(reference, tmp_path, cli, monkeypatch):
    from curlora_bench.store import checkpoint

    cfg_path, ref = reference
    out = tmp_path / "o"
    real, calls = checkpoint.save_file, []

    def full_at_stage_2(tensors, path, *a, **k):
        calls.append(path)
        if "stage-2" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(checkpoint, "save_file", full_at_stage_2)
    code, _, err = cli("run", cfg_path, "--output", out)
    assert code == 2 and "cannot write the checkpoint (No space left on device)" in err
    assert "earlier checkpoints are intact" in err and len(err.strip().splitlines()) == 1
    run = out / "lora-r2" / "seed-0"
    assert checkpoint.stages(run) == [1] and not list(run.glob("checkpoints/.*"))
    monkeypatch.setattr(checkpoint, "save_file", real)
    code, stdout, err = cli("run", cfg_path, "--output", out)
    assert code == 0 and "resuming after stage 1/2" in stdout, err
    assert records(run) == records(ref / "lora-r2" / "seed-0")


def test_disk_full_writing_a_summary_keeps_the_old_file(tmp_path, monkeypatch):
    from curlora_bench.core.errors import BenchError
    from curlora_bench.store import folders as store

    target = tmp_path / "summary.json"
    target.write_text("old")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", full)
    with pytest.raises(BenchError, match="No space left on device.*earlier contents are unchanged"):
        store.write_atomic(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_atomic_writes_get_an_ordinary_files_mode(tmp_path):
    """A new file gets 0666 less the umask (not mkstemp's 0600), a replaced one keeps its mode
    (results shared on a machine stay readable), and the process umask is never changed, even
    for a moment (another thread may be creating files)."""
    import os

    from curlora_bench.store import folders as store

    old = os.umask(0o022)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(store.os, "umask", lambda *a: pytest.fail("write_atomic changed the umask"))
            store.write_atomic(tmp_path / "new.json", "{}")
        kept = tmp_path / "kept.json"
        kept.write_text("")
        kept.chmod(0o640)
        store.write_atomic(kept, "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o644
    assert kept.stat().st_mode & 0o777 == 0o640


@pytest.fixture
def copy_of(reference, tmp_path):
    _, ref = reference
    out = tmp_path / "out"
    shutil.copytree(ref, out)
    return out


def _damage(out: Path, case: str) -> Path:
    run = out / "lora-r2" / "seed-0"
    recs, summary, state = run / "records.jsonl", run / "summary.json", run / "checkpoints" / "stage-2" / "state.json"
    if case == "records: truncated last line":
        recs.write_bytes(recs.read_bytes()[:-20])
        return recs
    if case == "records: a line missing":
        recs.write_text("".join(recs.read_text().splitlines(keepends=True)[:-1]))
        return recs
    if case == "records: not UTF-8":
        recs.write_bytes(recs.read_bytes() + b"\xff\xfe\n")
        return recs
    if case == "summary: not JSON":
        summary.write_text("{ half")
        return summary
    if case == "summary: not UTF-8":
        summary.write_bytes(b"\xff\xfe")
        return summary
    if case == "summary: a list":
        summary.write_text("[1, 2]")
        return summary
    if case == "state: not JSON":
        summary.unlink()
        state.write_text("{")
        return state
    if case == "config.yaml: not UTF-8":
        (out / "config.yaml").write_bytes(b"name: \xff\n")
        return out / "config.yaml"
    if case == "config.yaml: a list":
        (out / "config.yaml").write_text("- 1\n")
        return out / "config.yaml"
    raise AssertionError(case)


DAMAGE = ["records: truncated last line", "records: a line missing", "records: not UTF-8", "summary: not JSON",
          "summary: not UTF-8", "summary: a list", "state: not JSON", "config.yaml: not UTF-8",
          "config.yaml: a list"]


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_results_file_is_one_line_naming_it(copy_of, reference, cli, case):
    cfg_path, _ = reference
    damaged = _damage(copy_of, case)
    before = snapshot(copy_of)
    code, out, err = cli("run", cfg_path, "--output", copy_of)
    assert code == 2, out + err
    assert str(damaged) in err and "--fresh" in err or "--force" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err
    assert snapshot(copy_of) == before


def test_fresh_gets_past_a_damaged_run(copy_of, reference, cli):
    cfg_path, ref = reference
    _damage(copy_of, "records: truncated last line")
    code, _, err = cli("run", cfg_path, "--output", copy_of, "--fresh")
    assert code == 0, err
    assert records(copy_of / "lora-r2" / "seed-0") == records(ref / "lora-r2" / "seed-0")


def test_resume_refuses_a_damaged_record_the_checkpoint_vouches_for(copy_of, reference, cli):
    cfg_path, _ = reference
    run = copy_of / "lora-r2" / "seed-0"
    shutil.rmtree(run / "checkpoints" / "stage-2")
    (run / "summary.json").unlink()
    lines = (run / "records.jsonl").read_text().splitlines(keepends=True)
    lines[1] = lines[1][:10] + "\n"
    (run / "records.jsonl").write_text("".join(lines))
    code, _, err = cli("run", cfg_path, "--output", copy_of)
    assert code == 2 and "records.jsonl: line 2 is damaged" in err and "--fresh" in err, err


@pytest.mark.parametrize("what", ["adapter: a tensor missing", "heads: a head missing", "adapter: not safetensors"])
def test_damaged_checkpoint_is_refused_on_resume(copy_of, reference, cli, what):
    from safetensors.torch import load_file, save_file

    cfg_path, _ = reference
    run = copy_of / "lora-r2" / "seed-0"
    shutil.rmtree(run / "checkpoints" / "stage-2")
    (run / "summary.json").unlink()
    stage = run / "checkpoints" / "stage-1"
    if what == "adapter: not safetensors":
        (stage / "adapter.safetensors").write_bytes(b"\x00" * 7)
    else:
        name = "adapter" if what.startswith("adapter") else "heads"
        tensors = load_file(stage / f"{name}.safetensors")
        del tensors[sorted(tensors)[0]]
        save_file(tensors, stage / f"{name}.safetensors")
    code, _, err = cli("run", cfg_path, "--output", copy_of)
    assert code == 2 and str(stage) in err and "--fresh" in err, err
    assert len(err.strip().splitlines()) == 1


def test_an_export_missing_a_tensor_is_refused(reference, tmp_path, cli):
    from safetensors.torch import load_file, save_file

    import curlora_bench
    from curlora_bench.core.errors import BenchError
    from curlora_bench.sources.models import load_model

    _, ref = reference
    assert cli("export", ref, tmp_path / "ex")[0] == 0
    tensors = load_file(tmp_path / "ex" / "adapter.safetensors")
    del tensors[next(k for k in sorted(tensors) if "lora_B" in k)]
    save_file(tensors, tmp_path / "ex" / "adapter.safetensors")
    with pytest.raises(BenchError, match="tensors are missing"):
        curlora_bench.load_adapter(load_model("tiny-gpt2").model, tmp_path / "ex")
    (tmp_path / "ex" / "heads.safetensors").write_bytes(b"junk")
    with pytest.raises(BenchError, match="unreadable|missing"):
        curlora_bench.load_adapter(load_model("tiny-gpt2").model, tmp_path / "ex")


def test_wrong_kind_and_unwritable_targets_are_one_line(reference, tmp_path, cli, monkeypatch):
    _, ref = reference
    a_file = tmp_path / "a-file"
    a_file.write_text("keep")
    a_folder = tmp_path / "a-folder"
    a_folder.mkdir()
    cases = [
        (("report", ref, "--out", a_folder), str(a_folder)),
        (("report", ref, "--plots", a_file), str(a_file)),
        (("export", ref, a_file), str(a_file)),
        (("report", ref, "--out", a_file / "x.md"), str(a_file)),
    ]
    for argv, named in cases:
        code, out, err = cli(*argv)
        assert code == 2, (argv, out, err)
        assert named in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
    assert a_file.read_text() == "keep" and list(a_folder.iterdir()) == []
    # a full disk under report --out: one line, the earlier file unchanged
    from curlora_bench.store import folders as store

    target = tmp_path / "r.md"
    target.write_text("earlier")
    monkeypatch.setattr(store.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    code, _, err = cli("report", ref, "--out", target)
    assert code == 2 and "No space left" in err and len(err.strip().splitlines()) == 1
    assert target.read_text() == "earlier"


def test_assets_verify_fails_on_missing(tmp_path, cli):
    code, out, err = cli("assets", "verify", "--cache-dir", tmp_path / "empty-cache")
    assert code != 0, out + err


@pytest.mark.parametrize(("args", "message"), [
    (("--device", "gpu"), "device: 'gpu' is not auto, cpu, cuda, cuda:N or mps"),
    (("--device", "cuda:99"), "device: 'cuda:99' requested but"),
    (("--seq-len", "5000"), "--seq-len: 5000 is longer than the 1024 positions of model tiny-gpt2"),
    (("--rank", "500"), "--rank: 500 exceeds the 32x96 weight"),
    (("--json", "."), "--json .: is a folder"),
])
def test_bench_arguments_are_one_line(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("bench", "--model", "tiny-gpt2", "--steps", "1", "--warmup", "0", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, out + err
    assert list(tmp_path.iterdir()) == []


def test_a_lock_that_cannot_be_written_is_one_line_and_left_nowhere(toy_data, write_config, tmp_path, cli, monkeypatch):
    from curlora_bench.store import folders

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folders.os, "write", full)
    code, _, err = cli("run", write_config(two_runs(toy_data)), "-o", tmp_path / "o")
    assert code == 2
    assert one_line(err) == f"error: {tmp_path / 'o' / '.lock'}: cannot write the lock file (No space left on device)"
    assert not (tmp_path / "o" / ".lock").exists()


def test_a_writer_that_cannot_flush_at_close_keeps_the_error_that_names_the_file(tmp_path):
    from curlora_bench.store.folders import RecordWriter

    writer = RecordWriter(tmp_path / "records.jsonl")
    writer._f.close()

    class Full:
        def write(self, text):
            return len(text)

        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

        def fileno(self):
            return 0

        close = flush

    writer._f = Full()
    from curlora_bench.core.errors import BenchError
    from curlora_bench.store.schema import Record

    with pytest.raises(BenchError, match="records.jsonl: cannot append a line"):
        writer.write(Record(0, None, "c", "perplexity", 1.0, 1))
    writer.close()  # what it could not flush was reported by the write, not a second error
