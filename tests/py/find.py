"""Reference answers for Lightkeeper's cone-search and filter queries, for end-to-end tests.

This is an INDEPENDENT implementation, written from the specification only (not from the Rust
code): it decodes the raw alert packets with fastavro, builds one summary per object key from
all of that key's alerts, parses and evaluates the filter language itself, and answers the
queries, so the tests can compare the server's answers with ones it did not compute.

usage: find.py SCHEMA_DIR QUERIES_JSON FILE...
  SCHEMA_DIR    the LSST schema directory (for alerts.lsst_schemas)
  QUERIES_JSON  a JSON list of queries, each one of
                  {"kind": "cone", "ra": d, "dec": d, "radius_arcsec": r, "where": F?}
                      -> [[key, distance_arcsec], ...] sorted by (distance, key)
                  {"kind": "where", "where": F?, "order": "field [asc|desc]"?}
                      -> [key, ...]; objects whose order field is null are left out
                  {"kind": "fields"} -> {key: {field: value}} (debugging)
  FILE...       alert packets, one alert per file (ZTF containers or LSST wire format)
Prints a JSON list with one answer per query; a filter or order that does not parse, names
an unknown field or mixes types gives {"error": "..."} instead.

Decisions where the specification is silent:
- Files are taken in command-line order; a second file with an alert id already seen for the
  key is ignored entirely (first one wins). A point seen in several alerts keeps the first
  values seen.
- LSST solar_system: the orbit record's designation (mpc_orbits in v10+, MPCORB in v8/v9),
  else the first nonzero ssObjectId of diaSource, ssSource (v8+) or ssObject (v3-v7).
- ZTF forced photometry: a null procstatus counts as absent (kept). Every point of any kind
  (LSST forced and upper limits too) needs a finite time and a band in u g r i z y.
- Integer literals are compared exactly with integer fields (no rounding through float64).
- A "where" that is an empty string is a parse error; an absent or null one means no filter.
"""
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import alerts  # noqa: E402

BANDS = "ugrizy"
ZTF_BAND = {1: "g", 2: "r", 3: "i"}
MJD_JD = 2400000.5
MAG_ERR = 1.0857362047581296
ZTF_FLOATS = ("drb", "rb", "sgscore1", "distpsnr1", "ssdistnr", "ssmagnr", "distnr", "magnr",
              "fwhm", "elong")

# Every field of the summary with its filter-language type: str, num (number or integer), bool.
TYPES = {f: "str" for f in ("key", "survey", "object_id", "solar_system")}
TYPES.update({f: "num" for f in (
    "ra", "dec", "first_mjd", "last_mjd", "n_detections", "n_upper_limits", "n_forced",
    "n_alerts", "version", "latest_alert_id", "solar_system_distance", *ZTF_FLOATS,
    "ndethist", "nbad", "reliability", "snr", "psfFlux", "extendedness")})
for _b in BANDS:
    TYPES.update({f"{f}_{_b}": "num" for f in (
        "mag", "mag_err", "flux", "first_mjd", "last_mjd", "n_detections")})
TYPES["isdiffpos"] = "bool"


# ---------------------------------------------------------------- reading one alert

def num(v):
    """A finite int/float, else None (NaN, inf, null, non-numbers)."""
    ok = isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and math.isfinite(v)
    return v if ok else None


def ztf_num(v):
    """A ZTF float field: -999.0 is the 'no value' sentinel."""
    v = num(v)
    return None if v == -999 else v


def pick(d, *names):
    """d[name] for the first name the record has (schema renames), else None."""
    return next((d[n] for n in names if d is not None and n in d), None)


def point(kind, ident, t, band, mag=None, err=None, flux=None):
    return {"kind": kind, "id": ident, "t": t, "band": band, "mag": mag, "err": err, "flux": flux}


def ztf_time_band(p):
    t, fid = num(p.get("jd")), p.get("fid")
    if t is None or fid not in ZTF_BAND:
        return None, None
    return t - MJD_JD, ZTF_BAND[fid]


def ztf_detection(p, ident):
    t, band = ztf_time_band(p)
    mag = num(p.get("magpsf"))
    if t is None or mag is None:
        return None
    flux = 10 ** (-0.4 * (mag - 31.4))
    if p.get("isdiffpos") in ("f", "0"):
        flux = -flux
    return point("det", ident, t, band, mag, num(p.get("sigmapsf")), flux)


