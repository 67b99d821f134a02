"""ONNX Runtime's CPU graphs (docs/deploy.md §11): export writes and validates them, the backend
times them once per machine and caches the choice, and the replay's side threads yield the CPU."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torch")

import onnx
import onnxruntime as ort

from tests.support.tiny_export import make_tiny_model
from uwstego.agreement import PASSED
from uwstego.backends import CPU_GRAPH_CHOICES, BackendOptions, cpu_choice
from uwstego.backends.cpu_choice import (
    KERNEL_FLAGS,
    MARGIN,
    ROUNDS,
    CpuFacts,
    choose_cpu_graph,
    cpu_facts,
)
from uwstego.bundle import BUNDLE_FILE, BundleError, load_bundle
from uwstego.cli import build_parser
from uwstego.cpu_graphs import (
    DYNAMIC_INT8_MODEL_FILE,
    FUSED_MODEL_FILE,
    INT8_MODEL_FILE,
    MODEL_FILE,
    cpu_graph,
)
from uwstego.cpu_share import BACKGROUND_NICE, run_in_background
from uwstego.export.cli import main as export_main
from uwstego.export.fusions import MS_DOMAIN
from uwstego.export.pipeline import export_bundle
from uwstego.export.settings import ExportSettings
from uwstego.replay.pipeline import Pipeline
from uwstego.sample_frames import synthetic_frames
from uwstego.segmenter import Segmenter
from uwstego.training.artifact import save_trained_model

CAMERA = "96x64"
CPU_LOG = "uwstego.backends.cpu_choice"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    # seed 3, k 5: every class occurs on the synthetic frames (tests/test_precision.py)
    return save_trained_model(tmp_path_factory.mktemp("ckpt") / "model.pt",
                              make_tiny_model(seed=3, k=5))


@pytest.fixture(scope="module")
def bundle(checkpoint, tmp_path_factory):
    """Every graph: plain and fused FP32, QDQ and dynamic INT8. Tests that let the backend
    cache in the bundle's engines/ copy it first (:func:`_copy`)."""
    return export_bundle(checkpoint, tmp_path_factory.mktemp("full") / "b",
                         ExportSettings(camera=CAMERA, frames=2, int8=True,
                                        calibration_frames=3, engine="skip"))


@pytest.fixture(scope="module")
def plain_bundle(checkpoint, tmp_path_factory):
    """Exported through the CLI with --no-cpu-graphs: model.onnx alone."""
    out = tmp_path_factory.mktemp("plain") / "b"
    assert export_main([str(checkpoint), "--camera-size", CAMERA, "--out", str(out),
                        "--frames", "1", "--precision", "fp32", "--engine", "skip",
                        "--no-cpu-graphs"]) == 0
    return load_bundle(out)


@pytest.fixture(scope="module")
def frame(bundle):
    return synthetic_frames(bundle.meta.camera, 1, seed=21)[0]


def _copy(bundle, tmp_path):
    shutil.copytree(bundle.path, tmp_path / "copy")
    return load_bundle(tmp_path / "copy")


def _ms_ops(path: Path) -> Counter:
    graph = onnx.load(str(path))
    return Counter(n.op_type for n in graph.graph.node if n.domain == MS_DOMAIN)


def _choice_files(folder: Path, precision: str = "fp32") -> list[Path]:
    return sorted(folder.glob(f"cpu_graph_{precision}_*.json"))


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


# --- export ---------------------------------------------------------------------------------


