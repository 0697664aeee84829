"""A damaged asset cache is found, not trusted: truncated or altered cached files built again, a
local model folder with cut weights one line, a probe file cut short rebuilt; two processes
preparing one probe build it once; asset progress on stdout, errors alone on stderr."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import (
    ROOT,
)

# ---- a damaged asset cache is found, not trusted ----------------------------------------------------

@pytest.fixture
def fake_model_asset(monkeypatch, tmp_path):
    """An asset whose build writes a small safetensors file (no package to fetch)."""
    import torch
    from safetensors.torch import save_file

    from curlora_bench.sources import assets

    builds = []

    def build(files, out):
        builds.append(out)
        save_file({"w": torch.arange(4096, dtype=torch.float32)}, str(out / "model.safetensors"))
        (out / "config.json").write_text("{}")

    monkeypatch.setitem(assets.ASSETS._loaded(), "fake-model",
                        assets.Asset("fake-model", "model", [], build, "a test model", "none", 0))
    return tmp_path / "cache", builds


def _cut(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "built-before-manifests"])
def test_a_truncated_cached_model_file_is_found_and_built_again(fake_model_asset, manifest, cli):
    from curlora_bench.sources import assets

    cache, builds = fake_model_asset
    folder = assets.ensure("fake-model", str(cache))
    size = (folder / "model.safetensors").stat().st_size
    assert (folder / assets.MANIFEST).is_file() and dict(assets.verify(str(cache)))["fake-model"] == "ok"
    if not manifest:
        (folder / assets.MANIFEST).unlink()
    _cut(folder / "model.safetensors")
    status = dict(assets.verify(str(cache)))["fake-model"]
    assert status.startswith("damaged: model.safetensors is ") and "assets fetch fake-model" in status, status
    code, out, _ = cli("assets", "verify", "--cache-dir", cache)
    assert code == 1 and "fake-model damaged: model.safetensors" in " ".join(out.split()), out
    code, out, err = cli("assets", "fetch", "fake-model", "--cache-dir", cache)  # found and built again
    assert code == 0 and "asset fake-model: damaged in the cache (model.safetensors is " in " ".join(out.split())
    assert len(builds) == 2 and (folder / "model.safetensors").stat().st_size == size
    assert dict(assets.verify(str(cache)))["fake-model"] == "ok"


def test_a_cached_file_of_the_right_size_but_other_bytes_fails_verify(fake_model_asset):
    from curlora_bench.sources import assets

    cache, _ = fake_model_asset
    folder = assets.ensure("fake-model", str(cache))
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    assert dict(assets.verify(str(cache)))["fake-model"].startswith("damaged: model.safetensors checksum mismatch")


def test_a_local_model_folder_with_cut_weights_is_one_line(tmp_path):
    from curlora_bench.core.errors import BenchError
    from curlora_bench.sources.models import load_model

    lm = load_model("tiny-gpt2")
    lm.model.save_pretrained(tmp_path / "m")
    lm.tokenizer.save_pretrained(tmp_path / "m")
    _cut(tmp_path / "m" / "model.safetensors")
    with pytest.raises(BenchError, match=r"the weights in .* are damaged"):
        load_model(str(tmp_path / "m"))


@pytest.mark.parametrize("digest", [True, False], ids=["digest", "built-before-digests"])
def test_a_probe_file_cut_short_is_built_again(monkeypatch, tmp_path, digest):
    from curlora_bench.sources import assets, general

    monkeypatch.setitem(assets.ASSETS._loaded(), "fake-data",
                        assets.Asset("fake-data", "data", [], lambda files, out: None, "a test asset", "none", 0))
    items = [{"id": f"x-{i}", "context": f"c {i}", "choices": ["a", "b", "c", "d"], "label": i % 4}
             for i in range(general.PROBE_ITEMS)]
    builds = []
    monkeypatch.setitem(general.PROBES, "nyt_cloze", ("fake-data", lambda folder: builds.append(folder) or items))
    cache = str(tmp_path / "cache")
    general.probe_yaml("nyt_cloze", cache)
    data = tmp_path / "cache" / "general" / "nyt_cloze.jsonl"
    whole = data.read_text()
    general.probe_yaml("nyt_cloze", cache)
    assert len(builds) == 1  # intact: used as it is
    if not digest:
        data.with_name(data.name + ".sha256").unlink()
    data.write_text("".join(whole.splitlines(keepends=True)[:3]))  # cut to 3 items
    general.probe_yaml("nyt_cloze", cache)
    assert len(builds) == 2 and data.read_text() == whole

def test_asset_progress_goes_to_stdout_so_stderr_holds_errors_alone(fake_model_asset, capsys):
    from curlora_bench.sources import assets

    cache, _ = fake_model_asset
    assets.ensure("fake-model", str(cache))
    out = capsys.readouterr()
    assert "asset fake-model: ready in" in " ".join(out.out.split()) and out.err == ""

PROBE_CHILD = """
import sys, time
from curlora_bench.sources import assets, general
assets.ASSETS._loaded()["fake-data"] = assets.Asset("fake-data", "data", [], lambda f, o: None, "t", "none", 0)
def build(folder):
    with open(sys.argv[2], "a") as log:
        log.write("built\\n")
    time.sleep(0.5)  # long enough for the other process to arrive meanwhile
    return [{"id": f"x-{i}", "context": f"c {i}", "choices": ["a", "b", "c", "d"], "label": i % 4}
            for i in range(general.PROBE_ITEMS)]
general.PROBES["nyt_cloze"] = ("fake-data", build)
print(general.probe_yaml("nyt_cloze", sys.argv[1]))
"""


def test_two_processes_preparing_one_probe_on_a_cold_cache_build_it_once(tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "builds.log"
    procs = [subprocess.Popen([sys.executable, "-c", PROBE_CHILD, str(cache), str(log)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert log.read_text().splitlines() == ["built"]
    data = cache / "general" / "nyt_cloze.jsonl"
    assert len(data.read_text().splitlines()) == 500 and not list((cache / "general").glob(".*.tmp"))
