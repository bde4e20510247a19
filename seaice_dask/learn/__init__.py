"""Sea-ice classifiers over the labelled cube: sampling, training, prediction, evaluation.

Library entry points (the CLI verbs ``train``, ``predict``, ``evaluate`` call these)::

    report = train(cfg, client)          # models/<learner>.skops + models/train_report.json
    predict(cfg, client=client)          # cube `class`, `proba` (GIS files: seaice_dask.export)
    evaluate(cfg, client=client)         # reports/scores.json + figures
"""

from importlib import import_module
from typing import Any

#: Entry point → its module, imported on first use: a worker that only samples the cube or
#: applies a compiled model need not import scikit-learn and skops (seconds per new process).
_ENTRY_POINTS = {
    "EvalReport": "evaluate", "evaluate": "evaluate",
    "PredictReport": "predict", "predict": "predict",
    "TrainReport": "train", "train": "train",
}

__all__ = ["EvalReport", "PredictReport", "TrainReport", "evaluate", "predict", "train"]


def __getattr__(name: str) -> Any:
    if name not in _ENTRY_POINTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_ENTRY_POINTS[name]}"), name)
