"""The pipeline configuration: one YAML file, validated on load.

Unknown keys and wrong types raise :class:`~seaice_dask.errors.ConfigError` naming the key and
the file. Relative paths are resolved against the folder of the config file. The documented
example is ``seaice_dask/example-config.yaml`` (``seaice-dask demo`` writes one next to its
outputs).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator

from seaice_dask.errors import ConfigError
from seaice_dask.grid import DENMARK_STRAIT_BOUNDS, Grid

EXAMPLE_CONFIG = Path(__file__).with_name("example-config.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


#: ``storage_options`` keys (at any depth) that hold credentials: never dumped, logged or printed.
CREDENTIAL_KEYS = frozenset({"key", "secret", "token", "password", "session_token", "aws_access_key_id",
                             "aws_secret_access_key", "aws_session_token"})


def is_url(path: object) -> bool:
    """An object-storage URL (``s3://bucket/key``) rather than a local path."""
    return isinstance(path, str) and path.startswith("s3://")


def without_credentials(options: Any) -> Any:
    """``options`` with every credential key removed (nested mappings included)."""
    if isinstance(options, dict):
        return {k: without_credentials(v) for k, v in options.items() if str(k).lower() not in CREDENTIAL_KEYS}
    return options


class PathsConfig(_Section):
    workdir: Path = Path(".")
    scenes: list[str] = Field(default_factory=lambda: ["scenes/*.zip", "scenes/*.SAFE"])
    charts: list[str] = Field(default_factory=lambda: ["charts/*.zip"])
    store: Path | str = Path("cube.zarr")  # a local path, or an s3:// URL (a str)
    # fsspec/s3fs options of an s3:// store (endpoint_url, key, secret, client_kwargs, …); empty: the
    # AWS variables. Credentials in it are never dumped or shown (see CREDENTIAL_KEYS).
    storage_options: dict[str, Any] = Field(default_factory=dict, repr=False)
    models: Path = Path("models")
    reports: Path = Path("reports")
    land: Path | None = None  # land polygons; None = the file shipped with the package

    @field_validator("store", mode="before")
    @classmethod
    def _url_or_path(cls, v: Any) -> Any:
        if isinstance(v, str) and "://" in v:
            if not is_url(v):
                raise ValueError(f"{v!r}: only s3:// URLs (or local paths) are supported")
            return v
        return Path(v) if isinstance(v, str) else v

    @field_serializer("storage_options")
    def _no_credentials(self, options: dict[str, Any]) -> dict[str, Any]:
        return without_credentials(options)


class GridConfig(_Section):
    crs: str = "EPSG:32626"
    resolution_m: float = Field(80.0, gt=0)
    bounds: tuple[float, float, float, float] | None = DENMARK_STRAIT_BOUNDS  # None: union of footprints
    chunk: int = Field(512, gt=0)

    def to_grid(self) -> Grid:
        if self.bounds is None:
            raise ConfigError("grid.bounds is null: derive the grid from the scene footprints")
        return Grid.from_bounds(self.crs, self.bounds, self.resolution_m)


class DatesConfig(_Section):
    start: dt.date | None = None
    end: dt.date | None = None


class IncidenceConfig(_Section):
    correction: Literal["none", "linear", "class"] = "class"  # class: per surface type (GIA), estimated
    reference_deg: float = Field(35.0, ge=0, le=90)
    slopes_db_per_deg: dict[Literal["hh", "hv", "vv", "vh"], float] | None = None  # None: estimated


class PreprocessConfig(_Section):
    denoise: Literal["esa", "nersc", "none"] = "nersc"
    polarisations: list[Literal["HH", "HV", "VV", "VH"]] = Field(default_factory=lambda: ["HH", "HV"])
    multilook: int = Field(2, ge=1)
    resampling: Literal["bilinear", "average"] = "bilinear"
    land_buffer_m: float = Field(0.0, ge=0)
    engine: Literal["native", "snap"] = "native"
    incidence: IncidenceConfig = Field(default_factory=IncidenceConfig)
    textural_noise: bool = True  # cross-pol textural noise correction (Park et al. 2019)
    assemble_passes: bool = True  # slices of one pass -> one time step (false: one per product)

    @model_validator(mode="after")
    def _snap_is_plain(self) -> PreprocessConfig:
        """SNAP's graph removes ESA's noise and nothing else: refuse the seed's corrections (the
        defaults) with it at load, not after the incidence pre-pass."""
        if self.engine == "snap" and (self.denoise == "nersc" or self.textural_noise or self.incidence.correction != "none"):
            raise ValueError("engine: snap does plain ESA processing only; with it set denoise: esa (or none), "
                             "textural_noise: false and incidence: {correction: none} (the defaults need engine: native)")
        return self


class ChartsConfig(_Section):
    scheme: Literal["sod4", "ai4arctic"] = "sod4"
    dominance: float = Field(0.65, gt=0, le=1)
    water_ct_max: float = Field(10.0, ge=0, le=100)  # total concentration (%) below which: water
    max_days: float = Field(4.0, ge=0)
    erosion_m: float = Field(0.0, ge=0)
    crs: str | None = None  # CRS for charts without a .prj
    dates: dict[str, dt.date] = Field(default_factory=dict)  # explicit file name → chart date


class FeaturesConfig(_Section):
    window: int = Field(11, ge=3)
    levels: int = Field(32, ge=2, le=256)
    distances: list[int] = Field(default_factory=lambda: [1])
    angles: list[int] = Field(default_factory=lambda: [0, 45, 90, 135])
    features: list[str] = Field(
        default_factory=lambda: ["contrast", "homogeneity", "ASM", "correlation", "entropy"]
    )
    quantizer: Literal["linear", "equalprob"] = "linear"
    ranges_db: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {"hh": (-30.0, 0.0), "hv": (-35.0, -5.0)}
    )
    mode: Literal["standard", "snap"] = "standard"

    @field_validator("window")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("window must be odd")
        return v