def ztf_forced(p):
    t, band = ztf_time_band(p)
    status = p.get("procstatus")
    if status is not None and str(status).strip() != "0":
        return None
    f = num(p.get("forcediffimflux"))
    if t is None or f is None or f == -99999 or num(p.get("magzpsci")) is None:
        return None
    return point("fp", (t, band), t, band)


def read_ztf(rec):
    c = rec["candidate"]
    aid = rec.get("candid") or c.get("candid")
    t = num(c.get("jd"))
    pts = [ztf_detection(c, c.get("candid") or aid)]
    for p in rec.get("prv_candidates") or []:
        if "forcediffimflux" in p:
            pts.append(ztf_forced(p))
        elif p.get("candid") is not None:
            pts.append(ztf_detection(p, p["candid"]))
        else:
            pt, band = ztf_time_band(p)
            pts.append(point("ul", (pt, band), pt, band) if pt is not None else None)
    pts += [ztf_forced(p) for p in rec.get("fp_hists") or []]
    ss = c.get("ssnamenr")
    ss = ss.strip() if isinstance(ss, str) else None
    diffpos = c.get("isdiffpos")
    fields = {f: ztf_num(c.get(f)) for f in ZTF_FLOATS}
    fields.update(
        solar_system=None if not ss or ss.lower() == "null" else ss,
        solar_system_distance=fields["ssdistnr"], reliability=fields["rb"],
        ndethist=num(c.get("ndethist")), nbad=num(c.get("nbad")),
        isdiffpos=True if diffpos in ("t", "1") else False if diffpos in ("f", "0") else None)
    return {"survey": "ztf", "id": aid, "t": None if t is None else t - MJD_JD,
            "ra": num(c.get("ra")), "dec": num(c.get("dec")), "points": pts, "fields": fields}


def lsst_time_band(s):
    t = num(pick(s, "midpointMjdTai", "midPointTai"))
    band = pick(s, "band", "filterName")
    return (t, band) if t is not None and band in tuple(BANDS) else (None, None)


def lsst_detection(s):
    t, band = lsst_time_band(s)
    if t is None:
        return None
    flux, err = num(pick(s, "psfFlux", "psFlux")), num(pick(s, "psfFluxErr", "psFluxErr"))
    mag = -2.5 * math.log10(abs(flux)) + 31.4 if flux else None
    err = err * MAG_ERR / abs(flux) if flux and err is not None else None
    return point("det", s.get("diaSourceId"), t, band, mag, err, flux)


def read_lsst(rec):
    src = rec["diaSource"]
    aid = rec.get("alertId") or rec.get("diaSourceId") or src.get("diaSourceId")
    pts = [lsst_detection(s) for s in [src] + (rec.get("prvDiaSources") or [])]
    for kind, field in (("fp", "prvDiaForcedSources"), ("ul", "prvDiaNondetectionLimits")):
        for s in rec.get(field) or []:
            t, band = lsst_time_band(s)
            ident = s.get("diaForcedSourceId") if kind == "fp" else None
            ident = (t, band) if ident is None else ident
            pts.append(point(kind, ident, t, band) if t is not None else None)
    obj = rec.get("diaObject") or {}
    ra, dec = num(obj.get("ra")), num(pick(obj, "dec", "decl"))
    if ra is None or dec is None:
        ra, dec = num(src.get("ra")), num(pick(src, "dec", "decl"))
    # v3-v7 carry ssObject; v8/v9 ssSource + MPCORB; v10+ ssSource + mpc_orbits. An id of 0
    # means none.
    orbit = rec.get("mpc_orbits") or rec.get("MPCORB") or {}
    ids = [src.get("ssObjectId"), (rec.get("ssSource") or {}).get("ssObjectId"),
           (rec.get("ssObject") or {}).get("ssObjectId")]
    ssid = next((i for i in ids if i), None)
    name = pick(orbit, "designation", "mpcDesignation", "fullDesignation",
                "packed_primary_provisional_designation")
    ss = name or (str(ssid) if ssid else None)
    fields = {"solar_system": ss, "reliability": num(src.get("reliability")),
              "snr": num(src.get("snr")), "psfFlux": num(pick(src, "psfFlux", "psFlux")),
              "extendedness": num(src.get("extendedness"))}
    return {"survey": "lsst", "id": aid, "t": num(pick(src, "midpointMjdTai", "midPointTai")),
            "ra": ra, "dec": dec, "points": pts, "fields": fields}


# ---------------------------------------------------------------- one summary per object

def newest(a):
    return (a["t"] if a["t"] is not None else -math.inf, a["id"])


