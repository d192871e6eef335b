/* Benchmarks for the Modbus master (ports and modbus-device).  Prints
 * figures; judges nothing.  Run with: meson test -C build --benchmark --verbose
 *
 * 1. Cycle time per device: every shipped map served by meter-emulator and
 *    read by modbus-device over a socat pty pair (a pty has no baud rate:
 *    what it measures is our software and the map's min-delay), beside the
 *    planner's model at the map's baud rate, and the model's delays alone.
 * 2. CPU time per transaction of the wattbridge daemon polling one device,
 *    beside libmodbus's own master loop (baseline-client) on the same line
 *    at the same rate, and back to back.
 * 3. Peak RSS with 8 devices on 2 ports (pymodbus slaves) polled at 1 Hz
 *    for a minute, beside the same daemon idle, and the RSS over time. */
#include "wbt.h"

#include <wattbridge/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define env wbt_env

/* A daemon without --verbose (logging is part of what costs). */
#define quiet_daemon wbt_daemon_start_quiet
#define status_kib wbt_proc_status_kib

static int compare_doubles(gconstpointer a, gconstpointer b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- 1. cycle time -------------------------------------------------------------- */

typedef struct {
    const char *map;
    const char *wiring;
    const char *reader;
} Device;

#define WIRING "point.power = src/power\npoint.voltage-l1 = src/l1/voltage\npoint.frequency = src/frequency\n"
static const Device devices[] = {
    {"chint-dtsu666", WIRING, "role = grid\nfast = Pt@0x2012; Ua@0x2006; Ub@0x2008; Uc@0x200A; Freq@0x2044; ImpEp@0x101E\n"},
    {"huawei-dtsu666-h", WIRING, "role = grid\nfast = Pt; Pa; Pb; Pc; Ua; Ub; Uc; Freq; ImpEp; ExpEp\n"},
    {"eastron-sdm120", WIRING, "role = grid\nfast = ActivePower; Voltage; Current; Frequency; ImportActiveEnergy\n"},
    {"eastron-sdm230", WIRING, "role = grid\nfast = ActivePower; Voltage; Current; Frequency; ImportActiveEnergy\n"},
    {"eastron-sdm630", WIRING,
     "role = grid\nfast = TotalActivePower; ActivePower1; ActivePower2; ActivePower3; Voltage1; Voltage2; Voltage3; "
     "Frequency; ImportActiveEnergy; ExportActiveEnergy\n"},
    {"growatt-min-tl-x", WIRING, "role = pv\nfast = Pac; Vac1; Fac; EacTotal; Iac1; Vpv1; Temp1; ActivePRate\n"},
    {"growatt-mid-tl3-x", WIRING, "role = pv\nfast = Ppv; Pac; Vac1; Vac2; Vac3; Fac; EacTotal; ActivePRate\n"},
    {"sungrow-sh", "point.voltage-l1 = src/l1/voltage\n",
     "role = battery\nfast = BatteryPower; BatterySOC; BatteryTemperature; PhaseAVoltage; RunningState; "
     "PowerFlowStatus; LoadPower; BatteryVoltage\n"},
};

static void bench_cycles(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_free(wbt_scratch_conf(s, "10-src.conf",
                            "[src]\nplugin = good\nname = x\ninterval = 200ms\npoint.power = 1500\n"
                            "point.l1/voltage = 230.9\npoint.frequency = 50\n"));
    WbtPty *ptys[G_N_ELEMENTS(devices)];
    for (gsize i = 0; i < G_N_ELEMENTS(devices); i++) {
        const Device *dv = &devices[i];
        ptys[i] = wbt_pty_start(s->dir, dv->map);
        g_autofree char *emu = g_strdup_printf("20-emu-%zu.conf", i);
        g_autofree char *dev = g_strdup_printf("30-dev-%zu.conf", i);
        g_free(wbt_scratch_conf(s, emu, "[emu-%s]\nplugin = meter-emulator\nmap = %s\ndevice = %s\nmax-age = 30s\n%s",
                                dv->map, dv->map, ptys[i]->a, dv->wiring));
        g_free(wbt_scratch_conf(s, dev,
                                "[dev-%s]\nplugin = modbus-device\nmap = %s\ndevice = %s\nfast-interval = 5s\n%s",
                                dv->map, dv->map, ptys[i]->b, dv->reader));
    }
    WbtDaemon *d = wbt_scratch_daemon(s);
    /* five cycles each (the Growatt's take a few seconds at 850 ms a request) */
    wbt_sleep(22000);
    g_autofree char *log = wbt_daemon_stop_log(d);
    for (gsize i = 0; i < G_N_ELEMENTS(devices); i++)
        wbt_pty_stop(ptys[i]);

    printf("\n1. Read cycle of a fast group over a pty pair (no baud limit) beside the planner's model\n");
    printf("%-18s %4s %4s %7s %12s %12s %12s %8s\n", "map", "regs", "reqs", "delay", "model 9600", "model delays",
           "measured", "cycles");
    for (gsize i = 0; i < G_N_ELEMENTS(devices); i++) {
        const Device *dv = &devices[i];
        g_autofree char *plan_re = g_strdup_printf("\\[dev-%s\\] fast group: (\\d+) registers in (\\d+) requests, "
                                                   "([0-9.]+) s a cycle", dv->map);
        g_autoptr(GRegex) re = g_regex_new(plan_re, 0, 0, NULL);
        g_autoptr(GMatchInfo) m = NULL;
        if (!g_regex_match(re, log, 0, &m))
            g_error("no plan logged for %s", dv->map);
        g_autofree char *regs = g_match_info_fetch(m, 1), *reqs = g_match_info_fetch(m, 2);
        g_autofree char *model = g_match_info_fetch(m, 3);
        g_autofree char *cyc_re = g_strdup_printf("\\[dev-%s\\] fast group: \\d+ requests in ([0-9.]+) ms", dv->map);
        g_autoptr(GRegex) re2 = g_regex_new(cyc_re, 0, 0, NULL);
        g_autoptr(GMatchInfo) m2 = NULL;
        g_autoptr(GArray) times = g_array_new(FALSE, FALSE, sizeof(double));
        g_regex_match(re2, log, 0, &m2);
        while (g_match_info_matches(m2)) {
            g_autofree char *t = g_match_info_fetch(m2, 1);
            double v = g_ascii_strtod(t, NULL);
            g_array_append_val(times, v);
            g_match_info_next(m2, NULL);
        }
        if (times->len > 1)
            g_array_remove_index(times, 0); /* the first opens the line */
        g_array_sort(times, compare_doubles);
        double median = times->len ? g_array_index(times, double, times->len / 2) : NAN;
        /* the model's delay part: min-delay + turnaround per request */
        g_autofree char *path = g_build_filename(env("WB_TEST_SRCDIR"), "data", "devices", NULL);
        g_autofree char *file = g_strdup_printf("%s/%s.map", path, dv->map);
        g_autoptr(GError) error = NULL;
        g_autoptr(WbMap) map = wb_map_load_file(file, &error);
        g_assert_no_error(error);
        double delay = (double)(wb_map_get_min_delay(map) + wb_map_get_turnaround(map)) / 1e6;
        printf("%-18s %4s %4s %5.0fms %10.1f ms %10.1f ms %10.1f ms %8u\n", dv->map, regs, reqs, delay * 1000,
               g_ascii_strtod(model, NULL) * 1000, delay * atoi(reqs) * 1000, median, times->len);
    }
    printf("   (measured includes the min-delay paid before each request but the first of a cycle: the line was "
           "idle)\n");
}

/* ---- 2. CPU per transaction -------------------------------------------------------- */

/* wattbridge polling Pt every 10 ms for @seconds: CPU and requests. */
static void run_wattbridge(const char *line, double seconds, double *cpu, double *requests)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_free(wbt_scratch_conf(s, "10-dev.conf",
                            "[dev]\nplugin = modbus-device\nmap = chint-dtsu666\ndevice = %s\nrole = grid\n"
                            "fast = Pt@0x2012\nfast-interval = 10ms\n", line));
    WbtDaemon *d = quiet_daemon(s);
    wbt_sleep(1000);
    double c0 = wbt_cpu_us(wbt_daemon_pid(d));
    gint64 t0 = g_get_monotonic_time();
    wbt_sleep((guint)(seconds * 1000));
    double c1 = wbt_cpu_us(wbt_daemon_pid(d));
    gint64 t1 = g_get_monotonic_time();
    g_autofree char *log = wbt_daemon_stop_log(d);
    gint64 t2 = g_get_monotonic_time();
    const char *at = strstr(log, " requests, ");
    if (!at)
        g_error("no request count in the daemon's log:\n%s", log);
    while (at > log && at[-1] != ' ')
        at--;
    /* the share of the requests made in the measured window (the rate is steady) */
    *requests = g_ascii_strtod(at, NULL) * (double)(t1 - t0) / (double)(t2 - t0 + G_USEC_PER_SEC);
    *cpu = c1 - c0;
}

