"""REST reads, queries, errors and failover against a real node."""

from __future__ import annotations

import asyncio
import math
from typing import Any, Dict

import pytest

import lightkeeper
from helpers import KEY, Answer503, candid_of, free_port
from lightkeeper import AsyncClient, Client


def test_object_summary(client: Client, seeded: Dict[str, Any]) -> None:
    obj = client.object(KEY)
    assert obj["key"] == KEY
    assert obj["survey"] == "ztf"
    assert obj["object_id"] == "ZTF21abiuvdk"
    assert obj["n_alerts"] == 22
    # The data set's own count: 22 unique detections (one per alert) and 15 upper limits.
    assert obj["n_detections"] == 22
    assert obj["n_upper_limits"] == 15
    assert obj["n_forced"] == 0
    assert obj["version"] >= 1
    assert 0 <= obj["ra"] < 360 and -90 <= obj["dec"] <= 90
    assert abs(obj["ra"] - 0.8143) < 0.001 and abs(obj["dec"] - 16.1457) < 0.001
    assert obj["first_mjd"] <= obj["last_mjd"]
    assert set(obj["bands"]) == {"g", "r"}
    assert obj["bands"]["g"]["n_detections"] + obj["bands"]["r"]["n_detections"] == 22
    # The latest alert is the last of the 22 in time; ids are strings.
    assert isinstance(obj["latest_alert_id"], str)
    assert obj["latest_alert_id"] == candid_of(seeded["lightcurve_files"][-1])
    assert obj["solar_system"] is None


