"""Rebuild the trimmed real fixtures of this folder from the untrimmed public files.

Run by hand, never by the tests: ``python tests/data/make_fixtures.py SOURCE [DEST]``, where
SOURCE holds the public files in the layout of the table in ``SOURCES.md`` (one folder per
source repository) and DEST defaults to this folder. What is trimmed, and why each test still
sees the property it checks, is written in ``SOURCES.md``.
"""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

import geopandas as gpd
import shapely
from lxml import etree

EW = "S1A_EW_GRDM_1SDH_20221130T014342_20221130T014446_046117_058549_BB15"
SARSEN = "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
PYROSAR = (
    "S1A_IW_GRDH_1SDV_20150203T043109_20150203T043134_004454_00574F_6D00.zip",
    "S1A_IW_GRDH_1SDV_20150222T170750_20150222T170815_004739_005DD8_3768.zip",
    "S1A_IW_GRDH_1SDV_20210119T031653_20210119T031718_036201_043ED0_8255.zip",
)
CIS = "cis_SGRDREA_20201102T.gpkg"
#: The Baffin Bay box of tests/test_charts.py (EPSG:32626) and the margin kept exact around it.
BAFFIN_BOUNDS, BAFFIN_MARGIN_M = (-1_200_000.0, 8_700_000.0, -700_000.0, 9_200_000.0), 50_000.0
#: Polygons whose exact outline a chart test uses outside the box (the bow-tie repair test).
CIS_KEEP_EXACT = (356, 382)
CIS_SIMPLIFY_M = 5_000.0
#: Lon/lat box kept of Natural Earth land: the Denmark Strait grid of tests/test_landmask.py with margin.
NE_BOX = (-45.0, 60.0, -10.0, 75.0)


def trim_annotation(data: bytes) -> bytes:
    """Keep the first antenna pattern of each subswath (no reader uses them; they are 3/4 of the
    file), as the simulator's template does; the file still validates against its XSD."""
    root = etree.fromstring(data)
    patterns = root.find("antennaPattern/antennaPatternList")
    seen: set[str] = set()
    for pattern in list(patterns):
        swath = pattern.findtext("swath")
        if swath in seen:
            patterns.remove(pattern)
        seen.add(swath)
    patterns.set("count", str(len(patterns)))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _is_annotation(name: str) -> bool:
    return "/annotation/" in f"/{name}" and "/calibration/" not in name and "/rfi/" not in name and name.endswith(".xml")


def copy_safe_dir(src: Path, dst: Path, keep: tuple[str, ...]) -> None:
    """Copy the files under ``keep`` (relative folders or files), trimming annotation XML."""
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src).as_posix()
        if not any(rel == k or rel.startswith(k + "/") for k in keep):
            continue
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(trim_annotation(path.read_bytes()) if _is_annotation(rel) else path.read_bytes())


def rebuild_zip(src: Path, dst: Path) -> None:
    """Same members in the same order, without the quick-look, icons and PDF report;
    annotation XML trimmed; still no measurement files."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
        for info in zin.infolist():
            inner = info.filename.split(".SAFE/", 1)[-1]
            if inner.startswith("preview/") or inner.endswith(".pdf"):
                continue
            data = zin.read(info)
            zout.writestr(info, trim_annotation(data) if _is_annotation(inner) else data, zipfile.ZIP_DEFLATED, 9)


def trim_chart(src: Path, dst: Path) -> None:
    """All 432 polygons and attributes; outlines exact (clipped to a margin box) near the test
    box, and for the polygons a test reshapes; simplified by 5 km elsewhere."""
    import pyogrio

    layer = pyogrio.list_layers(src)[0][0]
    chart = gpd.read_file(src, layer=layer)
    box = shapely.segmentize(shapely.box(*BAFFIN_BOUNDS), 2000.0)
    area = gpd.GeoSeries([box], crs="EPSG:32626").to_crs(chart.crs).iloc[0].buffer(BAFFIN_MARGIN_M)
    near = chart.intersects(area).to_numpy()
    exact = chart["ID_NEW"].isin(CIS_KEEP_EXACT).to_numpy()
    geoms = chart.geometry.to_numpy().copy()
    geoms[near] = shapely.clip_by_rect(geoms[near], *area.bounds)
    far = ~near & ~exact
    geoms[far] = shapely.simplify(geoms[far], CIS_SIMPLIFY_M, preserve_topology=True)
    chart = chart.set_geometry(gpd.GeoSeries(geoms, index=chart.index, crs=chart.crs))
    assert chart.is_valid.all() and not chart.is_empty.any()
    chart.to_file(dst, layer=layer, driver="GPKG", engine="pyogrio")


def clip_land(src: Path, dst: Path, bounds: tuple[float, float, float, float]) -> None:
    land = gpd.read_file(src, bbox=bounds)
    land = land.set_geometry(shapely.make_valid(shapely.clip_by_rect(land.geometry.to_numpy(), *bounds)))
    land[~land.is_empty].to_file(dst, engine="pyogrio")


def main(source: Path, dest: Path) -> None:
    s1, charts, land, licences = (dest / d for d in ("sentinel1", "charts", "land", "licences"))
    for folder in (s1, charts, land, licences):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    ew = source / "stactools-sentinel1" / "grd" / EW
    copy_safe_dir(ew, s1 / EW, ("manifest.safe", "productInfo.json", "annotation", "measurement", "support"))
    copy_safe_dir(source / "sarsen" / "data" / SARSEN, s1 / SARSEN, ("manifest.safe", "annotation"))
    for name in PYROSAR:
        rebuild_zip(source / "pyroSAR" / "data" / name, s1 / name)
    trim_chart(source / "icechart-cis" / "extdata" / CIS, charts / CIS)
    clip_land(source / "naturalearth-RSK600" / "data" / "ne_50m_land" / "ne_50m_land.shp", land / "ne_50m_land.shp", NE_BOX)
    gshhg = source / "gshhg-fbriol" / "GSHHS_shp"
    for suffix in (".shp", ".shx", ".dbf", ".prj"):
        shutil.copyfile(gshhg / "c" / f"GSHHS_c_L1{suffix}", land / f"GSHHS_c_L1{suffix}")
    for src, name in (
        (source / "stactools-sentinel1" / "LICENSE", "stactools-sentinel1.LICENSE"),
        (source / "sarsen" / "LICENSE", "sarsen.LICENSE"),
        (source / "pyroSAR" / "LICENSE.txt", "pyroSAR.LICENSE"),
        (source / "icechart-cis" / "LICENSE", "IceChaRt.LICENSE"),
        (source / "gshhg-fbriol" / "LICENSE", "gshhg-fbriol.LICENSE"),
        (gshhg / "LICENSE.TXT", "GSHHG.LICENSE"),
        (gshhg / "COPYING.LESSERv3", "GSHHG.COPYING.LESSERv3"),
    ):
        shutil.copyfile(src, licences / name)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else Path(__file__).resolve().parent)
