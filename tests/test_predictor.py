"""The torch-free predictor and `digits predict`: real-looking inputs through the whole path,
with an accuracy gate, bad files beside good ones, thresholds, and no torch anywhere."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from digits.cli import app
from digits.data import DigitData
from digits.predictor import ModelError, Predictor, find_images
from digits.preprocess import PREPROCESSING_VERSION
from tests.handwriting import LOOKS, Look, mnist_photo, pen_photo
from tests.helpers import tiny_model

runner = CliRunner()


@pytest.fixture(scope="module")
def predictor(trained_cnn_run: Path) -> Predictor:
    return Predictor.from_path(trained_cnn_run)


@pytest.fixture(scope="module")
def handwriting_dir(mnist: DigitData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~200 real-looking images in every condition and format; the label starts each name."""
    folder = tmp_path_factory.mktemp("handwriting")
    formats = ["png", "jpg", "webp", "bmp", "tif", "gif"]
    count = 0
    for look_index, (look_name, look) in enumerate(LOOKS.items()):
        sub = folder / look_name
        sub.mkdir()
        for digit in range(10):
            index = int(np.nonzero(mnist.y_test == digit)[0][look_index])
            photo = mnist_photo(mnist.x_test[index], look, seed=index)
            fmt = formats[count % len(formats)]
            photo.save(sub / f"{digit}-mnist{index}.{fmt}")
            stroke = (0.04, 0.09, 0.18)[digit % 3]
            pen = pen_photo(digit, look, stroke=stroke, seed=look_index * 10 + digit)
            pen.save(sub / f"{digit}-pen.{formats[(count + 1) % len(formats)]}")
            count += 2
    return folder