def summarize(key, group):
    latest = max(group, key=newest)
    placed = [a for a in group if a["ra"] is not None and a["dec"] is not None]
    where = max(placed, key=newest) if placed else {"ra": None, "dec": None}
    points = {}
    for a in group:
        for p in a["points"]:
            if p is not None:
                points.setdefault((p["kind"], p["id"]), p)
    pts = list(points.values())
    times = [p["t"] for p in pts]
    out = dict.fromkeys(TYPES)
    out.update(
        key=key, survey=latest["survey"], object_id=key.split(":", 1)[1],
        ra=where["ra"], dec=where["dec"],
        first_mjd=min(times) if times else None, last_mjd=max(times) if times else None,
        n_detections=sum(p["kind"] == "det" for p in pts),
        n_upper_limits=sum(p["kind"] == "ul" for p in pts),
        n_forced=sum(p["kind"] == "fp" for p in pts),
        n_alerts=len(group), version=len(group), latest_alert_id=latest["id"])
    out.update(latest["fields"])
    for b in BANDS:
        det = [p for p in pts if p["kind"] == "det" and p["band"] == b]
        out[f"n_detections_{b}"] = len(det)
        if det:
            last = max(det, key=lambda p: (p["t"], p["id"]))
            out.update({f"mag_{b}": last["mag"], f"mag_err_{b}": last["err"],
                        f"flux_{b}": last["flux"], f"first_mjd_{b}": min(p["t"] for p in det),
                        f"last_mjd_{b}": max(p["t"] for p in det)})
    return out


def load_objects(schema_dir, files):
    schemas = alerts.lsst_schemas(schema_dir)
    groups = {}
    for f in files:
        with open(f, "rb") as fh:
            rec = alerts.read_packet(fh.read(), schemas)
        a = read_ztf(rec) if "objectId" in rec else read_lsst(rec)
        group = groups.setdefault(alerts.object_key(rec), {})
        group.setdefault(a["id"], a)  # the same alert id twice counts once: first one wins
    return {k: summarize(k, list(g.values())) for k, g in groups.items()}


# ---------------------------------------------------------------- the filter language

class FilterError(Exception):
    pass


COMPARE = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
           "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}
TOKEN = re.compile(r"""\s*(?:
    (?P<num>-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<str>'(?:[^']|'')*')
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|=|<|>|[(),])
)""", re.X)


def tokenize(text):
    """[(kind, value)]: kind is num, str, kw (lower-cased keyword), field or op; then end."""
    out, pos, text = [], 0, text.rstrip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            raise FilterError(f"unexpected input at offset {pos}: {text[pos:pos + 10]!r}")
        pos, kind, s = m.end(), m.lastgroup, m[m.lastgroup]
        if kind == "num":
            s = float(s) if "." in s or "e" in s.lower() else int(s)
        elif kind == "str":
            s = s[1:-1].replace("''", "'")
        elif kind == "word":
            kind, s = ("kw", s.lower()) if s.lower() in KEYWORDS else ("field", s)
        out.append((kind, s))
    return out + [("end", "end of filter")]


