/* Benchmarks for victron-dbus.  Prints figures; judges nothing.
 * Run with: meson test -C build --benchmark --verbose
 *
 * 1. Update cost: the demo trace replayed at 10 rows a second from 12:00
 *    (PV producing, values changing every row) into 4 Venus services
 *    (grid, pvinverter, acload, battery) on a private dbus-daemon.  The
 *    daemon's CPU time over 10 s, beside the same daemon replaying with
 *    no service, per value published (PropertiesChanged signals counted
 *    by dbus-monitor, those stamped within the 10 s); and beside baseline-dbus: GDBus alone emitting the
 *    same signals (PropertiesChanged per value, one ItemsChanged per
 *    update) at the same rate.  Median of 3.
 * 2. Latency: a value published to an MQTT broker, through the mqtt
 *    source and victron-dbus, to the ItemsChanged that dbus-monitor prints
 *    (its time= stamp), p50/p99 over 300 updates, beside the broker hop
 *    alone (publish -> a subscribed client); the difference, taken per
 *    update before the percentiles, is what wattbridge adds from the point
 *    update to the signal. */
#include "mqtt-probe.h"
#include "wbt.h"

#include <stdio.h>
#include <stdlib.h>

#define RUNS 3
#define SECONDS 10

#define env wbt_env

/* A daemon without --verbose (logging is part of what costs), on @bus. */
static WbtDaemon *daemon_on(WbtScratch *s, WbtDbus *bus)
{
    g_autofree char *data = g_build_filename(env("WB_TEST_SRCDIR"), "data", NULL);
    g_autofree char *address = g_strdup_printf("DBUS_SESSION_BUS_ADDRESS=%s", bus->address);
    const char *argv[] = {env("WB_TEST_DAEMON"), "--config-dir", s->confdir, "--plugin-dir", env("WB_PLUGIN_DIR"),
                          "--data-dir", data, "--state-dir", s->statedir, NULL};
    const char *envp[] = {address, NULL};
    return wbt_daemon_spawn(argv, envp);
}

static GSubprocess *monitor_start(WbtDbus *bus, const char *path)
{
    g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDERR_SILENCE);
    g_subprocess_launcher_set_stdout_file_path(l, path);
    const char *argv[] = {"dbus-monitor", "--address", bus->address,
                          "type='signal',interface='com.victronenergy.BusItem'", NULL};
    GError *error = NULL;
    GSubprocess *p = g_subprocess_launcher_spawnv(l, argv, &error);
    g_assert_no_error(error);
    wbt_sleep(300);
    return p;
}

static char *monitor_stop(GSubprocess *p, const char *path)
{
    wbt_sleep(200);
    g_subprocess_send_signal(p, SIGTERM);
    g_subprocess_wait(p, NULL, NULL);
    g_object_unref(p);
    char *text = NULL;
    g_file_get_contents(path, &text, NULL, NULL);
    return text ? text : g_strdup("");
}

/* The signals of @member in dbus-monitor's @text whose time= (real time,
 * microseconds) lies within [@from_us, @to_us]. */
static guint count_between(const char *text, const char *member, gint64 from_us, gint64 to_us)
{
    g_autofree char *needle = g_strdup_printf(" member=%s", member);
    guint n = 0;
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        if (!g_str_has_prefix(lines[i], "signal time="))
            continue;
        const char *m = strstr(lines[i], needle);
        if (!m || (m[strlen(needle)] != '\0' && !g_ascii_isspace(m[strlen(needle)])))
            continue;
        gint64 t = (gint64)(g_ascii_strtod(lines[i] + strlen("signal time="), NULL) * 1e6 + 0.5);
        if (t >= from_us && t <= to_us)
            n++;
    }
    return n;
}

static double median(double *v, int n)
{
    GArray *a = g_array_new(FALSE, FALSE, sizeof(double));
    g_array_append_vals(a, v, (guint)n);
    double m = wbt_percentile(a, 50);
    g_array_unref(a);
    return m;
}

/* ---- 1. update cost ------------------------------------------------------------------------------ */

static const char replay_conf[] = "[trace]\nplugin = replay\ntrace = traces/pv-3phase-day.csv.gz\nstart-at = 12:00\n"
                                  "speed = 10\n";

/* CPU microseconds of the daemon over SECONDS; with @services, the
 * PropertiesChanged and ItemsChanged signals dbus-monitor saw within those
 * SECONDS (by their time= stamps). */