def test_prediction_path_never_imports_torch(trained_cnn_run: Path, tmp_path: Path) -> None:
    image = tmp_path / "four.png"
    pen_photo(4, LOOKS["plain"]).save(image)
    code = f"""
import sys
import digits
from digits.predictor import Predictor
from digits.preprocess import preprocess
from digits.segment import read_number
from digits.kaggle import predict_submission
import digits.cli
predictor = digits.Predictor.from_path({str(trained_cnn_run)!r})
assert predictor.predict_images([{str(image)!r}])[0].digit == 4
read_number(predictor, {str(image)!r})
for command in ("predict", "read"):  # the commands exactly as a user runs them
    sys.argv = ["digits", command, {str(trained_cnn_run)!r}, {str(image)!r}, "--json"]
    try:
        digits.cli.main()
    except SystemExit as exit:
        assert not exit.code, exit.code
heavy = [name for name in ("torch", "sklearn", "matplotlib", "captum") if name in sys.modules]
assert not heavy, heavy
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_predict_arrays_on_mnist(predictor: Predictor, mnist: DigitData) -> None:
    probabilities = predictor.predict_arrays(mnist.x_test[:2000])
    assert probabilities.shape == (2000, 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(1) == mnist.y_test[:2000]).mean() > 0.97
    single = predictor.predict_arrays(mnist.x_test[0])
    np.testing.assert_allclose(single[0], probabilities[0], atol=1e-6)
    assert predictor.predict_arrays(np.zeros((0, 28, 28), np.uint8)).shape == (0, 10)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((3, 28, 28), np.float32), "uint8"),
        (np.zeros((3, 32, 32), np.uint8), "N×28×28"),
        (np.zeros((3, 784), np.uint8), "N×28×28"),
    ],
)
def test_predict_arrays_rejects_other_shapes(
    predictor: Predictor, images: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        predictor.predict_arrays(images)


def test_metadata_travels_in_the_onnx_file(predictor: Predictor, trained_cnn_run: Path) -> None:
    metrics = json.loads((trained_cnn_run / "metrics.json").read_text())
    info = predictor.info
    assert info.model == "cnn"
    assert info.test_accuracy == pytest.approx(metrics["test"]["accuracy"])
    assert info.parameters == metrics["parameters"]
    assert info.preprocessing_version == PREPROCESSING_VERSION
    assert info.labels == [str(d) for d in range(10)]
    # The fixture trains without a validation split: calibrated on held-out views instead.
    assert info.temperature != 1.0 and "no validation split" in info.temperature_source
    assert info.temperature == pytest.approx(metrics["calibration"]["temperature"])
    bare = Predictor.from_path(trained_cnn_run / "model.onnx")
    assert bare.info.model == "cnn"


def test_bad_model_paths_are_clear_errors(tmp_path: Path, trained_cnn_run: Path) -> None:
    with pytest.raises(ModelError, match="no such model"):
        Predictor.from_path(tmp_path / "absent")
    with pytest.raises(ModelError, match="not a run directory"):
        Predictor.from_path(tmp_path)
    torch_only = tmp_path / "run"
    torch_only.mkdir()
    (torch_only / "model.safetensors").write_bytes(
        (trained_cnn_run / "model.safetensors").read_bytes()
    )
    with pytest.raises(ModelError, match="digits export"):
        Predictor.from_path(torch_only)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelError, match=r"broken\.onnx: not a loadable ONNX model"):
        Predictor.from_path(broken)
    with pytest.raises(ModelError, match="not an .onnx file"):
        Predictor.from_path(trained_cnn_run / "metrics.json")


def test_predict_images_mixes_sources_and_keeps_going(predictor: Predictor) -> None:
    photo = pen_photo(6, LOOKS["photo"])
    results = predictor.predict_images(
        [photo, b"not an image", Image.new("L", (64, 64), 255), np.asarray(photo)],
        names=["photo", "junk", "blank", "array"],
    )
    assert [r.file for r in results] == ["photo", "junk", "blank", "array"]
    assert results[0].digit == 6 and results[3].digit == 6
    assert results[0].pixels is not None and results[0].box is not None
    assert results[1].digit is None and results[1].error and "junk" in results[1].error
    assert results[2].digit is None and results[2].reason and "no digit" in results[2].reason
    assert results[2].error is None


def test_accuracy_gate_on_real_looking_handwriting(handwriting_dir: Path, trained_cnn_run: Path):
    """Through `digits predict` exactly as a user runs it, on every condition and format."""
    result = runner.invoke(app, ["predict", str(trained_cnn_run), str(handwriting_dir), "--json"])
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)
    assert len(answers) == 2 * 10 * len(LOOKS)
    truth = [int(Path(a["file"]).name[0]) for a in answers]
    correct = [a["digit"] == t for a, t in zip(answers, truth, strict=True)]
    accuracy = float(np.mean(correct))
    # Measured 99–100 % with the one-epoch fixture model; 95 % leaves room for seeds, not for
    # a preprocessing regression (without centring and scaling this falls below 40 %).
    assert accuracy >= 0.95, [a["file"] for a, ok in zip(answers, correct, strict=True) if not ok]
    for look in LOOKS:
        per_look = [ok for a, ok in zip(answers, correct, strict=True) if f"/{look}/" in a["file"]]
        assert np.mean(per_look) >= 0.85, look


def test_directory_with_a_bad_file_reports_it_and_fails(
    tmp_path: Path, trained_cnn_run: Path
) -> None:
    pen_photo(2, LOOKS["plain"]).save(tmp_path / "two.png")
    pen_photo(9, LOOKS["inverted"]).save(tmp_path / "nine.jpg")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "notes.txt").write_text("skipped: not an image suffix")
    Image.new("L", (80, 80), 250).save(tmp_path / "empty.png")
    missing = tmp_path / "missing.png"
    result = runner.invoke(
        app, ["predict", str(trained_cnn_run), str(tmp_path), str(missing), "--json", "--top", "3"]
    )
    assert result.exit_code == 1
    answers = {Path(a["file"]).name: a for a in json.loads(result.stdout)}
    assert set(answers) == {"two.png", "nine.jpg", "broken.png", "empty.png", "missing.png"}
    assert answers["two.png"]["digit"] == 2 and answers["nine.jpg"]["digit"] == 9
    top = answers["two.png"]["top"]
    assert len(top) == 3 and top[0]["digit"] == 2
    assert top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]
    assert answers["broken.png"]["digit"] is None and "broken.png" in answers["broken.png"]["error"]
    assert answers["missing.png"]["error"].endswith("no such file")
    assert answers["empty.png"]["digit"] is None and answers["empty.png"]["error"] is None
    assert answers["empty.png"]["reason"].startswith("no digit")
    assert "broken.png" in result.stderr


def test_min_confidence_csv_and_table(tmp_path: Path, trained_cnn_run: Path) -> None:
    image = tmp_path / "seven.png"
    pen_photo(7, LOOKS["plain"]).save(image)
    unsure = runner.invoke(
        app, ["predict", str(trained_cnn_run), str(image), "--json", "--min-confidence", "1"]
    )
    assert unsure.exit_code == 0
    (answer,) = json.loads(unsure.stdout)
    assert answer["digit"] is None and answer["confidence"] > 0.5
    assert answer["answer"] == "not_sure"
    assert answer["reason"].startswith("not sure: best guess 7 at ")
    assert answer["reason"].endswith("below the 100 % threshold")

    as_csv = runner.invoke(
        app, ["predict", str(trained_cnn_run), str(image), "--csv", "--top", "2"]
    )
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert rows[0]["digit"] == "7" and float(rows[0]["confidence"]) > 0.5
    assert rows[0]["top2"].split(":")[0] != "7"

    table = runner.invoke(app, ["predict", str(trained_cnn_run), str(image)])
    assert table.exit_code == 0 and "7" in table.stdout
    both = runner.invoke(app, ["predict", str(trained_cnn_run), str(image), "--json", "--csv"])
    assert both.exit_code == 1 and "choose one" in both.stderr


def test_debug_dir_saves_what_the_model_saw(tmp_path: Path, trained_cnn_run: Path) -> None:
    image = tmp_path / "one.png"
    pen_photo(1, LOOKS["plain"]).save(image)
    seen = tmp_path / "seen"
    result = runner.invoke(
        app, ["predict", str(trained_cnn_run), str(image), "--debug-dir", str(seen)]
    )
    assert result.exit_code == 0
    (saved,) = seen.iterdir()
    assert np.asarray(Image.open(saved)).shape == (28, 28)


def test_find_images_walks_directories(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.PNG", "a/b/y.jpeg", "a/z.txt", "a/b/w.tiff"):
        (tmp_path / name).write_bytes(b"")
    found = find_images([tmp_path / "a", tmp_path / "given.dat"])
    assert [p.name for p in found] == ["w.tiff", "y.jpeg", "x.PNG", "given.dat"]


def test_find_images_keeps_what_it_cannot_use(tmp_path: Path) -> None:
    # Each of these gets an error entry of its own later; none may vanish from the batch.
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "far.png").write_bytes(b"")
    (root / "sub" / "near.png").write_bytes(b"")
    (root / "linked").symlink_to(elsewhere)  # a link to a folder is followed
    (root / "dangling.png").symlink_to("gone.png")
    (root / "loop.jpg").symlink_to("loop.jpg")
    (root / "sub" / "back").symlink_to("..")  # would walk forever if followed
    (root / "notes.txt").symlink_to("gone.txt")  # named as no image: left out like other .txt
    os.mkfifo(root / "pipe.png")
    found = find_images([root])
    assert [p.relative_to(root).as_posix() for p in found] == [
        "dangling.png",
        "linked/far.png",
        "loop.jpg",
        "pipe.png",
        "sub/back",
        "sub/near.png",
    ]


def test_find_images_keeps_an_unreadable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "x.png").write_bytes(b"")
    (tmp_path / "open.png").write_bytes(b"")
    real = os.scandir

    # chmod 000 denies nothing to root, who runs the tests: the refusal is simulated.
    def scandir(path: str | os.PathLike[str]) -> Any:
        if Path(str(path)).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert find_images([tmp_path]) == [tmp_path / "locked", tmp_path / "open.png"]


@pytest.mark.parametrize(
    "colours",
    [((245, 245, 240), (20, 20, 30)), ((15, 15, 20), (240, 240, 235))],
    ids=["pen-on-paper", "chalk-on-board"],
)
def test_hairlines_on_large_unevenly_lit_photos(predictor: Predictor, colours) -> None:
    # A fine pen on a phone-sized photo: the ink covers a fraction of a percent of the frame
    # and the lighting gradient spans more grey levels than the paper's own noise.
    paper, ink = colours
    look = Look(size=(2000, 1500), digit_height=0.3, gradient=0.3, noise=4.0, paper=paper, ink=ink)
    digits = [0, 1, 4, 6, 9]
    results = predictor.predict_images([pen_photo(d, look, stroke=0.01, seed=d) for d in digits])
    assert all(r.pixels is not None for r in results), [r.reason for r in results]
    assert sum(r.digit == d for r, d in zip(results, digits, strict=True)) >= 4


def test_table_showing_around_the_paper(predictor: Predictor) -> None:
    # A photo that did not crop the paper: a dark table along the left and bottom edges.
    digits = [0, 2, 5, 8]
    photos = []
    for d in digits:
        look = Look(size=(400, 300), digit_height=0.5, centre=(0.6, 0.5), gradient=0.2, noise=4)
        pixels = np.asarray(pen_photo(d, look, seed=d)).copy()
        pixels[:, :60] = (60, 50, 45)
        pixels[260:, :] = (60, 50, 45)
        photos.append(Image.fromarray(pixels))
    results = predictor.predict_images(photos)
    assert [r.digit for r in results] == digits
    for result in results:  # the box is the digit's (0.6 × 400 across, 75–225 down), not the table
        left, top, right, bottom = result.box or (0, 0, 0, 0)
        assert left > 60 and bottom < 260 and abs((top + bottom) / 2 - 150) < 15
        assert abs((left + right) / 2 - 240) < 20


def test_every_answer_has_every_key_and_boxes_as_the_api_gives_them(tmp_path: Path) -> None:
    predictor = Predictor.from_path(tiny_model(tmp_path / "tiny.onnx"))
    photo = pen_photo(6, LOOKS["photo"])
    results = predictor.predict_images(
        [photo, b"not an image", Image.new("L", (64, 64), 255)], names=["photo", "junk", "blank"]
    )
    assert [r.answer for r in results][1:] == ["error", "no_digit"]
    for top in (0, 3):
        documents = [result.to_dict(top) for result in results]
        keys = {"file", "digit", "answer", "confidence", "box", "not_digit", "reason", "error"}
        assert all(set(document) == keys | ({"top"} if top else set()) for document in documents)
    photo_entry, junk, blank = (result.to_dict() for result in results)
    left, top_edge, right, bottom = results[0].box or (0, 0, 0, 0)
    assert photo_entry["box"] == {
        "x": left, "y": top_edge, "width": right - left, "height": bottom - top_edge,
    }  # fmt: skip
    assert photo_entry["box"]["width"] > 0 and photo_entry["box"]["height"] > 0
    assert junk["box"] is None and blank["box"] is None
    assert photo_entry["not_digit"] is None  # a ten-class model: the key is there, null