def test_lightcurve_points(client: Client, seeded: Dict[str, Any]) -> None:
    obj = client.object(KEY)
    points = client.lightcurve(KEY)
    assert len(points) == obj["n_detections"] + obj["n_upper_limits"] + obj["n_forced"] == 37
    mjds = [p["mjd"] for p in points]
    assert mjds == sorted(mjds)
    detections = client.lightcurve(KEY, kinds=["detection"])
    assert len(detections) == 22 and all(p["kind"] == "detection" for p in detections)
    # Every alert's own candidate is a detection of the light curve, by candid.
    assert {p["source_id"] for p in detections} == {candid_of(f) for f in seeded["lightcurve_files"]}
    limits = client.lightcurve(KEY, kinds="upper_limit")
    assert len(limits) == 15
    assert all(p["mag"] is None and p["limiting_mag"] is not None for p in limits)
    g = client.lightcurve(KEY, bands=["g"], kinds=["detection"])
    r = client.lightcurve(KEY, bands="r", kinds=["detection"])
    assert len(g) == len(r) == 11
    assert len(client.lightcurve(KEY, bands=["g", "r"], kinds=["detection", "upper_limit"])) == 37
    mid = mjds[len(mjds) // 2]
    since = client.lightcurve(KEY, since_mjd=mid)
    until = client.lightcurve(KEY, until_mjd=mid)
    assert since and all(p["mjd"] >= mid for p in since)
    assert until and all(p["mjd"] <= mid for p in until)
    assert len(since) + len(until) == len(points) + sum(1 for m in mjds if m == mid)


def test_lightcurve_as_pandas(client: Client, seeded: Dict[str, Any]) -> None:
    pd = pytest.importorskip("pandas")
    df = client.lightcurve(KEY, as_="pandas")
    assert isinstance(df, pd.DataFrame)
    assert len(df) == 37
    assert {"mjd", "band", "kind", "mag", "flux_njy", "limiting_mag", "source_id"} <= set(df.columns)
    assert (df["kind"] == "detection").sum() == 22
    assert df["mag"].isna().sum() == 15  # the upper limits have no magnitude
    assert df.attrs["key"] == KEY and df.attrs["version"] == client.object(KEY)["version"]
    # An empty selection still has the columns.
    empty = client.lightcurve(KEY, since_mjd=99999, as_="pandas")
    assert len(empty) == 0 and "mjd" in empty.columns


def test_lightcurve_as_astropy(client: Client, seeded: Dict[str, Any]) -> None:
    table_mod = pytest.importorskip("astropy.table")
    t = client.lightcurve(KEY, as_="astropy")
    assert isinstance(t, table_mod.Table)
    assert len(t) == 37
    assert str(t["mjd"].unit) == "d" and str(t["mag"].unit) == "mag"
    assert int(t["mag"].mask.sum()) == 15
    assert list(t["kind"]).count("detection") == 22
    assert t.meta["key"] == KEY


def test_lightcurve_bad_format(client: Client, seeded: Dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="as_"):
        client.lightcurve(KEY, as_="polars")


def test_alerts(client: Client, seeded: Dict[str, Any]) -> None:
    alerts = client.alerts(KEY)
    assert len(alerts) == 22
    assert {a["alert_id"] for a in alerts} == {candid_of(f) for f in seeded["lightcurve_files"]}
    offsets = {a["source"]["offset"] for a in alerts}
    assert {a["offset"] for a in seeded["accepted"][KEY]} == offsets


def test_forced_photometry_and_lsst(client: Client, seeded: Dict[str, Any]) -> None:
    boom = client.object(seeded["boom_key"])
    assert boom["n_forced"] > 0
    assert len(client.lightcurve(seeded["boom_key"], kinds=["forced"])) == boom["n_forced"]
    for key in seeded["lsst_keys"]:
        obj = client.object(key)
        assert obj["survey"] == "lsst" and obj["n_alerts"] == 1
        points = client.lightcurve(key)
        assert points and all(p["time_scale"] == "tai" for p in points)
    negatives = [p for k in seeded["lsst_keys"] for p in client.lightcurve(k, kinds="detection") if p["is_negative"]]
    assert negatives, "the v9.0 Rubin packet is a negative detection"


def test_cone(client: Client, seeded: Dict[str, Any]) -> None:
    obj = client.object(KEY)
    ra, dec = obj["ra"], obj["dec"]
    hits = client.cone(ra, dec, 5)
    assert [h["key"] for h in hits][:1] == [KEY]
    assert hits[0]["distance_arcsec"] < 0.01
    assert hits.missing_partitions == []
    distances = [h["distance_arcsec"] for h in hits]
    assert distances == sorted(distances)
    # One degree away, a one-arcminute cone does not find it.
    assert KEY not in {h["key"] for h in client.cone(ra, dec + 1.0, 60)}
    assert KEY not in {h["key"] for h in client.cone((ra + 1.0 / math.cos(math.radians(dec))) % 360, dec, 60)}
    # A filter narrows the cone.
    assert KEY in {h["key"] for h in client.cone(ra, dec, 5, where="n_detections >= 22")}
    assert client.cone(ra, dec, 5, where="survey = 'lsst'") == []
    assert len(client.cone(ra, dec, 3600, limit=1)) <= 1


def test_cone_radius_too_large(client: Client, seeded: Dict[str, Any]) -> None:
    with pytest.raises(lightkeeper.BadRequest) as e:
        client.cone(10, 10, 3601)
    assert e.value.status == 400


def test_query_pagination_every_match_once(client: Client, seeded: Dict[str, Any]) -> None:
    everything = client.query_page(limit=1000)
    assert everything.next_cursor is None
    assert {o["key"] for o in everything} == seeded["keys"]
    q = client.query(limit=4)
    keys = [o["key"] for o in q]
    assert len(keys) == len(set(keys)) == len(seeded["keys"])
    assert set(keys) == seeded["keys"]
    assert q.next_cursor is None
    pages = list(client.query(limit=4).pages())
    assert len(pages) >= math.ceil(len(seeded["keys"]) / 4)
    assert all(len(p) <= 4 for p in pages)
    assert pages[-1].next_cursor is None and all(p.next_cursor for p in pages[:-1])


def test_query_order_and_filter(client: Client, seeded: Dict[str, Any]) -> None:
    where = "survey = 'ztf' and n_detections >= 3"
    ordered = list(client.query(where, order="last_mjd desc", limit=3))
    assert ordered and all(o["survey"] == "ztf" and o["n_detections"] >= 3 for o in ordered)
    last = [o["last_mjd"] for o in ordered]
    assert last == sorted(last, reverse=True)
    single = client.query_page(where, order="last_mjd desc", limit=1000)
    assert [o["key"] for o in ordered] == [o["key"] for o in single]
    capped = list(client.query(limit=3, max_results=7))
    assert len(capped) == 7 and len({o["key"] for o in capped}) == 7


def test_query_page_by_hand(client: Client, seeded: Dict[str, Any]) -> None:
    page = client.query_page("survey = 'ztf'", limit=5)
    assert len(page) == 5 and page.next_cursor
    second = client.query_page("survey = 'ztf'", limit=5, cursor=page.next_cursor)
    assert not {o["key"] for o in page} & {o["key"] for o in second}


def test_fields(client: Client) -> None:
    fields = {f["name"]: f for f in client.fields()}
    for name in ("survey", "ra", "dec", "n_detections", "mag_g", "solar_system", "drb", "n_alerts"):
        assert name in fields
    assert all("type" in f and "description" in f for f in fields.values())


def test_cluster(client: Client) -> None:
    view = client.cluster()
    assert view["partitions"] and all(p["role"] == "master" for p in view["partitions"])


def test_unknown_object_is_not_found(client: Client, seeded: Dict[str, Any]) -> None:
    with pytest.raises(lightkeeper.NotFound) as e:
        client.object("ztf:ZTF99zzzzzzz")
    assert e.value.status == 404 and e.value.code == "object_not_found"
    assert isinstance(e.value, lightkeeper.LightkeeperError)
    assert "ZTF99zzzzzzz" in e.value.message
    with pytest.raises(lightkeeper.NotFound):
        client.lightcurve("ztf:ZTF99zzzzzzz")


def test_bad_filter_is_bad_request(client: Client, seeded: Dict[str, Any]) -> None:
    with pytest.raises(lightkeeper.BadFilter) as e:
        list(client.query("n_detections >= "))
    assert isinstance(e.value, lightkeeper.BadRequest)
    assert e.value.status == 400 and e.value.code == "bad_filter"
    assert "position" in e.value.message
    with pytest.raises(lightkeeper.BadRequest) as e2:
        client.query_page("no_such_field = 1")
    assert e2.value.code == "bad_filter" and "no_such_field" in e2.value.message
    with pytest.raises(lightkeeper.BadFilter):
        client.cone(1, 1, 10, where="mag_g < 'bright'")


def test_bad_key_and_bad_packet(client: Client) -> None:
    with pytest.raises(lightkeeper.BadRequest) as e:
        client.object("not-a-key")
    assert e.value.code == "invalid_key"
    with pytest.raises(lightkeeper.BadRequest) as e2:
        client.ingest(b"this is not an alert packet")
    assert e2.value.status == 400


def test_failover_to_live_node(node: Any, seeded: Dict[str, Any]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with Client([dead, node.url]) as c:
        assert c.object(KEY)["n_alerts"] == 22
        assert c.url == node.url  # it stays on the node that answered
        assert len(c.lightcurve(KEY)) == 37
        # A write whose connection was refused is sent on too.
        with pytest.raises(lightkeeper.BadRequest):
            c.ingest(b"garbage")


def test_failover_past_503(node: Any, seeded: Dict[str, Any]) -> None:
    draining = Answer503()
    try:
        with Client([draining.url, node.url]) as c:
            assert c.object(KEY)["key"] == KEY
        with Client(draining.url) as alone:
            with pytest.raises(lightkeeper.Unavailable) as e:
                alone.object(KEY)
            assert e.value.status == 503 and e.value.code == "unavailable"
    finally:
        draining.close()


def test_every_node_down() -> None:
    urls = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    with Client(urls) as c:
        with pytest.raises(lightkeeper.ConnectionFailed) as e:
            c.object(KEY)
    assert e.value.status == 0 and e.value.code == "network_error"
    assert urls[0] in e.value.message and urls[1] in e.value.message


def test_async_client(node: Any, seeded: Dict[str, Any]) -> None:
    async def main() -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        async with AsyncClient([dead, node.url]) as c:
            obj, points = await asyncio.gather(c.object(KEY), c.lightcurve(KEY, kinds=["detection"]))
            assert obj["n_alerts"] == 22 and len(points) == 22
            keys = [o["key"] async for o in c.query(limit=5)]
            assert sorted(keys) == sorted(seeded["keys"])
            hits = await c.cone(obj["ra"], obj["dec"], 5)
            assert hits[0]["key"] == KEY
            with pytest.raises(lightkeeper.NotFound):
                await c.object("ztf:ZTF99zzzzzzz")
            with pytest.raises(lightkeeper.BadFilter):
                await c.query_page("(")

    asyncio.run(main())
