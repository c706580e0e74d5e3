"""`digits predict --out`: streamed, resumable, parallel and distributed batches (digits.batch)."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from digits.batch import CSV_COLUMNS, predict_to_file, read_results, runners, sidecar_path
from digits.cli import app
from digits.data import DigitData
from digits.predictor import Predictor, find_images, iter_images
from tests.helpers import tiny_model

runner = CliRunner()
ODD_NAME = 'odd\n"quoted", name.png'  # a line end, quotes and a comma: CSV's hard cases


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def _png(pixels: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def scans(mnist: DigitData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """150 MNIST test digits over two folder levels, a blank page, a broken file and one file
    whose name CSV must quote: three chunks of 64, with every kind of entry."""
    assert mnist.x_test is not None
    folder = tmp_path_factory.mktemp("batch") / "scans"
    (folder / "deeper").mkdir(parents=True)
    for index in range(150):
        where = folder / "deeper" if index % 4 == 0 else folder
        (where / f"{index:03d}.png").write_bytes(_png(255 - mnist.x_test[index]))
    Image.new("L", (40, 40), 255).save(folder / "blank.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / ODD_NAME).write_bytes(_png(mnist.x_test[150]))
    return folder


def _json_answers(model: Path, *sources: Path) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["predict", str(model), *map(str, sources), "--json"])
    assert result.exit_code in (0, 1), result.output
    answers: list[dict[str, Any]] = json.loads(result.stdout)
    return answers


def _out(model: Path, out: Path, *sources: Path, options: tuple[str, ...] = ()) -> Any:
    args = ["predict", str(model), *map(str, sources), "--out", str(out), *options]
    return runner.invoke(app, args)


@pytest.mark.parametrize(("name", "jobs"), [("results.jsonl", "1"), ("results.csv", "2")])
def test_out_holds_the_json_answers(
    tmp_path: Path, model: Path, scans: Path, name: str, jobs: str
) -> None:
    expected = _json_answers(model, scans)
    out = tmp_path / name
    result = _out(model, out, scans, options=("--jobs", jobs))
    assert result.exit_code == 1, result.output  # the broken file
    assert f"error: {scans / 'broken.png'}: not a" in result.stderr
    assert f"{len(expected)} entries written to {out}; 1 error" in result.stdout
    assert list(read_results(out)) == expected
    assert len(expected) == 153
    assert {entry["answer"] for entry in expected} >= {"digit", "no_digit", "error"}
    text = out.read_text()
    if name.endswith(".csv"):
        assert text.startswith(",".join(CSV_COLUMNS) + "\n")
    else:
        lines = text.splitlines()
        assert len(lines) == len(expected)
        assert all(set(json.loads(line)) == set(expected[0]) for line in lines)
    recorded = json.loads(sidecar_path(out).read_text())
    assert recorded["inputs"] == [str(scans)] and recorded["model"] == str(model.resolve())


@pytest.mark.parametrize("name", ["results.jsonl", "results.csv"])
def test_a_run_cut_mid_line_continues_writing_each_image_once(
    tmp_path: Path, model: Path, scans: Path, name: str
) -> None:
    out = tmp_path / name
    assert _out(model, out, scans).exit_code == 1
    whole = out.read_bytes()
    odd = whole.index(b"odd")
    # Inside the first entry, inside the quoted name (whose line end CSV keeps), and just
    # before the last line end: a killed write can stop anywhere.
    for cut in (10, odd + 5, len(whole) - 1):
        out.write_bytes(whole[:cut])
        result = _out(model, out, scans)
        assert result.exit_code == 1, result.output
        assert out.read_bytes() == whole
    assert "written now" in result.stdout and "there from before" in result.stdout
    again = _out(model, out, scans)
    assert "153 entries in" in again.stdout and "all there from before" in again.stdout
    assert out.read_bytes() == whole


def test_a_killed_process_continues_where_it_stopped(
    tmp_path: Path, model: Path, mnist: DigitData
) -> None:
    assert mnist.x_test is not None
    folder = tmp_path / "many"
    folder.mkdir()
    pictures = [_png(255 - mnist.x_test[index]) for index in range(10)]
    for index in range(3000):
        (folder / f"{index:04d}.png").write_bytes(pictures[index % 10])
    out = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "digits", "predict", str(model), str(folder)]
    process = subprocess.Popen([*command, "--out", str(out), "--jobs", "1"])
    deadline = time.monotonic() + 60
    while (not out.exists() or out.read_bytes().count(b"\n") < 64) and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL  # stopped part-way, not finished
    written_before = out.read_bytes().count(b"\n")
    assert 64 <= written_before < 3000
    result = _out(model, out, folder)
    assert result.exit_code == 0, result.output
    names = [entry["file"] for entry in read_results(out)]
    assert names == [str(path) for path in find_images([folder])]  # each once, in order
    assert all(json.loads(line)["error"] is None for line in out.read_text().splitlines())


def test_another_command_is_refused_and_the_output_kept(
    tmp_path: Path, model: Path, scans: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(scans / "001.png", other / "x.png")
    out = tmp_path / "results.jsonl"
    _out(model, out, scans)
    whole = out.read_bytes()
    more = _out(model, out, scans, other)
    assert more.exit_code == 1
    assert more.stderr == (
        f"error: {out} holds the answers for other inputs ({scans}); give the same command to "
        "continue it, or another --out\n"
    )
    stricter = _out(model, out, scans, options=("--min-confidence", "0.9"))
    assert stricter.exit_code == 1 and "written with --min-confidence 0.5" in stricter.stderr
    import onnx

    other_model = tiny_model(tmp_path / "other.onnx")
    changed_model = onnx.load(other_model)
    changed_model.doc_string = "the same weights, another file"
    onnx.save(changed_model, other_model)
    assert "answers of another model" in _out(other_model, out, scans).stderr
    assert out.read_bytes() == whole
    # The same command, but the folder changed under the output: refused, not mixed.
    changed = tmp_path / "changed"
    shutil.copytree(scans, changed)
    out_changed = tmp_path / "changed.jsonl"
    _out(model, out_changed, changed)
    (changed / "001a.png").write_bytes((changed / "001.png").read_bytes())
    refused = _out(model, out_changed, changed)
    assert refused.exit_code == 1
    assert "entry 2 is" in refused.stderr and "they changed since" in refused.stderr
    stranger = tmp_path / "notes.csv"
    stranger.write_text("mine\n")
    foreign = _out(model, stranger, scans)
    assert foreign.exit_code == 1 and "no run of `digits predict --out` wrote it" in foreign.stderr
    assert stranger.read_text() == "mine\n"


def test_archives_are_read_without_unpacking(tmp_path: Path, model: Path, scans: Path) -> None:
    members = sorted(path for path in scans.rglob("*.png") if path.name != ODD_NAME)[:20]
    inner = [str(path.relative_to(scans)) for path in members]
    with zipfile.ZipFile(tmp_path / "scans.zip", "w") as packed:
        for path, name in zip(members, inner, strict=True):
            packed.write(path, f"inside/{name}")
        packed.writestr("inside/readme.txt", "not an image: not an entry")
    for name in ("scans.tar", "scans.tar.gz", "scans.tgz"):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for path, member in zip(members, inner, strict=True):
                tar.add(path, f"./inside/{member}")
        packed_bytes = buffer.getvalue()
        compressed = name.endswith("gz")
        (tmp_path / name).write_bytes(gzip.compress(packed_bytes) if compressed else packed_bytes)
    whole = (tmp_path / "scans.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])
    archives = [tmp_path / name for name in ("scans.zip", "scans.tar", "scans.tar.gz", "scans.tgz")]
    expected = _json_answers(model, *archives, tmp_path / "cut.tar.gz")
    out = tmp_path / "results.jsonl"
    result = _out(model, out, *archives, tmp_path / "cut.tar.gz", options=("--jobs", "2"))
    assert result.exit_code == 1, result.output  # the cut archive
    assert list(read_results(out)) == expected
    unpacked = {str(path.relative_to(scans)): entry for path, entry in zip(
        members, _json_answers(model, *members), strict=True
    )}  # fmt: skip
    for archive in archives:
        found = [entry for entry in expected if entry["file"].startswith(f"{archive}/")]
        assert [entry["file"] for entry in found] == [f"{archive}/inside/{n}" for n in inner]
        for entry, name in zip(found, inner, strict=True):
            assert {**entry, "file": name} == {**unpacked[name], "file": name}  # as the files
    cut = [entry for entry in expected if entry["file"].startswith(str(tmp_path / "cut.tar.gz"))]
    assert cut[-1]["file"] == str(tmp_path / "cut.tar.gz")
    assert cut[-1]["error"].startswith(f"{tmp_path / 'cut.tar.gz'}: not a readable archive (")
    assert all(entry["error"] is None for entry in cut[:-1])


def test_dask_gives_the_answers_of_one_process_in_order(
    tmp_path: Path, model: Path, scans: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import LocalCluster

    loads: list[str] = []
    real = Predictor.from_path

    def counting(cls: type[Predictor], path: str | Path, **options: Any) -> Predictor:
        loads.append(str(path))
        return real(path, **options)

    monkeypatch.setattr(Predictor, "from_path", classmethod(counting))
    monkeypatch.setattr(runners, "_dask_predictors", {})
    # Relative names, as typed in a folder: the worker reads them from the command's folder.
    monkeypatch.chdir(scans.parent)
    local = predict_to_file(model, [Path(scans.name)], tmp_path / "one.jsonl", chunk_size=16)
    loads.clear()
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        summary = predict_to_file(
            model,
            [Path(scans.name)],
            tmp_path / "dask.jsonl",
            scheduler=cluster.scheduler_address,
            chunk_size=16,
        )
    assert summary.total == local.total == 153 and summary.errors == 1
    assert list(read_results(tmp_path / "dask.jsonl")) == list(read_results(tmp_path / "one.jsonl"))
    # Once to check it here, once on the worker for all ten chunks.
    assert loads == [str(model.resolve())] * 2


def test_a_scheduler_and_a_worker_of_their_own_as_on_two_machines(
    tmp_path: Path, model: Path, scans: Path
) -> None:
    # The two-machine set-up of the README on loopback: `dask scheduler` and `dask worker` as
    # processes of their own, and the command pointed at the scheduler's address.
    dask = str(Path(sys.executable).with_name("dask"))
    address_file = tmp_path / "scheduler.json"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(address_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
        )
    ]  # fmt: skip
    try:
        address, deadline = "", time.monotonic() + 60
        while not address and time.monotonic() < deadline:
            try:  # written once the scheduler listens
                address = json.loads(address_file.read_text())["address"]
            except (OSError, ValueError):
                time.sleep(0.1)
        assert address.startswith("tcp://127.0.0.1:")
        started.append(
            subprocess.Popen(
                [dask, "worker", address, "--nworkers", "1", "--nthreads", "1",
                 "--no-dashboard", "--no-nanny"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
            )
        )  # fmt: skip
        out = tmp_path / "results.jsonl"
        result = _out(model, out, scans, options=("--scheduler", address))
        assert result.exit_code == 1, result.output  # the one broken file
        assert list(read_results(out)) == _json_answers(model, scans)
    finally:
        for process in reversed(started):
            process.terminate()
            process.wait(timeout=30)


def test_scheduler_local_through_the_command(tmp_path: Path, model: Path, scans: Path) -> None:
    out = tmp_path / "results.csv"
    result = _out(model, out, scans, options=("--scheduler", "local", "--jobs", "1"))
    assert result.exit_code == 1, result.output
    assert list(read_results(out)) == _json_answers(model, scans)


def test_options_that_do_not_go_together(tmp_path: Path, model: Path, scans: Path) -> None:
    cases = {
        (
            "--out",
            str(tmp_path / "r.jsonl"),
            "--json",
        ): "--out writes its own file: leave out --json",
        ("--out", str(tmp_path / "r.txt")): "--out must end in .jsonl or .csv",
        ("--jobs", "2"): "--jobs and --scheduler go with --out",
        ("--out", str(tmp_path / "r.csv"), "--scheduler", "me"): "--scheduler me: give 'local'",
    }
    for options, message in cases.items():
        result = runner.invoke(app, ["predict", str(model), str(scans), *options])
        assert result.exit_code == 1 and message in result.stderr, result.output
    assert not list(tmp_path.iterdir())  # nothing written for a refused command


def test_the_walk_is_lazy_in_the_order_of_sorting_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["a/z.png", "a.png", "a0.png", "a b.png", "A.png", "a-1/b/c.png", "a-1.png", "ab/x.png"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    listed: list[str] = []
    real_scandir = os.scandir

    def scandir(path: str) -> Any:
        listed.append(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    walked = iter_images([tmp_path])
    assert next(walked) == tmp_path / "A.png"
    assert len(listed) == 1  # the first file comes before any folder below is listed
    monkeypatch.undo()
    everything = sorted(path for path in tmp_path.rglob("*") if path.is_file())
    assert [everything[0], *walked] == everything == find_images([tmp_path])


def test_batch_path_never_imports_torch(tmp_path: Path, model: Path, scans: Path) -> None:
    # A fresh interpreter: this test process may have torch loaded by another test's fixture.
    script = textwrap.dedent(
        f"""
        import sys
        from digits.cli import main

        for jobs, name in (("1", "one.jsonl"), ("2", "two.csv")):
            sys.argv = ["digits", "predict", {str(model)!r}, {str(scans)!r},
                        "--out", {str(tmp_path)!r} + "/" + name, "--jobs", jobs]
            try:
                main()
            except SystemExit:
                pass
        loaded = sorted(name for name in sys.modules if name.split(".")[0] == "torch")
        print("torch modules:", loaded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert "torch modules: []" in result.stdout, result.stderr
    assert len(list(read_results(tmp_path / "two.csv"))) == 153
    assert os.path.getsize(tmp_path / "one.jsonl") > 0
