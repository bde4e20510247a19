"""``MODEL.md``: the model card kept beside a trained model folder (what it was trained on, how
well it scores per class and per month, what it is meant for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODEL_CARD = "MODEL.md"
#: Where ``evaluate`` puts the per-month table (everything after it is replaced).
MONTHS_MARK = "## Accuracy per month on the test dates"


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def write_model_card(models_dir: Path, report: Any, pipeline: dict[str, Any]) -> Path:
    """``MODEL.md``: what the chosen model was trained on, how well it scores per class, and
    what it is meant for (a model card, kept beside the model files)."""
    best = report.scores[report.best]
    pre, feat = pipeline["preprocess"], pipeline["features"]
    rows = "\n".join(
        f"| {name} | {best['per_class'][name]['precision']:.3f} | {best['per_class'][name]['recall']:.3f} "
        f"| {best['per_class'][name]['f1']:.3f} |" for name in report.class_names if name in best.get("per_class", {})
    )
    learners = "\n".join(f"| {k} | {v['overall_accuracy']:.3f} | {v['kappa']:.3f} | "
                          f"{report.predict_px_per_s.get(k, 0) / 1e6:.2f} |" for k, v in report.scores.items())
    text = f"""# Model card: {report.best_model}

Sea-ice type classifier ({report.best}, chosen by `model.select: {report.select}`) of seaice-dask.
Classes ({pipeline['class_scheme']}): {', '.join(f'{c} {n}' for c, n in zip(report.classes, report.class_names))}.

## Trained on
- {len(report.train_dates)} training dates, {report.train_dates[0] if report.train_dates else '—'} … {report.train_dates[-1] if report.train_dates else '—'}; {report.n_train} pixels {report.train_class_counts}; validation `{report.validation}` on {len(report.test_dates)} dates ({report.n_test} pixels)
- products {', '.join(pipeline['products']) or 'unknown'}, incidence {pipeline['incidence_range_deg'][0] or 0:.1f}–{pipeline['incidence_range_deg'][1] or 0:.1f}°
- grid {pipeline['grid']['crs']}, {pipeline['grid']['resolution_m']:g} m, bounds {pipeline['grid']['bounds']}
- preprocessing: denoise `{pre['denoise']}`, multilook {pre['multilook']}, textural noise {pre['textural_noise']}, incidence correction `{pre['incidence']['correction']}`
- texture: GLCM window {feat['window']}, {feat['levels']} levels, angles {feat['angles']}, features {feat['features']}
- inputs: {', '.join(report.feature_names)}

## Scores on the validation sample (against the chart labels)
Overall accuracy {best['overall_accuracy']:.3f}, kappa {best['kappa']:.3f}.

| class | precision | recall | F1 |
|---|---|---|---|
{rows}

Every learner trained (overall accuracy, kappa, single-thread prediction speed in M px/s):

| learner | OA | kappa | M px/s |
|---|---|---|---|
{learners}

## Intended use
Classify new Sentinel-1 EW GRD scenes of the same region and season with the same preprocessing
(`seaice-dask classify {models_dir.name} SCENE…`): scenes with other polarisations, another product
type or incidence angles outside the training range are refused. Labels come from operational ice
charts, which generalise polygons: treat maps as guidance for analysts, not as charts.

{MONTHS_MARK}
Written by `seaice-dask evaluate`.
"""
    return _write(models_dir / MODEL_CARD, text)


def add_monthly_scores(models_dir: str | Path, learner: str, per_month: dict[str, dict[str, Any]], reference: str) -> Path | None:
    """Put ``evaluate``'s per-month scores of the chosen ``learner`` into the card (if there is one)."""
    path = Path(models_dir) / MODEL_CARD
    if not path.is_file() or MONTHS_MARK not in (text := path.read_text()):
        return None
    rows = "\n".join(f"| {month} | {s['overall_accuracy']:.3f} | {s['kappa']:.3f} | {s['n']} |" for month, s in sorted(per_month.items()))
    table = (f"{MONTHS_MARK}\n{learner}, against the {reference}:\n\n| month | OA | kappa | pixels |\n|---|---|---|---|\n"
             f"{rows}\n")
    return _write(path, text[: text.index(MONTHS_MARK)] + table)
