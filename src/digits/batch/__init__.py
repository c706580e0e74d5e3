"""Streamed batch prediction: `digits predict MODEL SRC... --out results.jsonl|.csv`.

    summary = predict_to_file("runs/best", ["scans/", "more.zip"], Path("results.jsonl"), jobs=4)

`inputs` lists and reads the inputs, `predict` predicts a chunk of them, `runners` runs the
chunks in this process, worker processes or on Dask, `output` writes, reads back and resumes the
results file, and `to_file` ties them together.

Never imports torch: this is the ONNX Runtime path of `digits.predictor`.
"""

from digits.batch.inputs import InputError, iter_inputs, read_input
from digits.batch.output import CSV_COLUMNS, read_results, sidecar_path
from digits.batch.predict import chunks, predict_inputs
from digits.batch.runners import default_jobs
from digits.batch.to_file import predict_to_file

__all__ = [
    "CSV_COLUMNS",
    "InputError",
    "chunks",
    "default_jobs",
    "iter_inputs",
    "predict_inputs",
    "predict_to_file",
    "read_input",
    "read_results",
    "sidecar_path",
]
