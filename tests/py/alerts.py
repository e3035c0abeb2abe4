"""Independent reading of the shared alert packets, for end-to-end tests.

Uses fastavro — a different Avro implementation from the node's — to find each packet's object
key and to compute the light curve the node should materialize (detections deduplicated by
candid, ZTF upper limits by (jd, fid)), so the tests compare the node against a reference it
did not compute itself.
"""
import glob
import io
import json
import os
import struct
import sys

import fastavro
import fastavro.schema


def lsst_schemas(schema_dir):
    out = {}
    for d in glob.glob(os.path.join(schema_dir, "*.*")):
        major, minor = os.path.basename(d).split(".")
        top = os.path.join(d, f"lsst.v{major}_{minor}.alert.avsc")
        if os.path.exists(top):
            out[int(major) * 100 + int(minor)] = fastavro.schema.load_schema(top)
    return out


def read_packet(data, schemas):
    if data[:4] == b"Obj\x01":
        return next(fastavro.reader(io.BytesIO(data)))
    if data[0] == 0:
        (sid,) = struct.unpack(">I", data[1:5])
        return fastavro.schemaless_reader(io.BytesIO(data[5:]), schemas[sid])
    raise ValueError("unknown framing")


def object_key(rec):
    if "objectId" in rec:
        return "ztf:" + rec["objectId"]
    src = rec["diaSource"]
    if src.get("diaObjectId"):
        return f"lsst:{src['diaObjectId']}"
    if src.get("ssObjectId"):
        return f"lsst:ss-{src['ssObjectId']}"
    return f"lsst:{src['diaSourceId']}"


def ztf_reference(records):
    """Expected light curve of one ZTF object from all its alerts."""
    detections = {}
    limits = set()
    for rec in records:
        c = rec["candidate"]
        detections[c["candid"]] = c["magpsf"]
        for p in rec.get("prv_candidates") or []:
            if "forcediffimflux" in p:
                continue
            if p.get("candid") is not None:
                if p.get("magpsf") is not None:
                    detections.setdefault(p["candid"], p["magpsf"])
            else:
                limits.add((p["jd"], p["fid"]))
    return {
        "detections": {str(k): v for k, v in detections.items()},
        "n_upper_limits": len(limits),
        "alerts": sorted({str(r["candid"]) for r in records}),
    }


if __name__ == "__main__":
    # usage: alerts.py keys SCHEMA_DIR FILE...     -> one "key<TAB>path" line per file
    #        alerts.py reference FILE...           -> JSON {key: reference} for ZTF files
    #        alerts.py solar FILE...               -> JSON [{candid, key, ssnamenr, jd, ra, dec}] for ZTF
    #                                                 files (ssnamenr null when the packet's
    #                                                 sentinel "null" says there is none)
    cmd = sys.argv[1]
    if cmd == "keys":
        schemas = lsst_schemas(sys.argv[2])
        for f in sys.argv[3:]:
            with open(f, "rb") as fh:
                print(f"{object_key(read_packet(fh.read(), schemas))}\t{f}")
    elif cmd == "reference":
        by_key = {}
        for f in sys.argv[2:]:
            with open(f, "rb") as fh:
                rec = read_packet(fh.read(), {})
            by_key.setdefault(object_key(rec), []).append(rec)
        print(json.dumps({k: ztf_reference(v) for k, v in by_key.items()}))
    elif cmd == "solar":
        out = []
        for f in sys.argv[2:]:
            with open(f, "rb") as fh:
                rec = read_packet(fh.read(), {})
            name = rec["candidate"].get("ssnamenr")
            if name is not None and name.strip().lower() in ("", "null"):
                name = None
            c = rec["candidate"]
            out.append({"candid": str(c["candid"]), "key": object_key(rec), "ssnamenr": name,
                        "jd": c["jd"], "ra": c["ra"], "dec": c["dec"]})
        print(json.dumps(out))