static void run_baseline(const char *line, double seconds, const char *interval, double *cpu, double *requests)
{
    g_autofree char *client = g_build_filename(env("WB_TEST_BUILDDIR"), "tests", "baseline-client", NULL);
    g_autofree char *secs = g_strdup_printf("%g", seconds);
    const char *argv[] = {client, line, "1", "0x2012", "2", secs, interval, NULL};
    g_autofree char *out = NULL;
    g_assert_cmpint(wbt_run(argv, (guint)(seconds * 1000) + 10000, &out, NULL), ==, 0);
    long req = 0, err = 0, us = 0;
    g_assert_cmpint(sscanf(out, "requests %ld errors %ld cpu-us %ld", &req, &err, &us), ==, 3);
    *requests = (double)req;
    *cpu = (double)us;
}

static double median3(double *v)
{
    qsort(v, 3, sizeof *v, (int (*)(const void *, const void *))compare_doubles);
    return v[1];
}

static void bench_cpu(void)
{
    g_autoptr(WbtScratch) es = wbt_scratch_new();
    WbtPty *pty = wbt_pty_start(es->dir, "line");
    g_free(wbt_scratch_conf(es, "10-meter.conf",
                            "[src]\nplugin = good\nname = x\ninterval = 200ms\npoint.power = 1500\n\n"
                            "[meter]\nplugin = meter-emulator\nmap = chint-dtsu666\ndevice = %s\npoint.power = src/power\n"
                            "max-age = 60s\n", pty->a));
    WbtDaemon *meter = wbt_scratch_daemon(es);
    wbt_daemon_expect_log(meter, "\\[meter\\] serving Modbus RTU", 10000);
    const double seconds = 5;
    /* three rounds, interleaved; the median of each */
    double ours[3], paced[3], b2b[3], n_ours[3], n_paced[3], n_b2b[3];
    for (int r = 0; r < 3; r++) {
        double cpu, n;
        run_wattbridge(pty->b, seconds, &cpu, &n);
        ours[r] = cpu / n;
        n_ours[r] = n;
        run_baseline(pty->b, seconds, "10", &cpu, &n);
        paced[r] = cpu / n;
        n_paced[r] = n;
        run_baseline(pty->b, seconds, NULL, &cpu, &n);
        b2b[r] = cpu / n;
        n_b2b[r] = n;
    }
    wbt_daemon_stop(meter);
    wbt_pty_stop(pty);

    printf("\n2. CPU time per transaction (read 2 registers of the emulated DTSU666 over a pty; median of 3 runs "
           "of %g s, interleaved)\n", seconds);
    printf("%-44s %10s %14s\n", "master", "requests", "CPU/request");
    printf("%-44s %10.0f %11.1f us\n", "wattbridge modbus-device, every 10 ms", median3(n_ours), median3(ours));
    printf("%-44s %10.0f %11.1f us\n", "libmodbus loop, every 10 ms (baseline)", median3(n_paced), median3(paced));
    printf("%-44s %10.0f %11.1f us\n", "libmodbus loop, back to back (baseline)", median3(n_b2b), median3(b2b));
    printf("   ratio wattbridge / libmodbus at the same rate: %.2f (wattbridge also runs a timer, hands the job to\n"
           "   its port thread and back, decodes and publishes the point each poll)\n", ours[1] / paced[1]);
}

