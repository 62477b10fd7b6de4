#!/usr/bin/env python3
"""Rebuild src/data/motifs/jaspar2024_core_vertebrates.txt from the pyjaspar 4.0.0 wheel.

Usage: pip download --no-deps pyjaspar==4.0.0 -d /tmp/pj && unzip -o /tmp/pj/pyjaspar-4.0.0-*.whl \
           'pyjaspar/data/JASPAR2024.sqlite' -d /tmp/pj && python3 make_motifs.py /tmp/pj/pyjaspar/data/JASPAR2024.sqlite OUT
Only the standard library is used (sqlite3). The selection is the non-redundant CORE vertebrate set
(latest version per BASE_ID), restricted to the transcription factors named in WANT (the synthetic
generator's tissue programs plus shared and decoy factors).
"""
import sqlite3
import sys

WANT = ["HNF4A", "FOXA2", "CEBPB", "HNF1A", "GATA1", "TAL1::TCF3", "KLF1", "EBF1", "PAX5", "SPI1",
        "NEUROD1", "RFX2", "SOX2", "CTCF", "NRF1", "MEF2C", "MYOD1", "TEAD1", "NR2F2", "HAND2", "POU5F1",
        "GRHL2", "TP63", "ELF3", "RUNX1", "IRF8", "NFE2", "SOX10", "ASCL1", "FOXO3", "YY1", "SP1", "REST",
        "NFYA", "USF1", "MAX"]
QUERY = """SELECT m.ID, m.BASE_ID, m.VERSION, m.NAME FROM MATRIX m JOIN MATRIX_ANNOTATION a ON a.ID = m.ID
WHERE m.COLLECTION = 'CORE' AND a.TAG = 'tax_group' AND a.VAL = 'vertebrates'
AND m.VERSION = (SELECT max(VERSION) FROM MATRIX m2 WHERE m2.BASE_ID = m.BASE_ID AND m2.COLLECTION = 'CORE')"""


def main(db_path, out_path):
    db = sqlite3.connect(db_path)
    # Several matrices can share a TF name (e.g. CTCF MA0139 and the extended MA1930): keep the oldest base id.
    rows = {}
    for r in db.execute(QUERY + " ORDER BY m.BASE_ID DESC"):
        rows[r[3].upper()] = r
    lines = ["# JASPAR 2024 CORE vertebrates, non-redundant (latest version per BASE_ID); counts matrices.",
             "# Source: PyPI wheel pyjaspar 4.0.0, file pyjaspar/data/JASPAR2024.sqlite (tables MATRIX, MATRIX_DATA).",
             "# JASPAR data: free to use; cite Rauluseviciute et al., NAR 2024. Rebuild: tests/data/scripts/make_motifs.py",
             "# Format: JASPAR text. A header line '>ID NAME', then four rows A,C,G,T of integer counts in brackets."]
    for name in WANT:
        mid, base, ver, real_name = rows[name]
        cols = {}
        for row, _col, val in db.execute("SELECT row, col, val FROM MATRIX_DATA WHERE ID = ? ORDER BY col", (mid,)):
            cols.setdefault(row, []).append(val)
        lines.append(f">{base}.{ver}\t{real_name}")
        for b in "ACGT":
            lines.append(f"{b}  [ " + " ".join(f"{int(round(v)):5d}" for v in cols[b]) + " ]")
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