def test_export_writes_and_validates_the_cpu_graphs(bundle):
    files = json.loads((bundle.path / BUNDLE_FILE).read_text())["files"]
    assert set(files) == {MODEL_FILE, INT8_MODEL_FILE, FUSED_MODEL_FILE, DYNAMIC_INT8_MODEL_FILE}
    assert all((bundle.path / f).is_file() for f in files)
    validation = bundle.meta.validation
    fused = validation["fused_vs_fp32"]
    assert fused["status"] == PASSED and fused["classes_present"] >= 2 and fused["informative"]
    # The same arithmetic, regrouped: labels agree and confidence differs by float rounding only.
    assert fused["label_agreement"] >= 0.999 and fused["confidence_max_abs"] < 1e-4
    assert "SkipLayerNormalization" in fused["method"] and "BiasGelu" in fused["method"]
    dynamic = validation["dynamic_int8_vs_fp32"]
    assert dynamic["status"] == PASSED and dynamic["classes_present"] >= 2
    assert dynamic["label_agreement"] >= 0.99
    assert "quantize_dynamic" in dynamic["method"]
    assert not validation.get("warnings")
    # The fused graph holds ONNX Runtime's operators (two blocks: residual+LN x2, bias+GELU x1
    # each); the TensorRT inputs hold none.
    ops = _ms_ops(bundle.path / FUSED_MODEL_FILE)
    assert ops["SkipLayerNormalization"] >= 2 and ops["BiasGelu"] >= 1, ops
    fused_graph = onnx.load(str(bundle.path / FUSED_MODEL_FILE))
    assert MS_DOMAIN in {o.domain for o in fused_graph.opset_import}
    plain_graph = onnx.load(str(bundle.path / MODEL_FILE))
    assert len(fused_graph.graph.node) < len(plain_graph.graph.node)
    assert not _ms_ops(bundle.path / MODEL_FILE) and not _ms_ops(bundle.path / INT8_MODEL_FILE)
    # The dynamic INT8 graph quantises activations per frame: no calibrated QDQ pairs.
    dyn_ops = {n.op_type for n in onnx.load(str(bundle.path / DYNAMIC_INT8_MODEL_FILE)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= dyn_ops
    assert "QuantizeLinear" not in dyn_ops
    # Same inputs and outputs as the plain graph, and the same recorded settings (class count,
    # bundle settings), so the backend's checks against bundle.json cover every graph.
    plain_meta = {p.key: p.value for p in plain_graph.metadata_props}
    assert plain_meta
    for graph in (fused_graph, onnx.load(str(bundle.path / DYNAMIC_INT8_MODEL_FILE))):
        assert [i.name for i in graph.graph.input] == [i.name for i in plain_graph.graph.input]
        assert [o.name for o in graph.graph.output] == [o.name for o in plain_graph.graph.output]
        meta = {p.key: p.value for p in graph.metadata_props}
        assert {k: meta.get(k) for k in plain_meta} == plain_meta
    assert [g.name for g in bundle.cpu_graphs("fp32")] == ["plain", "fused"]
    assert [g.name for g in bundle.cpu_graphs("fp16")] == ["plain", "fused"]
    assert [g.name for g in bundle.cpu_graphs("int8")] == ["plain", "dynamic"]


def test_export_without_cpu_graphs_runs_plain_untimed(plain_bundle, tmp_path):
    assert set(plain_bundle.checksums) == {MODEL_FILE}
    assert not {"fused_vs_fp32", "dynamic_int8_vs_fp32"} & set(plain_bundle.meta.validation)
    assert not (plain_bundle.path / FUSED_MODEL_FILE).exists()
    seg = Segmenter(plain_bundle, backend="onnxruntime", precision="fp32",
                    cache_dir=tmp_path / "cache")
    info = seg.describe()
    assert info["graph"] == "plain" and info["model"].endswith(MODEL_FILE)
    assert info["graph_choice"] == "the bundle holds no other CPU graph"
    # Nothing was timed, so nothing was cached.
    assert not (tmp_path / "cache").exists() and not plain_bundle.engine_dir.exists()
    # A graph the bundle lacks is refused, naming the file and the fix.
    with pytest.raises(BundleError, match=rf"no fused fp32 graph \({FUSED_MODEL_FILE}\).*"
                                          "re-export"):
        Segmenter(plain_bundle, backend="onnxruntime", precision="fp32", cpu_graph="fused")
    with pytest.raises(BundleError, match="has no INT8 graph"):
        Segmenter(plain_bundle, backend="onnxruntime", precision="int8", cpu_graph="dynamic")


def test_a_bundle_from_before_the_cpu_graphs(bundle, tmp_path, frame):
    """model.onnx and model_int8.onnx only, as exported before: each precision runs its plain
    graph untimed, and a named graph it lacks is refused with the file's name."""
    old = tmp_path / "old"
    shutil.copytree(bundle.path, old)
    doc = json.loads((old / BUNDLE_FILE).read_text())
    for name in (FUSED_MODEL_FILE, DYNAMIC_INT8_MODEL_FILE):
        del doc["files"][name]
        (old / name).unlink()
    (old / BUNDLE_FILE).write_text(json.dumps(doc))
    loaded = load_bundle(old)
    for precision, plain_file in (("fp32", MODEL_FILE), ("int8", INT8_MODEL_FILE)):
        seg = Segmenter(loaded, backend="onnxruntime", precision=precision)
        info = seg.describe()
        assert info["graph"] == "plain" and info["model"].endswith(plain_file)
        assert info["graph_choice"] == "the bundle holds no other CPU graph"
        assert seg.segment(frame).labels.shape == frame.shape[:2]
    assert not loaded.engine_dir.exists()
    with pytest.raises(BundleError, match=rf"no dynamic int8 graph \({DYNAMIC_INT8_MODEL_FILE}\)"):
        Segmenter(loaded, backend="onnxruntime", precision="int8", cpu_graph="dynamic")
    with pytest.raises(BundleError, match=rf"no fused fp32 graph \({FUSED_MODEL_FILE}\)"):
        Segmenter(loaded, backend="onnxruntime", precision="fp16", cpu_graph="fused")


# --- the choice, end to end on real sessions ------------------------------------------------


def test_auto_times_once_caches_in_engines_and_agrees_with_plain(bundle, tmp_path, frame):
    copy = _copy(bundle, tmp_path)
    first = Segmenter(copy, backend="onnxruntime", precision="fp32")
    files = _choice_files(copy.engine_dir)
    assert len(files) == 1, list(copy.engine_dir.iterdir())
    doc = json.loads(files[0].read_text())
    info = first.describe()
    assert doc["choice"] == info["graph"] and info["graph"] in ("plain", "fused")
    assert set(doc["timings_ms"]) == {"plain", "fused"}
    assert all(ms > 0 for ms in doc["timings_ms"].values())
    assert doc["key"]["onnxruntime"] == ort.__version__ and doc["key"]["threads"] == 0
    assert doc["key"]["graphs"] == {"plain": copy.checksums[MODEL_FILE],
                                    "fused": copy.checksums[FUSED_MODEL_FILE]}
    assert info["graph_choice"].startswith(f"{info['graph']} graph fastest here")
    assert f"onnxruntime {ort.__version__}" in info["graph_choice"]
    assert "cached in" not in info["graph_choice"]
    chosen = cpu_graph(info["graph"], "fp32")
    assert info["model"] == str(copy.path / chosen.file)
    assert info["model_sha256"] == copy.checksums[chosen.file]
    # The cache is no bundle file: the bundle still verifies.
    load_bundle(copy.path)

    second = Segmenter(copy, backend="onnxruntime", precision="fp32")
    again = second.describe()
    assert again["graph"] == info["graph"]
    assert "cached in" in again["graph_choice"] and str(files[0]) in again["graph_choice"]
    assert _choice_files(copy.engine_dir) == files

    plain = Segmenter(bundle, backend="onnxruntime", precision="fp32", cpu_graph="plain")
    fused = Segmenter(bundle, backend="onnxruntime", precision="fp32", cpu_graph="fused")
    assert plain.describe()["graph"] == "plain" and fused.describe()["graph"] == "fused"
    assert fused.describe()["model"].endswith(FUSED_MODEL_FILE)
    assert fused.describe()["graph_choice"] == "cpu_graph 'fused' requested"
    ref = plain.segment(frame)
    assert len(np.unique(ref.labels)) >= 2  # an informative frame
    fused_out = fused.segment(frame)
    assert _agreement(fused_out.labels, ref.labels) >= 0.999
    assert np.abs(fused_out.confidence - ref.confidence).max() < 1e-4
    forced = plain if info["graph"] == "plain" else fused
    for seg in (first, second):
        out = seg.segment(frame)
        assert np.array_equal(out.labels, forced.segment(frame).labels)
        assert _agreement(out.labels, ref.labels) >= 0.999


def test_int8_auto_caches_in_the_given_folder(bundle, tmp_path, frame):
    cache = tmp_path / "cache"
    engines_before = sorted(bundle.engine_dir.glob("*")) if bundle.engine_dir.exists() else []
    seg = Segmenter(bundle, backend="onnxruntime", precision="int8", cache_dir=cache)
    files = _choice_files(cache, "int8")
    assert len(files) == 1 and not _choice_files(cache, "fp32")
    info = seg.describe()
    assert info["graph"] in ("plain", "dynamic") and info["precision"] == "int8"
    assert info["model"].endswith(cpu_graph(info["graph"], "int8").file)
    assert json.loads(files[0].read_text())["choice"] == info["graph"]
    # The bundle folder is untouched when a cache folder is given.
    after = sorted(bundle.engine_dir.glob("*")) if bundle.engine_dir.exists() else []
    assert after == engines_before
    again = Segmenter(bundle, backend="onnxruntime", precision="int8", cache_dir=cache)
    assert str(cache) in again.describe()["graph_choice"]
    assert "cached in" in again.describe()["graph_choice"]

    dynamic = Segmenter(bundle, backend="onnxruntime", precision="int8", cpu_graph="dynamic")
    assert dynamic.describe()["model"].endswith(DYNAMIC_INT8_MODEL_FILE)
    ref = Segmenter(bundle, backend="onnxruntime", precision="fp32", cpu_graph="plain")
    ref_labels = ref.segment(frame).labels
    assert len(np.unique(ref_labels)) >= 2
    for s in (seg, dynamic):
        assert _agreement(s.segment(frame).labels, ref_labels) >= 0.99
    # A graph of another precision is refused by name.
    with pytest.raises(ValueError, match="'dynamic' at fp32: expected one of plain, fused"):
        Segmenter(bundle, backend="onnxruntime", precision="fp32", cpu_graph="dynamic")
    with pytest.raises(ValueError, match="'fused' at int8: expected one of plain, dynamic"):
        Segmenter(bundle, backend="onnxruntime", precision="int8", cpu_graph="fused")


def test_an_unwritable_cache_still_chooses_and_warns(bundle, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=CPU_LOG)
    # A file where the folder should be: unwritable even for root.
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    for _ in range(2):  # nothing cached: measured again at every start
        caplog.clear()
        seg = Segmenter(bundle, backend="onnxruntime", precision="fp32", cache_dir=blocked)
        info = seg.describe()
        assert info["graph"] in ("plain", "fused")
        assert "cached in" not in info["graph_choice"]
        assert "fastest here" in info["graph_choice"]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("cannot cache the CPU graph choice" in w and str(blocked) in w
                   for w in warnings), warnings
    assert blocked.read_text() == ""

    # A folder that takes the temporary file but not the rename (a folder in the cache file's
    # place): warned the same, and no temporary file is left behind.
    learn = Segmenter(bundle, backend="onnxruntime", precision="fp32", cache_dir=tmp_path / "a")
    assert "fastest here" in learn.describe()["graph_choice"]
    (name,) = [p.name for p in _choice_files(tmp_path / "a")]
    occupied = tmp_path / "b" / name
    occupied.mkdir(parents=True)
    caplog.clear()
    seg = Segmenter(bundle, backend="onnxruntime", precision="fp32", cache_dir=occupied.parent)
    assert "cached in" not in seg.describe()["graph_choice"]
    assert "cannot cache the CPU graph choice" in caplog.text
    assert list(occupied.parent.iterdir()) == [occupied] and not list(occupied.iterdir())


def test_a_read_only_cache_folder_still_chooses(bundle, tmp_path, caplog):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: chmod does not make a folder read-only")
        caplog.set_level(logging.WARNING, logger=CPU_LOG)
        seg = Segmenter(bundle, backend="onnxruntime", precision="fp32", cache_dir=folder)
        assert seg.describe()["graph"] in ("plain", "fused")
        assert "cannot cache the CPU graph choice" in caplog.text
        assert not list(folder.iterdir())
    finally:
        folder.chmod(0o755)


# --- the choice and its cache key, on a clock the test controls ------------------------------


class _Clock:
    """``time.perf_counter`` for cpu_choice: advanced only by the runners, so the timings
    are exact and the choice deterministic."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class _Runners:
    """``make_run`` whose runners take ``costs_ms[graph]`` on the clock; records what ran."""

    def __init__(self, clock: _Clock, costs_ms: dict[str, float]) -> None:
        self.clock, self.costs_ms = clock, costs_ms
        self.made: list[str] = []
        self.runs: Counter = Counter()
        self.staged: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, graph, staged):
        self.made.append(graph.name)
        self.staged.append(staged)

        def run() -> None:
            self.runs[graph.name] += 1
            self.clock.now += self.costs_ms[graph.name] / 1e3

        return run


@pytest.fixture()
def clock(monkeypatch):
    c = _Clock()
    monkeypatch.setattr(cpu_choice, "time", SimpleNamespace(perf_counter=c.perf_counter))
    return c


def test_the_fastest_graph_wins_by_the_margin(bundle, tmp_path, clock):
    plain_ms = 20.0
    cases = [  # (fused ms, ORT version: a new key each, so each is measured)
        (plain_ms * 0.25, "1.0-a", "fused"),
        (plain_ms * (1 - MARGIN / 3), "1.0-b", "plain"),  # faster, but within the noise
        (plain_ms * (1 - 2 * MARGIN), "1.0-c", "fused"),
        (plain_ms * 1.5, "1.0-d", "plain"),
    ]
    for fused_ms, version, expected in cases:
        runners = _Runners(clock, {"plain": plain_ms, "fused": fused_ms})
        choice = choose_cpu_graph(bundle, "fp32", 0, version, tmp_path, runners)
        assert choice.graph.name == expected, (fused_ms, choice.reason)
        assert choice.timings_ms == pytest.approx({"plain": plain_ms, "fused": fused_ms})
        assert runners.made == ["plain", "fused"]
        # Two blocks per graph (forward, then back), each one warm-up and ROUNDS timed runs.
        assert runners.runs == {"plain": 2 * (ROUNDS + 1), "fused": 2 * (ROUNDS + 1)}
        assert choice.cached is not None and choice.cached.parent == tmp_path
        doc = json.loads(choice.cached.read_text())
        assert doc["choice"] == expected and doc["key"]["onnxruntime"] == version
        assert f"onnxruntime {version}" in choice.reason and f"{MARGIN:.0%}" in choice.reason
    # One frame of the camera's size, staged as the vehicle stages it.
    image, params = runners.staged[0]
    cam = bundle.meta.camera
    assert image.shape == (cam.height, cam.width, 3) and image.dtype == np.uint8
    assert np.asarray(params).shape == (5,)
    assert len(_choice_files(tmp_path)) == len(cases)


def test_the_cache_key(bundle, tmp_path, clock, monkeypatch):
    def choose(version="1.20.0", threads=0, b=bundle, costs=None):
        runners = _Runners(clock, costs or {"plain": 10.0, "fused": 5.0})
        return choose_cpu_graph(b, "fp32", threads, version, tmp_path, runners), runners

    first, runners = choose()
    assert first.graph.name == "fused" and runners.made
    # Same key: read back, nothing runs, even where the timings would now say otherwise.
    cached, runners = choose(costs={"plain": 5.0, "fused": 10.0})
    assert not runners.made and cached.graph.name == "fused"
    assert cached.cached == first.cached and "cached in" in cached.reason
    assert cached.timings_ms == first.timings_ms

    files = {first.cached}
    changed = [
        {"version": "1.21.0"},  # another ONNX Runtime
        {"threads": 2},  # another thread count
        {"b": dataclasses.replace(bundle, checksums={**bundle.checksums,
                                                     FUSED_MODEL_FILE: "0" * 64})},  # graph
    ]
    for change in changed:
        choice, runners = choose(**change)
        assert runners.made == ["plain", "fused"], change  # measured again
        assert choice.cached not in files, change
        files.add(choice.cached)
    # Another CPU (one more kernel flag): measured again.
    here = cpu_facts()
    extra = next(f for f in KERNEL_FLAGS if f not in here.flags)
    monkeypatch.setattr(cpu_choice, "cpu_facts",
                        lambda: dataclasses.replace(here, flags=(*here.flags, extra)))
    choice, runners = choose()
    assert runners.made and choice.cached not in files
    assert extra in json.loads(choice.cached.read_text())["key"]["cpu"]["flags"]
    files.add(choice.cached)
    monkeypatch.setattr(cpu_choice, "cpu_facts", cpu_facts)
    assert set(_choice_files(tmp_path)) == files

    # A damaged cache file is measured again and rewritten.
    first.cached.write_text("{not json")
    choice, runners = choose()
    assert runners.made and choice.cached == first.cached
    assert json.loads(first.cached.read_text())["choice"] == "fused"


def test_a_bundle_with_one_graph_is_never_timed(plain_bundle, tmp_path, clock):
    runners = _Runners(clock, {"plain": 1.0})
    choice = choose_cpu_graph(plain_bundle, "fp16", 0, "1.20.0", tmp_path, runners)
    assert choice.graph.name == "plain" and choice.timings_ms == {} and choice.cached is None
    assert not runners.made and not list(tmp_path.iterdir())


X86_CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 avx512f avx512bw avx512vl \
avx512_vnni avx512vbmi
vmx flags\t: vnmi preemption_timer
bugs\t\t: spectre_v1 spectre_v2

processor\t: 1
model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz
flags\t\t: fpu avx f16c fma avx2 avx512f avx512bw avx512vl avx512_vnni
"""

ARM_CPUINFO = """\
processor\t: 0
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm \
lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd42

Hardware\t: NVIDIA Jetson AGX Orin
"""


def test_cpu_facts_parses_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text(X86_CPUINFO)
    facts = cpu_facts(x86)
    assert facts.model == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    # Only the kernel-relevant flags, in KERNEL_FLAGS order; not sse*, not "vmx flags".
    assert facts.flags == ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                           "avx512_vnni")
    assert facts.cores == (os.cpu_count() or 1)
    assert facts.model in facts.describe() and "avx512_vnni" in facts.describe()

    arm = tmp_path / "arm"
    arm.write_text(ARM_CPUINFO)
    facts = cpu_facts(arm)
    assert facts.model == "NVIDIA Jetson AGX Orin" and facts.flags == ("asimd", "asimddp")

    missing = cpu_facts(tmp_path / "absent")
    assert missing.flags == () and missing.model
    assert "no listed vector extensions" in missing.describe()
    assert isinstance(cpu_facts(), CpuFacts)


# --- sharing the CPU ------------------------------------------------------------------------


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="niceness is per thread on Linux only")