class ModelConfig(_Section):
    learners: list[Literal["sgd", "mlp", "gnb", "rf", "hgb", "svm"]] = Field(
        default_factory=lambda: ["sgd", "mlp", "gnb", "rf", "hgb"]
    )
    inputs: list[str] = Field(
        default_factory=lambda: ["glcm_hh", "glcm_hv", "sigma0_hh", "sigma0_hv", "incidence"]
    )
    cap_per_class: int = Field(20_000, gt=0)
    balanced: bool = True
    validation: Literal["temporal", "random"] = "temporal"
    test_fraction: float = Field(0.33, gt=0, lt=1)
    seed: int = 0
    smoothing_m: float = Field(0.0, ge=0)  # average class probabilities over this window (metres)
    select: Literal["accuracy", "balanced"] = "balanced"  # how train picks the model predict uses
    select_min_px_per_s: float = Field(1e6, ge=0)  # balanced: most accurate of the learners this fast (1 thread)
    eval_sample_per_class: int | None = Field(100_000, gt=0)  # other learners' test sample; null = all pixels
    eval_full_maps: bool = False  # classify the full test maps with every learner (slow)


class ExportConfig(_Section):
    probabilities: bool = True  # also write proba_<date>.tif (one band per class)


class TLSConfig(_Section):
    ca_file: Path
    cert: Path
    key: Path


class ClusterConfig(_Section):
    kind: Literal["local", "address", "slurm", "pbs", "kubernetes", "ssh"] = "local"
    address: str | None = None  # tcp://host:8786 or tls://…; also DASK_SCHEDULER_ADDRESS
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "4GiB"
    hosts: list[str] = Field(default_factory=list)  # ssh: first host runs the scheduler
    tls: TLSConfig | None = None
    dashboard: bool = True
    image: str | None = None  # kubernetes: container image with seaice-dask (deployments/docker)


