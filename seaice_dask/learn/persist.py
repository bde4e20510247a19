"""Model files: a fitted pipeline plus the metadata needed to use it safely.

Format: skops (``.skops``), not pickle. Loading a pickle runs arbitrary code; a skops file only
rebuilds objects of types the loader is told to trust. Trust model:

* types from scikit-learn, NumPy, SciPy and Python builtins are trusted (they are what our
  pipelines are made of);
* any other type in a file is refused with :class:`~seaice_dask.errors.ModelError` listing the
  types, unless the caller passes them in ``trusted`` after inspecting the file (e.g. with
  ``skops.io.get_untrusted_types(file=...)``);
* a model is usable only on the inputs it was trained on: the stored feature names (order
  included) must equal those of the cube, else loading fails with ``ModelError``.

* a model is usable only on inputs with the radiometric corrections it was trained with
  (incidence-angle correction and its slopes, textural noise correction: the cube's attrs, see
  :func:`radiometry_of`): pass ``radiometry`` to both functions and loading refuses a mismatch.

Each file also records the classes, the grid, the learner, the training dates and the versions of
the libraries it was written with (a different scikit-learn version is reported as a warning).
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from seaice_dask.errors import ModelError

SUFFIX = ".skops"
FORMAT = "seaice-dask-model/1"
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


def library_versions() -> dict[str, str]:
    out = {}
    for pkg in ("seaice-dask", "scikit-learn", "numpy", "scipy", "skops", "dask", "dask-ml"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def radiometry_of(cube_attrs: dict[str, Any]) -> dict[str, Any]:
    """The radiometric corrections a cube's values were made with (from its global attrs);
    cubes from before these were recorded count as uncorrected."""
    from seaice_dask.preprocess.incidence import ATTR, IncidenceCorrection

    incidence = IncidenceCorrection.from_attrs(cube_attrs.get(ATTR)).to_attrs()
    incidence.pop("source", None)
    return {"incidence_correction": incidence, "textural_noise": bool(cube_attrs.get("textural_noise", False))}


def save_model(
    model: Any,
    path: str | Path,
    *,
    learner: str,
    feature_names: Sequence[str],
    classes: Sequence[int],
    grid: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    radiometry: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` with its metadata to ``path`` (atomically: temp name, then rename).

    ``radiometry``: :func:`radiometry_of` the training cube (default: uncorrected inputs).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT,
        "learner": learner,
        "feature_names": [str(f) for f in feature_names],
        "classes": [int(c) for c in classes],
        "grid": dict(grid or {}),
        "radiometry": radiometry or radiometry_of({}),
        "versions": library_versions(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        import skops.io as sio  # here: importing skops imports all of scikit-learn (seconds)

        sio.dump({"model": model, "metadata": metadata}, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_model(
    path: str | Path,
    *,
    feature_names: Sequence[str] | None = None,
    trusted: Sequence[str] = (),
    radiometry: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Load ``(model, metadata)``; refuse untrusted types and, when given, other feature names
    or inputs made with other radiometric corrections (``radiometry``, see :func:`radiometry_of`)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError("model file not found (run `seaice-dask train` first)", path)
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # corrupt zip / not a skops file
        raise ModelError(f"not a readable skops model file: {exc}", path) from exc
    refused = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES) and t not in trusted]
    if refused:
        raise ModelError(
            f"refusing to load untrusted types {refused}; inspect the file and pass them as "
            "`trusted` only if you trust its origin", path,
        )
    try:
        content = sio.load(path, trusted=list(untrusted))
    except Exception as exc:
        raise ModelError(f"cannot load model: {exc}", path) from exc
    if not isinstance(content, dict) or content.get("metadata", {}).get("format") != FORMAT:
        raise ModelError(f"not a seaice-dask model file (expected format {FORMAT})", path)
    model, metadata = content["model"], content["metadata"]
    if feature_names is not None and list(feature_names) != list(metadata["feature_names"]):
        stored, wanted = metadata["feature_names"], list(feature_names)
        raise ModelError(
            "the model was trained on other inputs than the cube provides: "
            f"missing {sorted(set(stored) - set(wanted))}, unexpected {sorted(set(wanted) - set(stored))}"
            + ("" if set(stored) != set(wanted) else ", same names in another order"),
            path,
        )
    trained_with = metadata.get("radiometry", radiometry_of({}))
    if radiometry is not None and radiometry != trained_with:
        from seaice_dask.preprocess.radiometry import Radiometry

        trained, given = Radiometry.of_attrs(trained_with), Radiometry.of_attrs(radiometry)
        slopes = "" if trained.differs(given) else " (the same method with other estimated slopes)"
        raise ModelError(
            f"the model was trained on inputs made with {trained.describe()}; this cube's were made with "
            f"{given.describe()}{slopes}. Retrain on this cube (seaice-dask train), or predict on a cube "
            f"ingested with the model's settings: {trained.as_config()} (a new store path, paths.store)",
            path,
        )
    saved = metadata.get("versions", {}).get("scikit-learn")
    current = library_versions()["scikit-learn"]
    if saved and saved != current:
        warnings.warn(
            f"{path}: written with scikit-learn {saved}, loading with {current}; predictions may differ",
            UserWarning, stacklevel=2,
        )
    return model, metadata
