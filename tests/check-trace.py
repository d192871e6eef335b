#!/usr/bin/python3
"""Checks the shipped one-day trace against what data/README.md promises:
1 s resolution over a whole day, voltages 225-245 V, 49.95-50.05 Hz,
counters that never decrease, night rows with the inverter asleep (empty
PV cells), passing clouds (sudden drops and recoveries of PV power),
phase imbalance, and the sign rules (grid = load - PV + battery charge)."""
import csv
import gzip
import sys

path = sys.argv[1]
with gzip.open(path, "rt") as f:
    rows = list(csv.reader(line for line in f if not line.startswith("#")))
head, rows = rows[0], rows[1:]
col = {name: i for i, name in enumerate(head)}
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def values(name):
    return [(n, float(r[col[name]])) for n, r in enumerate(rows) if r[col[name]] != ""]


def seconds(text):
    h, m, s = text.split(":")
    return int(h) * 3600 + int(m) * 60 + int(s)


times = [seconds(r[0]) for r in rows]
check(times[0] == 0 and times[-1] == 86399 and all(b - a == 1 for a, b in zip(times, times[1:])),
      "one row per second from 00:00:00 to 23:59:59")
for phase in ("l1", "l2", "l3"):
    v = [x for _, x in values("pv/%s/voltage" % phase)]
    check(min(v) >= 225 and max(v) <= 245, "pv/%s/voltage within 225-245 V (%.1f..%.1f)" % (phase, min(v), max(v)))
hz = [x for _, x in values("pv/frequency")]
check(min(hz) >= 49.95 and max(hz) <= 50.05, "frequency within 49.95-50.05 Hz")
check(max(hz) - min(hz) >= 0.05, "the frequency moves")
for name in ("pv/energy-import", "grid/energy-import", "grid/energy-export"):
    e = [x for _, x in values(name)]
    check(all(b >= a for a, b in zip(e, e[1:])) and e[0] == 0, name + " starts at 0 and never decreases")

pv = dict(values("pv/power"))
asleep = [n for n in range(len(rows)) if n not in pv]
check(len(asleep) > 6 * 3600, "the inverter sleeps at night (%d rows with empty PV cells)" % len(asleep))
check(0 in asleep and 86399 in asleep and 12 * 3600 not in asleep, "asleep at midnight, awake at noon")
check(all(rows[n][col["grid/power"]] != "" for n in asleep), "grid and battery columns stay filled at night")

# passing clouds: PV power falls by a third within a minute and comes back
dips = 0
n = 8 * 3600
while n < 18 * 3600:
    if n in pv and n + 60 in pv and pv[n + 60] < 0.67 * pv[n]:
        back = any(m in pv and pv[m] > 0.9 * pv[n] for m in range(n + 60, n + 900))
        dips += back
        n += 600
    else:
        n += 10
check(dips >= 5, "passing clouds: %d dips of a third or more that recover" % dips)

imbalance = max(abs(float(r[col["pv/l1/power"]]) - float(r[col["pv/l2/power"]]))
                for r in rows[11 * 3600:14 * 3600] if r[col["pv/l1/power"]] != "")
check(imbalance > 20, "phase imbalance: L1 and L2 differ by up to %.0f W at midday" % imbalance)
summed = all(abs(sum(float(r[col["pv/%s/power" % p]]) for p in ("l1", "l2", "l3")) - float(r[col["pv/power"]])) < 0.5
             for r in rows if r[col["pv/power"]] != "")
check(summed, "pv/power is the sum of the phases")
noon = rows[13 * 3600]
check(float(noon[col["grid/power"]]) < 0 or float(noon[col["battery/power"]]) > 0,
      "at 13:00 the PV surplus charges the battery or is exported (signs: grid > 0 imports, battery > 0 charges)")
soc = [x for _, x in values("battery/soc")]
check(min(soc) >= 0 and max(soc) <= 100, "battery/soc within 0-100 %")

print("%d checks failed" % len(failures))
sys.exit(1 if failures else 0)