class SimulateConfig(_Section):
    enabled: bool = False
    n_scenes: int = Field(29, ge=1)
    start: dt.date = dt.date(2020, 10, 5)
    end: dt.date = dt.date(2021, 3, 22)
    size: Literal["full", "small"] = "small"
    product: Literal["GRDM", "GRDH"] = "GRDM"
    seed: int = 0
    slices_per_pass: int = Field(1, ge=1)  # each pass written as this many slice products
    orbits: list[int] | None = Field(default_factory=lambda: [24], min_length=1)  # relative orbits; None: nearest tracks
    # pass centres [[lon, lat], …] (one per orbit) or "scatter" (over the grid); None: the grid centre
    centres: list[tuple[float, float]] | Literal["scatter"] | None = None


class CdseConfig(_Section):
    catalogue_url: str = "https://catalogue.dataspace.copernicus.eu/odata/v1"
    download_url: str = "https://download.dataspace.copernicus.eu/odata/v1"
    token_url: str = "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token"
    page_size: int = Field(100, ge=1, le=1000)


class AsfConfig(_Section):
    search_host: str = "cmr.earthdata.nasa.gov"  # CMR search API (asf_search's host option)
    edl_host: str = "urs.earthdata.nasa.gov"  # Earthdata Login
    auth_host: str = "cumulus.asf.alaska.edu"


class ChartDownloadConfig(_Section):
    enabled: bool = True
    url_template: str = "https://usicecenter.gov/File/DownloadArchive?prd=26{date:%m%d%Y}"
    weekday: int = Field(0, ge=0, le=6)  # NIC weekly Arctic charts: 0 = Monday


class DownloadConfig(_Section):
    provider: Literal["cdse", "asf"] = "cdse"
    relative_orbit: int | None = Field(None, ge=1, le=175)
    mode: Literal["EW", "IW", "SM"] = "EW"
    product: list[Literal["GRDM", "GRDH"]] = Field(default_factory=lambda: ["GRDM", "GRDH"], min_length=1)
    aoi: str | None = None  # WKT or GeoJSON in lon/lat; None = the grid bounds
    max_concurrent: int = Field(2, ge=1, le=16)
    retries: int = Field(5, ge=0)
    backoff_s: float = Field(2.0, ge=0)
    timeout_s: float = Field(60.0, gt=0)
    cdse: CdseConfig = Field(default_factory=CdseConfig)
    asf: AsfConfig = Field(default_factory=AsfConfig)
    charts: ChartDownloadConfig = Field(default_factory=ChartDownloadConfig)


class PipelineConfig(_Section):
    name: str = "seaice-dask"
    paths: PathsConfig = Field(default_factory=PathsConfig)
    grid: GridConfig = Field(default_factory=GridConfig)
    dates: DatesConfig = Field(default_factory=DatesConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    charts: ChartsConfig = Field(default_factory=ChartsConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    download: DownloadConfig = Field(default_factory=DownloadConfig)

    def resolve(self, base: Path) -> PipelineConfig:
        """Return a copy whose paths are absolute, relative ones taken from ``base``."""
        cfg = self.model_copy(deep=True)
        p = cfg.paths
        p.workdir = (base / p.workdir).resolve()
        for name in ("store", "models", "reports", "land"):
            value = getattr(p, name)
            if isinstance(value, Path) and not value.is_absolute():
                setattr(p, name, p.workdir / value)
        return cfg

    def path(self, pattern: str) -> Path:
        """A path or glob pattern from the config, relative to ``paths.workdir``."""
        q = Path(pattern).expanduser()
        return q if q.is_absolute() else self.paths.workdir / q


def _location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "<top level>"


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a YAML pipeline config; paths come back absolute."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path) from exc
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping of sections", path)
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_location(err['loc'])}: "
            + ("unknown key" if err["type"] == "extra_forbidden" else err["msg"])
            for err in exc.errors()
        )
        raise ConfigError(problems, path) from None
    return cfg.resolve(path.parent)


def dump_config(cfg: PipelineConfig, path: str | Path) -> Path:
    """Write ``cfg`` as YAML (atomically); ``load_config`` reads it back unchanged, except for the
    credentials in ``paths.storage_options``, which are never written (they come back from the
    AWS variables)."""
    path = Path(path)
    data = cfg.model_dump(mode="json")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)
    return path
