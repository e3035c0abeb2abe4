"""Checks a light curve's VOTable and its extra time columns against astropy, an independent
reader and time library: `check_votable.py LIGHTCURVE.votable LIGHTCURVE.json`.

The JSON is the same light curve asked for with `times=jd,iso`. Exits non-zero with the reason
on the first mismatch; prints a JSON summary (rows, units) on success.
"""
import json
import math
import sys

from astropy.io.votable import parse_single_table
from astropy.time import Time

votable_path, json_path = sys.argv[1], sys.argv[2]
table = parse_single_table(votable_path).to_table()
lc = json.load(open(json_path))
points = lc["points"]
assert len(table) == len(points), f"{len(table)} rows for {len(points)} points"


def same(a, b):
    if b is None:
        return a is None or (hasattr(a, "mask") and bool(a.mask)) or (isinstance(a, float) and math.isnan(a))
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))


for i, (row, p) in enumerate(zip(table, points)):
    for col in ["mjd", "flux_njy", "flux_err_njy", "mag", "mag_err", "limiting_mag", "jd"]:
        v = row[col]
        v = None if getattr(v, "mask", False) is True else v
        assert same(v, p.get(col)), f"row {i} {col}: votable {row[col]!r}, json {p.get(col)!r}"
    for col in ["band", "kind", "time_scale", "iso_utc"]:
        assert str(row[col]) == p[col], f"row {i} {col}: votable {row[col]!r}, json {p[col]!r}"
    assert abs(p["jd"] - (p["mjd"] + 2400000.5)) < 1e-6, f"row {i}: jd {p['jd']} for mjd {p['mjd']}"
    # The UTC time of the point's MJD in its own scale (TAI for LSST), by astropy.
    expected = Time(p["mjd"], format="mjd", scale=p["time_scale"]).utc
    got = Time(p["iso_utc"].rstrip("Z"), format="isot", scale="utc")
    diff = abs((got - expected).sec)
    assert diff < 1e-3, f"row {i}: iso_utc {p['iso_utc']} is {diff} s from astropy's {expected.isot}"

print(json.dumps({"rows": len(table), "units": {c: str(table[c].unit) for c in table.colnames}}))
