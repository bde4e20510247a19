"""Sea-ice classifiers over the labelled cube: sampling, training, prediction, evaluation.

Library entry points (the CLI verbs ``train``, ``predict``, ``evaluate`` call these)::

    report = train(cfg, client)          # models/<learner>.skops + models/train_report.json
    predict(cfg, client=client)          # cube `class`, `proba` (GIS files: seaice_dask.export)
    evaluate(cfg, client=client)         # reports/scores.json + figures
"""

from seaice_dask.learn.evaluate import EvalReport, evaluate
from seaice_dask.learn.predict import PredictReport, predict
from seaice_dask.learn.train import TrainReport, train

__all__ = ["EvalReport", "PredictReport", "TrainReport", "evaluate", "predict", "train"]