class Parser:
    """Recursive descent over the EBNF; builds tuples and type-checks fields as it goes."""

    def __init__(self, text):
        self.toks, self.i = tokenize(text), 0

    def accept(self, kind, value=None):
        """Consume and return True if the next token is (kind, value)."""
        k, v = self.toks[self.i]
        ok = k == kind and (value is None or v == value)
        self.i += ok
        return ok

    def take(self, kind, value=None):
        if not self.accept(kind, value):
            raise FilterError(f"expected {value or kind}, found {self.toks[self.i][1]!r}")
        return self.toks[self.i - 1][1]

    def parse(self):
        e = self.binary("or")
        self.take("end")
        return e

    def binary(self, op):  # or_expr (op "or") and and_expr (op "and")
        sub = (lambda: self.binary("and")) if op == "or" else self.unary
        e = sub()
        while self.accept("kw", op):
            e = (op, e, sub())
        return e

    def unary(self):
        if self.accept("kw", "not"):
            return ("not", self.unary())
        if self.accept("op", "("):
            e = self.binary("or")
            self.take("op", ")")
            return e
        return self.test()

    def field(self):
        name = self.take("field")
        if name not in TYPES:
            raise FilterError(f"unknown field {name!r}")
        return name

    def literal(self):
        k, v = self.toks[self.i]
        if k in ("num", "str") or (k == "kw" and v in ("true", "false")):
            self.i += 1
            return (v == "true", "bool") if k == "kw" else (v, k)
        raise FilterError(f"expected a literal, found {v!r}")

    def check(self, name, typ, op="="):
        if TYPES[name] != typ:
            raise FilterError(f"type mismatch: {name} is {TYPES[name]}, compared with {typ}")
        if typ == "bool" and op not in ("=", "!="):
            raise FilterError(f"booleans only support = and !=, not {op}")

    def test(self):
        name = self.field()
        if self.accept("kw", "is"):
            negated = self.accept("kw", "not")
            self.take("kw", "null")
            return ("isnull", name, negated)
        negated = self.accept("kw", "not")
        if negated or self.toks[self.i] == ("kw", "in"):
            self.take("kw", "in")
            self.take("op", "(")
            values = [self.literal()]
            while self.accept("op", ","):
                values.append(self.literal())
            self.take("op", ")")
            for _, typ in values:
                self.check(name, typ)
            return ("in", name, [v for v, _ in values], negated)
        op = self.take("op")
        if op not in COMPARE:
            raise FilterError(f"expected a comparison operator, found {op!r}")
        if self.toks[self.i][0] == "field":
            other = self.field()
            self.check(name, TYPES[other], op)
            return ("cmp", op, name, ("field", other))
        value, typ = self.literal()
        self.check(name, typ, op)
        return ("cmp", op, name, ("lit", value))


def parse_filter(text):
    return None if text is None else Parser(text).parse()


def sortable(v):
    """Strings compare byte-wise on UTF-8; numbers and bools as they are."""
    return v.encode() if isinstance(v, str) else v


def evaluate(e, obj):
    """Three-valued: True, False or None (Unknown)."""
    kind = e[0]
    if kind in ("and", "or"):
        a, b = evaluate(e[1], obj), evaluate(e[2], obj)
        stop = kind == "or"  # the value that decides: True for or, False for and
        if a is stop or b is stop:
            return stop
        return None if a is None or b is None else not stop
    if kind == "not":
        v = evaluate(e[1], obj)
        return None if v is None else not v
    if kind == "isnull":
        return (obj[e[1]] is None) != e[2]
    if kind == "in":
        v = obj[e[1]]
        return None if v is None else (v in e[2]) != e[3]
    _, op, name, (rk, rv) = e
    a, b = obj[name], obj[rv] if rk == "field" else rv
    if a is None or b is None:
        return None
    return COMPARE[op](sortable(a), sortable(b))


# ---------------------------------------------------------------- queries

def haversine_arcsec(ra1, dec1, ra2, dec2):
    p1, p2 = math.radians(dec1), math.radians(dec2)
    dp, dl = math.radians(dec2 - dec1), math.radians(ra2 - ra1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return math.degrees(2 * math.asin(math.sqrt(min(1.0, h)))) * 3600


def parse_order(text):
    parts = (text or "key asc").split()
    if not 1 <= len(parts) <= 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
        raise FilterError(f"bad order {text!r}")
    if parts[0] not in TYPES:
        raise FilterError(f"unknown field {parts[0]!r}")
    return parts[0], len(parts) == 2 and parts[1].lower() == "desc"


def answer(q, objects):
    if q["kind"] == "fields":
        return objects
    try:
        flt = parse_filter(q.get("where"))
        order = parse_order(q.get("order")) if q["kind"] == "where" else None
    except FilterError as e:
        return {"error": str(e)}
    hits = [o for o in objects.values() if flt is None or evaluate(flt, o) is True]
    if q["kind"] == "cone":
        found = []
        for o in hits:
            if o["ra"] is not None and o["dec"] is not None:
                d = haversine_arcsec(q["ra"], q["dec"], o["ra"], o["dec"])
                if d <= q["radius_arcsec"]:
                    found.append([o["key"], d])
        return sorted(found, key=lambda kd: (kd[1], kd[0].encode()))
    if q["kind"] == "where":
        field, desc = order
        ranked = [(sortable(o[field]), o["key"].encode(), o["key"]) for o in hits
                  if o[field] is not None]
        return [k for _, _, k in sorted(ranked, reverse=desc)]
    raise ValueError(f"unknown query kind {q['kind']!r}")


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    with open(argv[1]) as fh:
        queries = json.load(fh)
    objects = load_objects(argv[0], argv[2:])
    json.dump([answer(q, objects) for q in queries], sys.stdout)
    print()


if __name__ == "__main__":
    main(sys.argv[1:])