@linux_only
def test_run_in_background_lowers_only_the_calling_thread():
    before = _nice()
    if before >= BACKGROUND_NICE:
        pytest.skip(f"the tests already run at niceness {before}")
    seen: dict[str, int] = {}

    def child() -> None:
        seen["child"] = _nice()

    def background() -> None:
        seen["before"] = _nice()
        run_in_background()
        seen["after"] = _nice()
        t = threading.Thread(target=child)  # threads it starts inherit it
        t.start()
        t.join()

    t = threading.Thread(target=background)
    t.start()
    t.join()
    assert seen == {"before": before, "after": BACKGROUND_NICE, "child": BACKGROUND_NICE}
    assert _nice() == before  # the model's thread keeps its priority


@linux_only
def test_the_replay_reader_and_writer_run_in_the_background():
    main = _nice()
    if main >= BACKGROUND_NICE:
        pytest.skip(f"the tests already run at niceness {main}")
    seen: dict[str, int] = {}
    written: list[int] = []

    def produce():
        seen["reader"] = _nice()
        yield from range(3)

    @contextmanager
    def open_outputs():
        seen["writer"] = _nice()
        yield written.append

    pipe = Pipeline(produce, open_outputs)
    pipe.start()
    for item in pipe.frames():
        seen["inference"] = _nice()
        pipe.put(pipe.outbox, item * 10)
    pipe.finish()
    assert not pipe.failures and written == [0, 10, 20]
    assert seen == {"reader": BACKGROUND_NICE, "writer": BACKGROUND_NICE, "inference": main}
    assert _nice() == main