static double run_daemon(WbtDbus *bus, gboolean services, guint *values, guint *updates)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_free(wbt_scratch_conf(s, "10-trace.conf", "%s", replay_conf));
    static const char *const types[][3] = {
        {"grid", "grid", "trace/grid"}, {"pv", "pvinverter", "trace/pv"},
        {"load", "acload", "trace/pv"}, {"battery", "battery", "trace/battery"}};
    for (int i = 0; services && i < 4; i++) {
        g_autofree char *name = g_strdup_printf("20-%s.conf", types[i][0]);
        g_free(wbt_scratch_conf(s, name, "[%s]\nplugin = victron-dbus\ntype = %s\nsource = %s\nmax-age = 1h\n"
                                         "settings-timeout = 0\n", types[i][0], types[i][1], types[i][2]));
    }
    WbtDaemon *d = daemon_on(s, bus);
    for (int i = 0; services && i < 4; i++) {
        g_autofree char *re = g_strdup_printf("on D-Bus as com\\.victronenergy\\.%s\\.%s", types[i][1], types[i][0]);
        wbt_daemon_expect_log(d, re, 15000);
    }
    wbt_sleep(2000); /* warm-up */
    g_autofree char *mon_path = g_build_filename(s->dir, "monitor.log", NULL);
    GSubprocess *mon = services ? monitor_start(bus, mon_path) : NULL;
    gint64 t0 = g_get_real_time();
    double c0 = wbt_cpu_us(wbt_daemon_pid(d));
    wbt_sleep(SECONDS * 1000);
    double c1 = wbt_cpu_us(wbt_daemon_pid(d));
    gint64 t1 = g_get_real_time();
    if (mon) {
        g_autofree char *text = monitor_stop(mon, mon_path);
        *values = count_between(text, "PropertiesChanged", t0, t1);
        *updates = count_between(text, "ItemsChanged", t0, t1);
    }
    wbt_daemon_stop(d);
    return c1 - c0;
}

static double run_baseline(WbtDbus *bus, guint per_update, double *values)
{
    g_autofree char *exe = g_build_filename(env("WB_TEST_BUILDDIR"), "tests", "baseline-dbus", NULL);
    g_autofree char *n = g_strdup_printf("%u", per_update);
    g_autofree char *secs = g_strdup_printf("%d", SECONDS);
    const char *argv[] = {exe, bus->address, "4", n, "10", secs, NULL};
    g_autofree char *out = NULL, *err = NULL;
    int status = wbt_run(argv, (SECONDS + 30) * 1000, &out, &err);
    if (status != 0)
        g_error("baseline-dbus failed: %s", err);
    guint64 signals, sent;
    double us;
    if (sscanf(out, "signals %" G_GUINT64_FORMAT " values %" G_GUINT64_FORMAT " cpu-us %lf", &signals, &sent, &us) !=
        3)
        g_error("baseline-dbus said: %s", out);
    *values = (double)sent;
    return us;
}

static void bench_cost(void)
{
    WbtDbus *bus = wbt_dbus_start();
    double with[RUNS], without[RUNS], per_value[RUNS], base[RUNS], published[RUNS];
    guint values = 0, updates = 0;
    for (int r = 0; r < RUNS; r++) {
        with[r] = run_daemon(bus, TRUE, &values, &updates);
        without[r] = run_daemon(bus, FALSE, NULL, NULL);
        published[r] = values;
        per_value[r] = (with[r] - without[r]) / MAX(values, 1);
        double sent;
        double us = run_baseline(bus, updates ? (values + updates / 2) / updates : 1, &sent);
        base[r] = us / MAX(sent, 1);
    }
    g_print("\nD-Bus update cost: 4 Venus services at 10 updates/s, %d s, median of %d\n", SECONDS, RUNS);
    g_print("%-58s %9.0f   (%.1f per update, %.0f updates/s)\n", "values published (PropertiesChanged seen)",
            median(published, RUNS), updates ? (double)values / updates : 0, (double)updates / SECONDS);
    g_print("%-58s %9.1f ms\n", "daemon CPU, replay + 4 services", median(with, RUNS) / 1000);
    g_print("%-58s %9.1f ms\n", "daemon CPU, the same replay without services", median(without, RUNS) / 1000);
    g_print("%-58s %9.1f us\n", "wattbridge: CPU per published value (the difference)", median(per_value, RUNS));
    g_print("%-58s %9.1f us\n", "baseline: GDBus alone emitting the same signals, per value", median(base, RUNS));
    wbt_dbus_stop(bus);
}

/* ---- 2. latency ------------------------------------------------------------------------------------ */

/* time= of each ItemsChanged in dbus-monitor's text whose /Ac/Power
 * value is known: value -> real time in microseconds */
static GHashTable *signal_times(const char *text)
{
    GHashTable *times = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
    for (const char *p = strstr(text, "signal time="); p; p = strstr(p + 1, "signal time=")) {
        const char *next = strstr(p + 1, "signal time=");
        const char *member = strstr(p, "member=ItemsChanged");
        const char *power = strstr(p, "string \"/Ac/Power\"");
        if (!member || !power || (next && (member > next || power > next)))
            continue;
        const char *d = strstr(power, "double ");
        if (!d || (next && d > next))
            continue;
        double t = g_ascii_strtod(p + strlen("signal time="), NULL);
        int value = (int)g_ascii_strtod(d + strlen("double "), NULL);
        gint64 *us = g_new(gint64, 1);
        *us = (gint64)(t * 1e6 + 0.5);
        g_hash_table_insert(times, GINT_TO_POINTER(value), us);
    }
    return times;
}

