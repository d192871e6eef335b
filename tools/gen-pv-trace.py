#!/usr/bin/python3
"""Generates data/traces/pv-3phase-day.csv.gz: one synthetic but realistic
day at 1 s resolution of a 10 kWp three-phase PV inverter with a house load,
a 10 kWh battery doing self-consumption, and the grid connection.

    /usr/bin/python3 tools/gen-pv-trace.py data/traces/pv-3phase-day.csv.gz

Deterministic (fixed seed).  What it models, so that emulators and
controllers see what real installations show:
  - a clear-sky bell from sunrise to sunset, clipped at the inverter's 10 kW;
  - passing clouds: dips of 30-85 % lasting 20 s to 6 min with 5-30 s edges,
    more of them in the afternoon, and the short overshoot at cloud edges;
  - phase imbalance: per-phase shares drifting within about +-3 %;
  - grid voltage 225-245 V per phase: a daily swing, rise with PV export,
    sag under heavy load, noise;
  - grid frequency 49.95-50.05 Hz (a mean-reverting random walk, 0.01 Hz);
  - the inverter asleep at night: empty PV cells (invalid points);
  - counters that start at 0 at midnight and never decrease.
Signs follow wattbridge's DESIGN.md: grid power > 0 imports, PV power > 0
produces, battery power > 0 charges.
"""
import gzip
import math
import random
import sys

DAY = 86400
RATED = 10000.0        # inverter AC limit, W
PEAK = 7800.0          # clear-sky DC power at noon, W (east/west array)
SUNRISE = 5 * 3600 + 10 * 60
SUNSET = 21 * 3600 + 35 * 60
WAKE_W = 40.0          # the inverter runs while clear-sky power exceeds this
BATTERY_WH = 10000.0
BATTERY_MAX_W = 5000.0
SOC_MIN, SOC_MAX = 10.0, 100.0

rng = random.Random(20261121)


def clear_sky(t):
    if t <= SUNRISE or t >= SUNSET:
        return 0.0
    x = (t - SUNRISE) / (SUNSET - SUNRISE)
    return PEAK * math.sin(math.pi * x) ** 1.35


def cloud_factors():
    """Attenuation per second: 1.0 = clear."""
    f = [1.0] * DAY
    t = SUNRISE
    while t < SUNSET:
        hour = t / 3600.0
        busy = 0.6 if hour < 12 else 1.4   # more clouds in the afternoon
        t += int(rng.expovariate(busy / 900.0))
        if t >= SUNSET:
            break
        length = int(rng.uniform(20, 360))
        depth = rng.uniform(0.30, 0.85)
        edge = int(rng.uniform(5, 30))
        for i in range(-edge, length + edge):
            s = t + i
            if not 0 <= s < DAY:
                continue
            if i < 0:
                k = (i + edge) / edge            # fading in
            elif i >= length:
                k = 1 - (i - length) / edge      # fading out
            else:
                k = 1.0
            f[s] = min(f[s], 1 - depth * k)
        # cloud-edge enhancement just after the cloud
        for i in range(length + edge, length + edge + 15):
            s = t + i
            if 0 <= s < DAY and f[s] == 1.0:
                f[s] = 1.06
        t += length + edge
    return f


def house_load():
    """House consumption per second, W."""
    load = [0.0] * DAY
    fridge_on = False
    next_toggle = 0
    events = []
    # kettle, toaster, washing machine, oven, dishwasher, evening lights/TV
    events.append((7 * 3600 + 5 * 60, 180, 2100))
    events.append((7 * 3600 + 12 * 60, 150, 900))
    events.append((10 * 3600 + 30 * 60, 3000, 450))      # washing machine, heating phases below
    events.append((10 * 3600 + 32 * 60, 900, 1800))
    events.append((13 * 3600, 240, 2100))
    events.append((18 * 3600, 2700, 2600))                # oven
    events.append((19 * 3600 + 30 * 60, 5400, 1100))      # dishwasher
    events.append((19 * 3600 + 35 * 60, 1200, 1900))
    events.append((21 * 3600 + 50 * 60, 7200, 7400))      # electric car, 3 x 10.7 A
    events.append((5 * 3600 + 30 * 60, 1800, 1600))       # heat pump, hot water
    events.append((16 * 3600, 1500, 1500))
    for _ in range(40):                                   # small random appliances
        events.append((rng.randrange(6 * 3600, 23 * 3600), rng.randrange(30, 900), rng.uniform(80, 1200)))
    for t in range(DAY):
        hour = t / 3600.0
        base = 180 + 60 * math.sin(2 * math.pi * (hour - 4) / 24)
        if 17.5 <= hour < 23:
            base += 250                                    # lights, TV
        if t >= next_toggle:
            fridge_on = not fridge_on
            next_toggle = t + (rng.randrange(900, 1500) if fridge_on else rng.randrange(1800, 3000))
        load[t] = base + (95 if fridge_on else 0) + rng.gauss(0, 6)
    for start, length, watts in events:
        for s in range(start, min(start + length, DAY)):
            load[s] += watts
    return load