/* ---- 3. memory ------------------------------------------------------------------------ */

static void bench_memory(void)
{
    const guint minute = g_getenv("WB_BENCH_MINUTE_MS") ? (guint)atoi(g_getenv("WB_BENCH_MINUTE_MS")) : 60000;
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_autofree char *script = g_build_filename(env("WB_TEST_SRCDIR"), "tests", "tools", "modbus-slaves.py", NULL);
    g_autofree char *map = g_build_filename(env("WB_TEST_SRCDIR"), "tests", "maps", "test-slave.map", NULL);
    WbtPty *ptys[2];
    GSubprocess *slaves[2];
    for (int p = 0; p < 2; p++) {
        g_autofree char *name = g_strdup_printf("bus%d", p);
        ptys[p] = wbt_pty_start(s->dir, name);
        const char *argv[] = {"/usr/bin/python3", script, ptys[p]->a, "1", "2", "3", "4", NULL};
        slaves[p] = wbt_spawn(argv, G_SUBPROCESS_FLAGS_STDERR_SILENCE);
        for (int unit = 1; unit <= 4; unit++) {
            g_autofree char *file = g_strdup_printf("%d%d-dev.conf", p, unit);
            g_free(wbt_scratch_conf(s, file,
                                    "[dev-%d-%d]\nplugin = modbus-device\ndevice = %s\nunit-id = %d\nmap = %s\n"
                                    "role = grid\nfast = h1; h100; i150\nfast-interval = 1s\nslow = h0; h6\n"
                                    "slow-interval = 10s\n", p, unit, ptys[p]->b, unit, map));
        }
    }
    wbt_sleep(2000); /* pymodbus starts */
    WbtDaemon *d = quiet_daemon(s);
    wbt_sleep(5000);
    double rss5 = status_kib(wbt_daemon_pid(d), "VmRSS:");
    wbt_sleep(minute / 2 > 5000 ? minute / 2 - 5000 : 0);
    double rss30 = status_kib(wbt_daemon_pid(d), "VmRSS:");
    wbt_sleep(minute / 2);
    double rss60 = status_kib(wbt_daemon_pid(d), "VmRSS:");
    double hwm = status_kib(wbt_daemon_pid(d), "VmHWM:");
    g_autofree char *log = wbt_daemon_stop_log(d);
    guint summaries = 0;
    double requests = 0, timeouts = 0;
    for (const char *at = strstr(log, " requests, "); at; at = strstr(at + 1, " requests, ")) {
        const char *num = at;
        while (num > log && num[-1] != ' ')
            num--;
        requests += g_ascii_strtod(num, NULL);
        timeouts += g_ascii_strtod(at + strlen(" requests, "), NULL);
        summaries++;
    }
    for (int p = 0; p < 2; p++) {
        g_subprocess_force_exit(slaves[p]);
        g_subprocess_wait(slaves[p], NULL, NULL);
        g_object_unref(slaves[p]);
        wbt_pty_stop(ptys[p]);
    }

    /* the same daemon with nothing to do */
    g_autoptr(WbtScratch) idle_s = wbt_scratch_new();
    g_free(wbt_scratch_conf(idle_s, "10-idle.conf", "[idle]\nplugin = good\nname = x\n"));
    WbtDaemon *idle = quiet_daemon(idle_s);
    wbt_sleep(5000);
    double idle_hwm = status_kib(wbt_daemon_pid(idle), "VmHWM:");
    wbt_daemon_stop(idle);

    printf("\n3. Memory: 8 devices on 2 ports (pymodbus slaves, 4 units each) polled at 1 Hz for %.0f s\n",
           minute / 1000.0);
    printf("   %u devices, %.0f requests, %.0f timeouts\n", summaries, requests, timeouts);
    printf("   peak RSS: %.0f KiB   (idle daemon, baseline: %.0f KiB; difference %.0f KiB)\n", hwm, idle_hwm,
           hwm - idle_hwm);
    printf("   RSS at 5 s %.0f KiB, at %.0f s %.0f KiB, at %.0f s %.0f KiB\n", rss5, minute / 2000.0, rss30,
           minute / 1000.0, rss60);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    bench_cycles();
    bench_cpu();
    bench_memory();
    return 0;
}
