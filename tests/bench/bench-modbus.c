/* Benchmarks for the emulated meter.  Prints figures; passes or fails
 * nothing.  Run with: meson test -C build --benchmark --verbose
 *
 * 1. Throughput: the same libmodbus client reads the full measurement block
 *    (0x2000 x 70, one request in flight) from the dtsu666 sink and from
 *    libmodbus's own server loop (baseline-server), runs interleaved, the
 *    median of 5 and the ratio pair by pair: Modbus TCP with a static image;
 *    Modbus TCP while the main loop updates the image 100 times a second;
 *    Modbus RTU on a pty pair.  Target: ratio >= 0.9.
 * 2. Freshness: time from publishing a new value to the broker to the first
 *    Modbus read that returns it, p50/p99 over 1000 updates, beside the
 *    broker hop alone (publish -> a subscribed client).  Target: added p99
 *    < 2 ms. */
#include "wbt.h"

#include <errno.h>
#include <math.h>
#include <modbus.h>
#include "mqtt-probe.h"

#define RUNS 5

#define env wbt_env

static modbus_t *client_new(const char *target)
{
    modbus_t *ctx;
    if (g_str_has_prefix(target, "tcp:"))
        ctx = modbus_new_tcp("127.0.0.1", atoi(target + 4));
    else
        ctx = modbus_new_rtu(target + 4, 9600, 'N', 8, 1);
    modbus_set_slave(ctx, 1); /* the meter's unit id, over TCP too */
    modbus_set_response_timeout(ctx, 1, 0);
    if (modbus_connect(ctx) < 0)
        g_error("connect %s: %s", target, modbus_strerror(errno));
    return ctx;
}