def main(path):
    clouds = cloud_factors()
    load = house_load()
    share = [1 / 3.0, 1 / 3.0, 1 / 3.0]
    drift = [0.0, 0.0, 0.0]
    freq = 50.0
    soc = 45.0
    pv_e = grid_in = grid_out = 0.0
    batt = 0.0
    rows = []
    for t in range(DAY):
        hour = t / 3600.0
        clear = clear_sky(t)
        awake = clear > WAKE_W
        dc = clear * clouds[t] * rng.uniform(0.995, 1.005)
        pv = min(dc * 0.97, RATED) if awake else 0.0

        # phase imbalance: slow drift, sums to zero
        for i in range(3):
            drift[i] += rng.gauss(0, 0.0004) - drift[i] * 0.002
        mean = sum(drift) / 3
        shares = [share[i] + (drift[i] - mean) for i in range(3)]
        shares = [min(max(s, 0.323), 0.343) for s in shares]
        norm = sum(shares)
        phase_p = [pv * s / norm for s in shares]

        # battery: self-consumption with a 2 s lag and a 30 W deadband
        want = pv - load[t]
        if abs(want - batt) > 30:
            batt += (want - batt) * 0.5
        batt = max(-BATTERY_MAX_W, min(BATTERY_MAX_W, batt))
        if soc >= SOC_MAX and batt > 0:
            batt = 0.0
        if soc <= SOC_MIN and batt < 0:
            batt = 0.0
        soc += (batt * (0.95 if batt > 0 else 1 / 0.95)) / BATTERY_WH * 100 / 3600
        soc = max(SOC_MIN, min(SOC_MAX, soc))
        grid = load[t] - pv + batt

        if grid > 0:
            grid_in += grid / 3.6e6
        else:
            grid_out += -grid / 3.6e6
        pv_e += pv / 3.6e6

        # voltages: daily swing, rise with export, sag with import, noise
        volts = []
        for i in range(3):
            u = 231.0 + 4.0 * math.sin(2 * math.pi * (hour - 9) / 24) + [0.8, -0.6, 0.2][i]
            u += -grid / 3 * 0.0019
            u += rng.gauss(0, 0.25)
            volts.append(min(245.0, max(225.0, u)))

        freq += rng.gauss(0, 0.002) - (freq - 50.0) * 0.01
        freq = min(50.05, max(49.95, freq))

        row = ["%02d:%02d:%02d" % (t // 3600, t // 60 % 60, t % 60)]
        if awake:
            row.append("%.1f" % pv)
            row += ["%.1f" % p for p in phase_p]
            row += ["%.1f" % u for u in volts]
            row += ["%.2f" % (p / u) for p, u in zip(phase_p, volts)]
            row.append("%.2f" % freq)
            row.append("%.3f" % pv_e)
        else:
            row += [""] * 12
        row.append("%.1f" % grid)
        row.append("%.3f" % grid_in)
        row.append("%.3f" % grid_out)
        row.append("%.1f" % batt)
        row.append("%.1f" % soc)
        rows.append(",".join(row))

    header = [
        "# One synthetic day at 1 s resolution: a 10 kWp three-phase PV inverter (10 kW AC),",
        "# a house load and a 10 kWh battery doing self-consumption.  Generated by",
        "# tools/gen-pv-trace.py (fixed seed).  Signs: grid power > 0 imports, PV power > 0",
        "# produces, battery power > 0 charges.  Counters in kWh start at 0 at midnight.",
        "# Empty PV cells: the inverter is asleep (its points are invalid).",
        "time,pv/power,pv/l1/power,pv/l2/power,pv/l3/power,pv/l1/voltage,pv/l2/voltage,pv/l3/voltage,"
        "pv/l1/current,pv/l2/current,pv/l3/current,pv/frequency,pv/energy-import,"
        "grid/power,grid/energy-import,grid/energy-export,battery/power,battery/soc",
    ]
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(("\n".join(header + rows) + "\n").encode())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/traces/pv-3phase-day.csv.gz")