static void bench_latency(guint updates)
{
    WbtDbus *bus = wbt_dbus_start();
    WbtBroker *broker = wbt_broker_start();
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_free(wbt_scratch_conf(s, "10-mqtt.conf", "[bench]\nplugin = mqtt\nhost = 127.0.0.1\nport = %u\n"
                                               "point.power = bench/power\n", broker->port));
    g_free(wbt_scratch_conf(s, "20-grid.conf", "[grid]\nplugin = victron-dbus\ntype = grid\nmax-age = 1h\n"
                                               "settings-timeout = 0\npath./Ac/Power = bench/power\n"));
    WbtDaemon *d = daemon_on(s, bus);
    wbt_daemon_expect_log(d, "on D-Bus as com\\.victronenergy\\.grid\\.grid", 15000);
    wbt_daemon_expect_log(d, "\\[bench\\] connected to MQTT broker", 15000);
    g_autofree char *mon_path = g_build_filename(s->dir, "latency.log", NULL);
    GSubprocess *mon = monitor_start(bus, mon_path);

    Hop hop = {.expected = -1, .hop = -1};
    struct mosquitto *pub, *sub;
    probe_pair(broker->port, "bench/power", &hop, &pub, &sub);
    const guint warmup = 20;
    gint64 *sent_at = g_new0(gint64, updates + warmup + 1);
    double *hop_ms = g_new0(double, updates + warmup + 1); /* per update; -1: never arrived */
    GArray *hops = g_array_new(FALSE, FALSE, sizeof(double));
    for (guint k = 1; k <= updates + warmup; k++) {
        char payload[32];
        int value = 100000 + (int)k;
        g_snprintf(payload, sizeof payload, "%d", value);
        hop.expected = value;
        hop.hop = -1;
        sent_at[k] = g_get_real_time();
        hop.t0 = g_get_monotonic_time();
        probe_publish(pub, "bench/power", payload);
        while (hop.hop < 0 && g_get_monotonic_time() - hop.t0 < G_USEC_PER_SEC)
            probe_pump(sub);
        hop_ms[k] = hop.hop >= 0 ? (double)hop.hop / 1000 : -1;
        if (k > warmup && hop.hop >= 0)
            g_array_append_val(hops, hop_ms[k]);
        probe_pump(pub);
        g_usleep(50000); /* 20 updates a second */
    }
    g_autofree char *text = monitor_stop(mon, mon_path);
    g_autoptr(GHashTable) times = signal_times(text);
    GArray *e2e = g_array_new(FALSE, FALSE, sizeof(double));
    /* per update: its end-to-end time less its own broker hop */
    GArray *added = g_array_new(FALSE, FALSE, sizeof(double));
    guint lost = 0;
    for (guint k = warmup + 1; k <= updates + warmup; k++) {
        gint64 *t = g_hash_table_lookup(times, GINT_TO_POINTER(100000 + (int)k));
        if (!t) {
            lost++;
            continue;
        }
        double ms = (double)(*t - sent_at[k]) / 1000;
        g_array_append_val(e2e, ms);
        if (hop_ms[k] >= 0) {
            double a = ms - hop_ms[k];
            g_array_append_val(added, a);
        }
    }
    g_print("\nLatency over %u updates (ms): publish to the broker -> ...\n", e2e->len);
    double h50 = wbt_percentile(hops, 50), h99 = wbt_percentile(hops, 99);
    double e50 = wbt_percentile(e2e, 50), e99 = wbt_percentile(e2e, 99);
    g_print("%-52s p50 %7.3f   p99 %7.3f\n", "... a subscribed MQTT client (the broker hop)", h50, h99);
    g_print("%-52s p50 %7.3f   p99 %7.3f\n", "... ItemsChanged on D-Bus, as dbus-monitor saw it", e50, e99);
    g_print("%-52s p50 %7.3f   p99 %7.3f   (%u updates)\n", "point update -> ItemsChanged (per update)",
            wbt_percentile(added, 50), wbt_percentile(added, 99), added->len);
    if (lost)
        g_print("%u updates never reached D-Bus\n", lost);
    g_array_unref(hops);
    g_array_unref(e2e);
    g_array_unref(added);
    g_free(hop_ms);
    g_free(sent_at);
    probe_free(pub);
    probe_free(sub);
    wbt_daemon_stop(d);
    wbt_broker_stop(broker);
    wbt_dbus_stop(bus);
}

int main(int argc, char **argv)
{
    mosquitto_lib_init();
    bench_cost();
    bench_latency(argc > 1 ? (guint)atoi(argv[1]) : 300);
    mosquitto_lib_cleanup();
    return 0;
}
