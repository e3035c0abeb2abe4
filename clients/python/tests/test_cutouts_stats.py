"""Cutouts, original packets and ingest statistics. These routes are newer than the first
nodes: each test skips, saying so, when the node's /openapi.json does not list its route."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Dict, Set

import pytest

import lightkeeper
from helpers import KEY, candid_of
from lightkeeper import Client

CUTOUTS = "/v1/objects/{}/cutouts"
CUTOUT = "/v1/objects/{}/cutouts/{}/{}"
PACKET = "/v1/objects/{}/alerts/{}/packet"
STATS = "/v1/stats"
FITS_MAGIC = b"SIMPLE  ="
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def routes(client: Client) -> Set[str]:
    """The node's route templates, parameters blanked (``/v1/objects/{}/cutouts``)."""
    return {re.sub(r"\{[^}]*\}", "{}", p) for p in client.openapi().get("paths", {})}


def needs(routes: Set[str], *templates: str) -> None:
    missing = [t for t in templates if t not in routes]
    if missing:
        pytest.skip(f"this node's /openapi.json has no {', '.join(missing)} (an older lightkeeper binary)")


def test_cutouts_list(client: Client, seeded: Dict[str, Any], routes: Set[str]) -> None:
    needs(routes, CUTOUTS)
    stamps = client.cutouts(KEY)
    assert {s["alert_id"] for s in stamps} == {candid_of(f) for f in seeded["lightcurve_files"]}
    assert all(set(s["kinds"]) == {"science", "template", "difference"} for s in stamps)
    mjd_of = {a["alert_id"]: a["mjd"] for a in client.alerts(KEY)}
    assert all(abs(s["mjd"] - mjd_of[s["alert_id"]]) < 1e-6 for s in stamps)
    with pytest.raises(lightkeeper.NotFound):
        client.cutouts("ztf:ZTF99zzzzzzz")


# ZTF's own stamps write `SIMPLE  =  T` off its column, which astropy notes when it reads them.
@pytest.mark.filterwarnings("ignore:Found a SIMPLE card")
def test_cutout_fits_png_and_hdu(client: Client, seeded: Dict[str, Any], routes: Set[str]) -> None:
    needs(routes, CUTOUT)
    alert_id = candid_of(seeded["lightcurve_files"][0])
    for kind in ("science", "template", "difference"):
        data = client.cutout(KEY, alert_id, kind)
        assert data.startswith(FITS_MAGIC) and len(data) % 2880 == 0, kind
    # An int id is the same alert.
    assert client.cutout(KEY, int(alert_id), "science") == client.cutout(KEY, alert_id, "science", format="fits")
    assert client.cutout(KEY, alert_id, "difference", format="png").startswith(PNG_MAGIC)
    fits = pytest.importorskip("astropy.io.fits")
    hdu = client.cutout(KEY, alert_id, "science", as_hdu=True)
    assert isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))
    assert hdu.data is not None and hdu.data.ndim == 2 and hdu.data.shape[0] > 10
    with pytest.raises(ValueError):
        client.cutout(KEY, alert_id, "science", format="png", as_hdu=True)


def test_cutout_errors(client: Client, seeded: Dict[str, Any], routes: Set[str]) -> None:
    needs(routes, CUTOUT)
    with pytest.raises(lightkeeper.NotFound) as e:
        client.cutout(KEY, 1, "science")
    assert e.value.status == 404 and e.value.code in ("alert_not_found", "cutout_not_found")
    with pytest.raises(lightkeeper.LightkeeperError) as e2:
        client.cutout(KEY, candid_of(seeded["lightcurve_files"][0]), "nonsense")
    assert e2.value.status in (400, 404)


def test_lsst_cutouts(client: Client, seeded: Dict[str, Any], routes: Set[str]) -> None:
    needs(routes, CUTOUTS, CUTOUT)
    for key in seeded["lsst_keys"]:
        stamps = client.cutouts(key)
        assert len(stamps) == 1 and "science" in stamps[0]["kinds"]
        assert client.cutout(key, stamps[0]["alert_id"], "science").startswith(FITS_MAGIC)


def test_packet_is_the_original_bytes(client: Client, seeded: Dict[str, Any], routes: Set[str]) -> None:
    needs(routes, PACKET)
    for path in seeded["lightcurve_files"][:3]:
        assert client.packet(KEY, candid_of(path)) == path.read_bytes()
    for key in seeded["lsst_keys"]:
        (path,) = seeded["files"][key]
        (ans,) = seeded["accepted"][key]
        assert client.packet(key, ans["alert_id"]) == path.read_bytes()
    with pytest.raises(lightkeeper.NotFound):
        client.packet(KEY, 1)


def test_stats(client: Client, seeded: Dict[str, Any], routes: Set[str]) -> None:
    needs(routes, STATS)
    rows = client.stats()
    assert rows, "alerts were ingested within the default window"
    for r in rows:
        assert {"start", "survey", "band", "alerts", "new_objects", "detections", "dead_letters"} <= set(r)
        dt.datetime.fromisoformat(r["start"].replace("Z", "+00:00"))
    assert {"ztf", "lsst"} <= {r["survey"] for r in rows}
    assert sum(r["alerts"] for r in rows if r["survey"] == "ztf") >= 60
    starts = [r["start"] for r in rows]
    assert starts == sorted(starts)
    now = dt.datetime.now(dt.timezone.utc)
    hourly = client.stats(since=now - dt.timedelta(hours=2), until=int(now.timestamp() * 1000) + 60_000, step="hour")
    assert sum(r["alerts"] for r in hourly) == sum(r["alerts"] for r in rows)
    long_ago = client.stats(since=dt.datetime(2000, 1, 1), until=dt.datetime(2000, 1, 2), step="night")
    assert not any(r["alerts"] for r in long_ago)


def test_stats_as_pandas(client: Client, seeded: Dict[str, Any], routes: Set[str]) -> None:
    needs(routes, STATS)
    pd = pytest.importorskip("pandas")
    df = client.stats(step="night", as_="pandas")
    assert isinstance(df, pd.DataFrame) and len(df) >= 1
    assert str(df["start"].dt.tz) == "UTC"
    assert df.attrs["step"] == "night"
