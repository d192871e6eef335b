/* wattbridge: the quantities a point name may end with.
 *
 * A point is named <instance>[/<device>][/<channel>]/<quantity>, for example
 * "grid/power", "pv/l1/voltage", "dtu/114182940773/dc1/power".  <channel> is
 * l1, l2, l3, a pair such as l1-l2 (line-to-line), dcN (a DC input), or dc
 * (all DC inputs of an inverter together).
 * The last element, <quantity>, is one of the names below; each has one
 * unit, and where it has a sign, one sign rule.  A plugin that talks to a
 * device with another convention converts at its edge, once.
 *
 * Sign rules: a grid meter's power > 0 means import from the
 * grid; a PV inverter's power > 0 means production; a battery's power > 0
 * means charging (Victron's convention).  Energy counters follow the power
 * sign of their point's owner: "energy-import" counts while power > 0 (grid:
 * bought; PV: produced; battery: charged), "energy-export" while power < 0.
 *
 * A new quantity is added here in the same change that first uses it.
 * WB_QUANTITIES(X) expands X(ID, "name", "unit", "rule") once per quantity,
 * so code can build tables from it; wb_quantity_get_unit() looks one up.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define WB_QUANTITIES(X) \
    X(POWER, "power", "W", \
      "active power; grid: > 0 import; PV: > 0 production; battery: > 0 charging") \
    X(REACTIVE_POWER, "reactive-power", "var", \
      "reactive power; > 0 inductive (lagging) in the owner's power direction") \
    X(APPARENT_POWER, "apparent-power", "VA", "apparent power, >= 0") \
    X(POWER_FACTOR, "power-factor", "", \
      "P / S, -1..1; its sign follows active power; 1 when S = 0") \
    X(VOLTAGE, "voltage", "V", \
      "RMS; phase-to-neutral on l1..l3, line-to-line on l1-l2, l2-l3, l3-l1; DC on dcN") \
    X(CURRENT, "current", "A", "RMS magnitude, >= 0 (DC: in the power direction)") \
    X(FREQUENCY, "frequency", "Hz", "grid frequency") \
    X(ENERGY_IMPORT, "energy-import", "kWh", \
      "counter, never decreases; energy while power > 0 (grid: bought; PV: produced)") \
    X(ENERGY_EXPORT, "energy-export", "kWh", \
      "counter, never decreases; energy while power < 0 (grid: sold; battery: discharged)") \
    X(YIELD_TODAY, "yield-today", "kWh", \
      "PV: energy produced today as the device counts it (it resets overnight or at a restart)") \
    X(EFFICIENCY, "efficiency", "%", "an inverter's output power / its input power, 0..100") \
    X(SOC, "soc", "%", "battery state of charge, 0..100") \
    X(CHARGE_CURRENT_LIMIT, "charge-current-limit", "A", "CCL: battery charge current limit, >= 0") \
    X(DISCHARGE_CURRENT_LIMIT, "discharge-current-limit", "A", \
      "DCL: battery discharge current limit, >= 0") \
    X(TEMPERATURE, "temperature", "\302\260C", "temperature") \
    X(STATE, "state", "", "a device's status code or text") \
    X(SERIAL, "serial", "", "serial number (text)") \
    X(PRODUCT_NAME, "product-name", "", "product name (text)") \
    X(FIRMWARE_VERSION, "firmware-version", "", "firmware version (text)") \
    X(REQUESTS, "requests", "", "counter: requests sent to a device since start") \
    X(ERRORS, "errors", "", "counter: failed requests since start, of the kind its parent level names") \
    X(LATENCY, "latency", "s", "time from a request to its answer") \
    X(CONNECTED, "connected", "", "1 while a device answers, 0 while it is disconnected") \
    X(REACHABLE, "reachable", "", \
      "1 while a device answers its gateway (OpenDTU: the inverter's radio link), 0 when not") \
    X(PRODUCING, "producing", "", "1 while an inverter feeds power in, 0 when not") \
    X(LIMIT_RELATIVE, "limit-relative", "%", "the active power limit in force, % of nominal power, 0..100") \
    X(LIMIT_ABSOLUTE, "limit-absolute", "W", "the active power limit in force, W, >= 0") \
    X(DATA_AGE, "data-age", "s", "how old a device's last measurement is, as its gateway reports it") \
    X(MAIN_LOOP_LAG, "main-loop-lag", "s", \
      "host only: worst overrun of a 50 ms main-loop timer in the last second")

/**
 * wb_quantity_get_unit:
 * @quantity: a quantity name, e.g. "power" (the last element of a point name)
 *
 * Returns: (transfer none) (nullable): the quantity's unit ("W", "" for a
 * dimensionless quantity), or %NULL when @quantity is not listed above.
 * The string is static.  Any thread.
 */
const char *wb_quantity_get_unit(const char *quantity);

/**
 * wb_quantity_get_rule:
 * @quantity: a quantity name
 *
 * Returns: (transfer none) (nullable): a one-line description of the
 * quantity's range and sign rule, or %NULL when it is not listed.  Static;
 * any thread.
 */
const char *wb_quantity_get_rule(const char *quantity);

G_END_DECLS