/* Reads the block @n times; returns reads per second. */
static double run_reads(const char *target, guint n)
{
    modbus_t *ctx = client_new(target);
    uint16_t regs[70];
    guint errors = 0;
    int last_errno = 0;
    gint64 t0 = g_get_monotonic_time();
    for (guint i = 0; i < n; i++)
        if (modbus_read_registers(ctx, 0x2000, 70, regs) != 70) {
            errors++;
            last_errno = errno;
        }
    gint64 t1 = g_get_monotonic_time();
    modbus_close(ctx);
    modbus_free(ctx);
    if (errors)
        g_error("%s: %u of %u reads failed (%s)", target, errors, n, modbus_strerror(last_errno));
    return n / ((double)(t1 - t0) / 1e6);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, guint n)
{
    double s[64];
    memcpy(s, v, n * sizeof(double));
    qsort(s, n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}


static void compare(const char *title, const char *ours, const char *base, guint n)
{
    double a[RUNS], b[RUNS], r[RUNS];
    run_reads(base, n / 10); /* warm-up */
    run_reads(ours, n / 10);
    for (int k = 0; k < RUNS; k++) {
        b[k] = run_reads(base, n);
        a[k] = run_reads(ours, n);
        r[k] = a[k] / b[k];
    }
    double rmin = r[0], rmax = r[0];
    for (int k = 1; k < RUNS; k++) {
        rmin = MIN(rmin, r[k]);
        rmax = MAX(rmax, r[k]);
    }
    double mb = median(b, RUNS), ma = median(a, RUNS);
    g_print("%-44s %9.0f /s %7.1f us | %9.0f /s %7.1f us | %5.3f (%5.3f..%5.3f)\n", title, mb, 1e6 / mb, ma,
            1e6 / ma, median(r, RUNS), rmin, rmax);
}

static GSubprocess *baseline(const char *mode, const char *where)
{
    g_autofree char *exe = g_build_filename(env("WB_TEST_BUILDDIR"), "tests", "baseline-server", NULL);
    const char *argv[] = {exe, mode, where, NULL};
    GSubprocess *p = wbt_spawn(argv, G_SUBPROCESS_FLAGS_STDERR_PIPE);
    g_autoptr(GDataInputStream) in = g_data_input_stream_new(g_subprocess_get_stderr_pipe(p));
    g_autofree char *line = g_data_input_stream_read_line(in, NULL, NULL, NULL);
    if (g_strcmp0(line, "ready") != 0)
        g_error("baseline-server %s %s: %s", mode, where, line ? line : "(no output)");
    return p;
}

static void baseline_stop(GSubprocess *p)
{
    g_subprocess_send_signal(p, SIGTERM);
    g_subprocess_wait(p, NULL, NULL);
    g_object_unref(p);
}

static const char *WIRING = "point.power = src/power\npoint.power-l1 = src/l1/power\npoint.voltage-l1 = src/l1/voltage\n"
                            "point.current-l1 = src/l1/current\npoint.frequency = src/frequency\nmax-age = 1h\n";

static void bench_throughput(const char *dir)
{
    g_autofree char *conf_a = g_build_filename(dir, "static", NULL);
    g_autofree char *conf_b = g_build_filename(dir, "busy", NULL);
    g_autofree char *state = g_build_filename(dir, "state", NULL);
    /* one row, published once: a static image */
    g_autofree char *t1 = wbt_write(dir, "one-row.csv",
                                    "time,power,l1/power,l1/voltage,l1/current,frequency\n"
                                    "00:00:00,2850,1048,230.9,5.25,50.015\n");
    /* two rows at speed 100: a new value every 10 ms */
    g_autofree char *t2 = wbt_write(dir, "two-rows.csv",
                                    "time,power,l1/power,l1/voltage,l1/current,frequency\n"
                                    "00:00:00,2850,1048,230.9,5.25,50.015\n"
                                    "00:00:01,2851,1049,231.0,5.26,50.010\n");
    WbtPty *pty_ours = wbt_pty_start(dir, "ours");
    WbtPty *pty_base = wbt_pty_start(dir, "base");
    g_autofree char *src_a = g_strdup_printf("[src]\nplugin = replay\ntrace = %s\nloop = false\n", t1);
    g_autofree char *meters = g_strdup_printf("[tcp]\nplugin = dtsu666\ntransport = tcp\nport = 0\n%s\n"
                                              "[rtu]\nplugin = dtsu666\ntransport = rtu\ndevice = %s\n%s",
                                              WIRING, pty_ours->a, WIRING);
    g_free(wbt_write(conf_a, "10-src.conf", src_a));
    g_free(wbt_write(conf_a, "20-meters.conf", meters));
    g_autofree char *src_b = g_strdup_printf("[src]\nplugin = replay\ntrace = %s\nspeed = 100\n", t2);
    g_autofree char *meter_b = g_strdup_printf("[tcp]\nplugin = dtsu666\ntransport = tcp\nport = 0\n%s", WIRING);
    g_free(wbt_write(conf_b, "10-src.conf", src_b));
    g_free(wbt_write(conf_b, "20-meter.conf", meter_b));

    g_autofree char *base_port = g_strdup_printf("%u", wbt_free_port());
    GSubprocess *base_tcp = baseline("tcp", base_port);
    GSubprocess *base_rtu = baseline("rtu", pty_base->a);
    g_autofree char *base = g_strdup_printf("tcp:%s", base_port);
    g_autofree char *base_rtu_target = g_strdup_printf("rtu:%s", pty_base->b);
    g_autofree char *ours_rtu_target = g_strdup_printf("rtu:%s", pty_ours->b);

    g_print("\nThroughput: reads of 0x2000 x 70, one request in flight, median of %d interleaved runs\n", RUNS);
    g_print("%-44s %-22s | %-22s | %s\n", "", "libmodbus server loop", "wattbridge dtsu666", "ratio (min..max)");

    WbtDaemon *a = wbt_daemon_start(conf_a, state, NULL);
    g_autofree char *tcp = wbt_daemon_tcp_target(a, "tcp");
    wbt_daemon_expect_log(a, "\\[tcp\\] serving measurements", 15000);
    wbt_daemon_expect_log(a, "\\[rtu\\] serving measurements", 15000);
    compare("Modbus TCP, static image", tcp, base, 20000);
    compare("Modbus RTU on a pty pair, static image", ours_rtu_target, base_rtu_target, 3000);
    wbt_daemon_stop(a);

    WbtDaemon *b = wbt_daemon_start(conf_b, state, NULL);
    g_autofree char *busy = wbt_daemon_tcp_target(b, "tcp");
    wbt_daemon_expect_log(b, "\\[tcp\\] serving measurements", 15000);
    compare("Modbus TCP, image updated 100 times a second", busy, base, 20000);
    wbt_daemon_stop(b);

    baseline_stop(base_tcp);
    baseline_stop(base_rtu);
    wbt_pty_stop(pty_ours);
    wbt_pty_stop(pty_base);
}

/* ---- freshness ---------------------------------------------------------- */

static void bench_freshness(const char *dir, guint updates)
{
    WbtBroker *broker = wbt_broker_start();
    g_autofree char *conf = g_build_filename(dir, "fresh", NULL);
    g_autofree char *state = g_build_filename(dir, "state2", NULL);
    g_autofree char *src = g_strdup_printf("[bench]\nplugin = mqtt\nhost = 127.0.0.1\nport = %u\n"
                                           "point.power = bench/power\n", broker->port);
    g_free(wbt_write(conf, "10-mqtt.conf", src));
    g_free(wbt_write(conf, "20-meter.conf",
                     "[meter]\nplugin = dtsu666\ntransport = tcp\nport = 0\nphases = 1\nmax-age = 1h\n"
                     "point.power = bench/power\n"));
    WbtDaemon *d = wbt_daemon_start(conf, state, NULL);
    g_autofree char *target = wbt_daemon_tcp_target(d, "meter");
    wbt_daemon_expect_log(d, "\\[bench\\] connected to MQTT broker", 15000);

    mosquitto_lib_init();
    Hop hop = {.expected = -1, .hop = -1};
    struct mosquitto *pub, *sub;
    probe_pair(broker->port, "bench/power", &hop, &pub, &sub);
    modbus_t *ctx = client_new(target);
    GArray *fresh = g_array_new(FALSE, FALSE, sizeof(double));
    GArray *hops = g_array_new(FALSE, FALSE, sizeof(double));
    GArray *added = g_array_new(FALSE, FALSE, sizeof(double));
    guint lost = 0;

    for (guint k = 1; k <= updates + 20; k++) {
        char payload[32];
        int value = 1000 + (int)k;
        g_snprintf(payload, sizeof payload, "%d", value);
        hop.expected = value;
        hop.hop = -1;
        gint64 fresh_us = -1;
        hop.t0 = g_get_monotonic_time();
        probe_publish(pub, "bench/power", payload);
        while ((hop.hop < 0 || fresh_us < 0) && g_get_monotonic_time() - hop.t0 < 2 * G_USEC_PER_SEC) {
            if (hop.hop < 0)
                probe_pump(sub);
            if (fresh_us < 0) {
                uint16_t regs[2];
                if (modbus_read_registers(ctx, 0x2012, 2, regs) == 2 && modbus_get_float_abcd(regs) == value * 10.0f)
                    fresh_us = g_get_monotonic_time() - hop.t0;
            }
        }
        probe_pump(pub);
        if (hop.hop < 0 || fresh_us < 0) {
            lost++;
            continue;
        }
        if (k <= 20)
            continue; /* warm-up */
        double f = (double)fresh_us / 1000, h = (double)hop.hop / 1000, a = f - h;
        g_array_append_val(fresh, f);
        g_array_append_val(hops, h);
        g_array_append_val(added, a);
    }
    g_print("\nFreshness over %u updates (ms): publish to the broker -> ...\n", fresh->len);
    g_print("%-44s p50 %7.3f   p99 %7.3f\n", "... a subscribed MQTT client (broker hop)", wbt_percentile(hops, 50),
            wbt_percentile(hops, 99));
    g_print("%-44s p50 %7.3f   p99 %7.3f\n", "... the first Modbus read returning it", wbt_percentile(fresh, 50),
            wbt_percentile(fresh, 99));
    g_print("%-44s p50 %7.3f   p99 %7.3f   (target: p99 < 2 ms)\n", "added by wattbridge (per update)",
            wbt_percentile(added, 50), wbt_percentile(added, 99));
    if (lost)
        g_print("%u updates never arrived within 2 s\n", lost);

    g_array_unref(fresh);
    g_array_unref(hops);
    g_array_unref(added);
    modbus_close(ctx);
    modbus_free(ctx);
    probe_free(pub);
    probe_free(sub);
    mosquitto_lib_cleanup();
    wbt_daemon_stop(d);
    wbt_broker_stop(broker);
}

int main(int argc, char **argv)
{
    guint updates = argc > 1 ? (guint)atoi(argv[1]) : 1000;
    g_autofree char *dir = wbt_tmpdir_new();
    bench_throughput(dir);
    bench_freshness(dir, updates);
    wbt_tmpdir_free(g_steal_pointer(&dir));
    return 0;
}