# --- options and command line ---------------------------------------------------------------


def test_backend_options_check_the_cpu_graph(plain_bundle):
    assert CPU_GRAPH_CHOICES == ("auto", "plain", "fused", "dynamic")
    for name in CPU_GRAPH_CHOICES:
        assert BackendOptions(cpu_graph=name).cpu_graph == name
    assert BackendOptions().cpu_graph == "auto"
    with pytest.raises(ValueError, match="cpu_graph 'bogus': expected one of auto, plain"):
        BackendOptions(cpu_graph="bogus")
    with pytest.raises(ValueError, match="cpu_graph 'bogus'"):
        Segmenter(plain_bundle, backend="onnxruntime", cpu_graph="bogus")


def test_replay_cli_takes_threads_and_cpu_graph(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["replay", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--cpu-graph" in text and "--threads" in text
    assert "{auto,plain,fused,dynamic}" in text
    args = parser.parse_args(["replay", "dive", "--bundle", "b", "--cpu-graph", "fused",
                              "--threads", "3"])
    assert args.cpu_graph == "fused" and args.threads == 3
    args = parser.parse_args(["replay", "dive", "--bundle", "b"])
    assert args.cpu_graph == "auto" and args.threads == 0
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["replay", "dive", "--bundle", "b", "--cpu-graph", "bogus"])
    assert exit_.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
