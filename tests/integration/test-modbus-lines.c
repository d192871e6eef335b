/* Integration: the Modbus master on real serial lines (socat pty pairs).
 *
 * - Two devices on one line, served by pymodbus (tests/tools/modbus-slaves.py,
 *   a Modbus implementation we did not write), beside a third that never
 *   answers: the good ones keep their rate, the dead one is disconnected
 *   and probed with back-off, and costs one timeout per poll (fail fast).
 * - Exception answers are counted and logged.
 * - A bulk write from setpoints writes the registers asked for and nothing
 *   else: the whole image is read back afterwards with mbpoll.
 * - An unplugged line (the socat pair killed) is reopened when it returns.
 * - The Growatt night: the inverter (an emulated Growatt in a second
 *   daemon) stops answering, is probed with back-off, comes back with its
 *   power limit at 255, and the limit is written again exactly once. */
#include "wbt.h"

#include <math.h>

static char *slave_map(void)
{
    return g_build_filename(g_getenv("WB_TEST_SRCDIR"), "tests", "maps", "test-slave.map", NULL);
}

/* pymodbus slaves @units on @device; returns once unit @units[0] answers on
 * @master_end (nothing else may hold it). */
static GSubprocess *slaves_start(const char *device, const char *master_end, const char *const *units)
{
    g_autofree char *script = g_build_filename(g_getenv("WB_TEST_SRCDIR"), "tests", "tools", "modbus-slaves.py", NULL);
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, "/usr/bin/python3");
    g_ptr_array_add(argv, script);
    g_ptr_array_add(argv, (char *)device);
    for (int i = 0; units[i]; i++)
        g_ptr_array_add(argv, (char *)units[i]);
    g_ptr_array_add(argv, NULL);
    GSubprocess *proc = wbt_spawn((const char *const *)argv->pdata, G_SUBPROCESS_FLAGS_STDERR_SILENCE);
    g_autofree char *target = g_strdup_printf("rtu:%s", master_end);
    for (int i = 0; i < 100; i++) {
        g_autoptr(WbtRead) r = wbt_mbpoll_read(target, (guint)atoi(units[0]), 3, 0, 1);
        if (r->ok)
            return proc;
        wbt_sleep(100);
    }
    g_error("the pymodbus slaves on %s do not answer", device);
    return NULL;
}

static void slaves_stop(GSubprocess *proc)
{
    g_subprocess_force_exit(proc);
    g_subprocess_wait(proc, NULL, NULL);
    g_object_unref(proc);
}

/* ---- two devices and a dead one on one line ---------------------------------- */

static void test_shared_line(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtPty *pty = wbt_pty_start(s->dir, "bus");
    GSubprocess *slaves = slaves_start(pty->a, pty->b, (const char *const[]){"1", "2", NULL});
    g_autofree char *map = slave_map();
    /* 100 ms polls: the good devices should see about 30 in 3 s */
    g_free(wbt_scratch_conf(s, "10-one.conf",
                            "[one]\nplugin = modbus-device\ndevice = %s\nunit-id = 1\nmap = %s\nrole = grid\n"
                            "fast = h1; h100; i150\nfast-interval = 100ms\nslow = beyond\nslow-interval = 1s\n"
                            "timeout = 200ms\n",
                            pty->b, map));
    g_free(wbt_scratch_conf(s, "20-two.conf",
                            "[two]\nplugin = modbus-device\ndevice = %s\nunit-id = 2\nmap = %s\nrole = grid\n"
                            "fast = h1; i0\nfast-interval = 100ms\ntimeout = 200ms\n",
                            pty->b, map));
    /* never answers: three registers in three requests, 100 ms each */
    g_free(wbt_scratch_conf(s, "30-dead.conf",
                            "[dead]\nplugin = modbus-device\ndevice = %s\nunit-id = 3\nmap = %s\nrole = grid\n"
                            "fast = h1; h100; i150\nfast-interval = 100ms\ntimeout = 100ms\nretries = 0\n"
                            "disconnect-after = 3\nbackoff = 1s\n",
                            pty->b, map));
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);

    wbt_daemon_expect_point(d, "one/register/h1", 101, 0, 10000);
    wbt_daemon_expect_point(d, "one/register/h100", 200, 0, 5000);
    wbt_daemon_expect_point(d, "one/register/i150", 1150, 0, 5000);
    wbt_daemon_expect_point(d, "two/register/h1", 201, 0, 5000);
    wbt_daemon_expect_point(d, "two/register/i0", 2000, 0, 5000);
    /* the dead one: disconnected after three polls, probed every second */
    wbt_daemon_expect_log(d, "\\[dead\\] unit 3 on .* does not answer \\(3 polls in a row\\); disconnected, "
                             "probing every 1 s", 10000);
    wbt_daemon_expect_point(d, "dead/modbus/connected", 0, 0, 5000);

    /* the good devices keep their rate beside it */
    guint one0 = wbt_daemon_count_point(d, "one/register/h1"), two0 = wbt_daemon_count_point(d, "two/register/h1");
    g_autofree char *sent0 = wbt_daemon_last_point(d, "dead/modbus/requests");
    wbt_sleep(3000);
    guint one = wbt_daemon_count_point(d, "one/register/h1") - one0;
    guint two = wbt_daemon_count_point(d, "two/register/h1") - two0;
    g_autofree char *sent = wbt_daemon_last_point(d, "dead/modbus/requests");
    double probes = g_ascii_strtod(sent, NULL) - g_ascii_strtod(sent0, NULL);
    g_test_message("in 3 s: unit 1 read %u times, unit 2 %u times; the dead unit 3 was probed %.0f times", one, two,
                   probes);
    g_assert_cmpuint(one, >=, 24);
    g_assert_cmpuint(two, >=, 24);
    /* polled every 100 ms, but on the line only once a second; each probe
     * one request, not three (fail fast) */
    g_assert_cmpfloat(probes, >=, 1);
    g_assert_cmpfloat(probes, <=, 4);
    g_autofree char *timeouts = wbt_daemon_last_point(d, "dead/modbus/timeout/errors");
    g_assert_cmpstr(sent, ==, timeouts);
    g_assert_cmpfloat(g_ascii_strtod(sent, NULL), <=, 3 + 6);

    /* exception 02 for an address the device does not have */
    wbt_daemon_expect_log(d, "\\[one\\] unit 1 on .* answers a slow read with exception 2", 5000);
    g_autofree char *exceptions = wbt_daemon_last_point(d, "one/modbus/exception/errors");
    g_assert_cmpfloat(g_ascii_strtod(exceptions, NULL), >=, 1);
    g_autofree char *code2 = wbt_daemon_last_point(d, "one/modbus/exception-02/errors");
    g_assert_cmpstr(code2, ==, exceptions);
    g_assert_null(wbt_daemon_last_point(d, "one/register/beyond"));

    wbt_daemon_stop(d);
    slaves_stop(slaves);
    wbt_pty_stop(pty);
}

/* ---- a bulk write touches nothing else ---------------------------------------- */

static guint count_in(const char *text, const char *needle)
{
    guint n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_bulk_write(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtPty *pty = wbt_pty_start(s->dir, "bus");
    GSubprocess *slaves = slaves_start(pty->a, pty->b, (const char *const[]){"1", NULL});
    g_autofree char *map = slave_map();
    /* setpoints for h1, h2 (adjacent) and h4 (a u32 at 4..5), not h3 */
    g_free(wbt_scratch_conf(s, "10-ctl.conf",
                            "[ctl]\nplugin = good\nname = x\ninterval = 200ms\n"
                            "point.a = 1111\npoint.b = 2222\npoint.c = 123456\n"));
    g_free(wbt_scratch_conf(s, "20-dev.conf",
                            "[dev]\nplugin = modbus-device\ndevice = %s\nunit-id = 1\nmap = %s\nrole = grid\n"
                            "fast = h0\nfast-interval = 200ms\nslow = h1; h3\ntrace = true\nmax-age = 5s\n"
                            "setpoint.h1 = ctl/a\nfallback.h1 = 1111\n"
                            "setpoint.h2 = ctl/b\nfallback.h2 = 2222\n"
                            "setpoint.h4 = ctl/c\nfallback.h4 = 123456\n",
                            pty->b, map));
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = dev/register/#\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    wbt_daemon_expect_point(d, "dev/register/h1", 1111, 0, 10000);
    wbt_daemon_expect_point(d, "dev/register/h2", 2222, 0, 5000);
    wbt_daemon_expect_point(d, "dev/register/h4", 123456, 0, 5000);
    /* one FC16 for h1..h2 and one for h4..h5: 123456 = 0x0001E240 */
    wbt_daemon_expect_log(d, "\\[dev\\] unit 1 on .* -> 01 10 00 01 00 02 04 04 57 08 AE \\(\\+CRC\\)", 1000);
    wbt_daemon_expect_log(d, "\\[dev\\] unit 1 on .* -> 01 10 00 04 00 02 04 00 01 E2 40 \\(\\+CRC\\)", 1000);
    g_assert_cmpuint(wbt_daemon_count_log(d, "-> 01 10 "), ==, 2);
    g_assert_cmpuint(wbt_daemon_count_log(d, "-> 01 06 "), ==, 0);
    /* stopping writes the fallbacks only where the device differs: here nowhere */
    g_autofree char *log = wbt_daemon_stop_log(d);
    guint n16 = count_in(log, "-> 01 10 "), n06 = count_in(log, "-> 01 06 ");
    if (n16 != 2 || n06 != 0)
        g_error("after stopping: %u FC16 and %u FC06 writes, expected 2 and 0:\n%s", n16, n06, log);

    /* the whole image: only h1, h2, h4 and h5 changed */
    g_autofree char *target = g_strdup_printf("rtu:%s", pty->b);
    g_autoptr(WbtRead) r = wbt_mbpoll_read(target, 1, 3, 0, 100);
    g_assert_true(r->ok);
    for (guint i = 0; i < 100; i++) {
        guint16 want = (guint16)(100 + i);
        if (i == 1)
            want = 1111;
        else if (i == 2)
            want = 2222;
        else if (i == 4)
            want = 0x0001;
        else if (i == 5)
            want = 0xE240;
        if (g_array_index(r->words, guint16, i) != want)
            g_error("holding %u is %u after the write, expected %u", i, g_array_index(r->words, guint16, i), want);
    }
    slaves_stop(slaves);
    wbt_pty_stop(pty);
}

/* ---- a setpoint's lease ----------------------------------------------------------- */

/* The setpoint comes over MQTT: out of range, invalid and stale, the
 * register gets its fallback, once each time. */
static void test_setpoint_fallback(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtBroker *broker = wbt_broker_start();
    WbtPty *pty = wbt_pty_start(s->dir, "bus");
    GSubprocess *slaves = slaves_start(pty->a, pty->b, (const char *const[]){"1", NULL});
    g_autofree char *map = slave_map();
    g_free(wbt_scratch_conf(s, "10-ctl.conf",
                            "[ctl]\nplugin = mqtt\nhost = 127.0.0.1\nport = %u\nreconnect-delay = 100ms\n"
                            "invalid-when = Status=-1\npoint.limit = ctl/limit; Limit\n",
                            broker->port));
    g_free(wbt_scratch_conf(s, "20-dev.conf",
                            "[dev]\nplugin = modbus-device\ndevice = %s\nunit-id = 1\nmap = %s\nrole = grid\n"
                            "fast = h0\nfast-interval = 100ms\nmax-age = 1s\nmin-write-interval = 200ms\n"
                            "setpoint.h1 = ctl/limit\nfallback.h1 = 77\n",
                            pty->b, map));
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = dev/register/h1\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    wbt_daemon_expect_log(d, "\\[ctl\\] connected to MQTT broker", 10000);
    /* nothing published yet: the fallback */
    wbt_daemon_expect_point(d, "dev/register/h1", 77, 0, 10000);
    wbt_daemon_expect_log(d, "setpoint ctl/limit is not published yet: h1 gets its fallback 77", 1000);

    WbtRepeater *ctl = wbt_repeat(broker, "ctl/limit", "{\"Status\":1,\"Limit\":50}", 100);
    wbt_daemon_expect_point(d, "dev/register/h1", 50, 0, 5000);
    wbt_daemon_expect_log(d, "setpoint ctl/limit is valid again \\(50\\)", 1000);

    /* out of range for a u16: the fallback, not a wrapped value */
    wbt_repeater_set_payload(ctl, "{\"Status\":1,\"Limit\":-5}");
    wbt_daemon_expect_log(d, "setpoint ctl/limit is out of range: h1: -5 \\(raw -5\\) does not fit u16 .*: h1 gets "
                             "its fallback 77", 5000);
    wbt_daemon_expect_point(d, "dev/register/h1", 77, 0, 5000);

    wbt_repeater_set_payload(ctl, "{\"Status\":1,\"Limit\":60}");
    wbt_daemon_expect_point(d, "dev/register/h1", 60, 0, 5000);

    /* the source says it has no value */
    wbt_repeater_set_payload(ctl, "{\"Status\":-1}");
    wbt_daemon_expect_log(d, "setpoint ctl/limit is invalid: h1 gets its fallback 77", 5000);
    wbt_daemon_expect_point(d, "dev/register/h1", 77, 0, 5000);

    wbt_repeater_set_payload(ctl, "{\"Status\":1,\"Limit\":70}");
    wbt_daemon_expect_point(d, "dev/register/h1", 70, 0, 5000);

    /* the source goes silent: after max-age, the fallback, once */
    wbt_repeater_stop(ctl);
    wbt_daemon_expect_log(d, "setpoint ctl/limit is stale: h1 gets its fallback 77", 5000);
    wbt_daemon_expect_point(d, "dev/register/h1", 77, 0, 5000);
    guint writes = wbt_daemon_count_log(d, "writing h1 = ");
    wbt_sleep(1500);
    g_assert_cmpuint(wbt_daemon_count_log(d, "writing h1 = "), ==, writes);
    /* 77 (start), 50, 77, 60, 77, 70, 77 */
    g_assert_cmpuint(writes, ==, 7);

    wbt_daemon_stop(d);
    slaves_stop(slaves);
    wbt_pty_stop(pty);
    wbt_broker_stop(broker);
}

/* ---- unplug and replug --------------------------------------------------------- */

static void test_unplug(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtPty *pty = wbt_pty_start(s->dir, "usb");
    /* an emulated SDM230 on one end, its reader on the other: both reopen */
    g_free(wbt_scratch_conf(s, "10-src.conf", "[src]\nplugin = good\nname = x\ninterval = 100ms\npoint.power = 1234.5\n"));
    g_free(wbt_scratch_conf(s, "20-meter.conf",
                            "[meter]\nplugin = meter-emulator\nmap = eastron-sdm230\ndevice = %s\n"
                            "point.power = src/power\nmax-age = 2s\nreopen-delay = 200ms\n",
                            pty->a));
    g_free(wbt_scratch_conf(s, "30-grid.conf",
                            "[grid]\nplugin = modbus-device\nmap = eastron-sdm230\ndevice = %s\nrole = grid\n"
                            "fast = ActivePower\nfast-interval = 100ms\ntimeout = 200ms\nreopen-delay = 200ms\n",
                            pty->b));
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = grid/#\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    wbt_daemon_expect_point(d, "grid/power", 1234.5, 0, 10000);

    wbt_pty_stop(pty); /* unplugged */
    wbt_daemon_expect_log(d, "\\[grid\\] .*usb-b failed: .*; reopening in 0.2 s", 5000);
    wbt_daemon_expect_log(d, "cannot open Modbus port .*usb-b: .*; retrying every 0.2 s", 5000);
    guint before = wbt_daemon_count_point(d, "grid/power");
    wbt_sleep(1000);
    g_assert_cmpuint(wbt_daemon_count_point(d, "grid/power"), ==, before);

    pty = wbt_pty_start(s->dir, "usb"); /* back, at the same path */
    wbt_daemon_expect_log(d, "notice: Modbus port .*usb-b open", 5000);
    g_assert_cmpuint(wbt_daemon_count_log(d, "\\[meter\\] serving Modbus RTU on"), >=, 2);
    wbt_daemon_expect_point_count(d, "grid/power", before + 5, 5000);
    g_assert_cmpuint(wbt_daemon_count_point(d, "grid/power"), >=, before + 5);
    wbt_daemon_expect_point(d, "grid/power", 1234.5, 0, 1000);
    wbt_daemon_stop(d);
    wbt_pty_stop(pty);
}

/* ---- the Growatt night -------------------------------------------------------- */

static WbtDaemon *inverter_start(WbtScratch *s, const char *confdir)
{
    g_autofree char *state = g_build_filename(s->dir, "inverter-state", NULL);
    WbtDaemon *d = wbt_daemon_start(confdir, state, NULL);
    wbt_daemon_expect_log(d, "\\[inverter\\] serving Modbus RTU on", 10000);
    return d;
}

static void test_growatt_night(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtPty *pty = wbt_pty_start(s->dir, "rs485");
    /* the inverter: an emulated Growatt MIN in a daemon of its own */
    g_autofree char *inv_conf = g_build_filename(s->dir, "inverter.d", NULL);
    g_mkdir_with_parents(inv_conf, 0700);
    g_autofree char *inv_text = g_strdup_printf(
        "[sun]\nplugin = good\nname = x\ninterval = 100ms\npoint.power = 3380.2\n\n"
        "[inverter]\nplugin = meter-emulator\nmap = growatt-min-tl-x\ndevice = %s\npoint.power = sun/power\n"
        "max-age = 2s\n", pty->a);
    g_autofree char *inv_file = g_build_filename(inv_conf, "10-inverter.conf", NULL);
    g_assert_true(g_file_set_contents(inv_file, inv_text, -1, NULL));
    WbtDaemon *inv = inverter_start(s, inv_conf);

    /* the gateway: reads it, and holds its limit at 50 % */
    g_free(wbt_scratch_conf(s, "10-ctl.conf", "[ctl]\nplugin = good\nname = x\ninterval = 100ms\npoint.limit = 50\n"));
    g_free(wbt_scratch_conf(s, "20-growatt.conf",
                            "[growatt]\nplugin = modbus-device\nmap = growatt-min-tl-x\ndevice = %s\nrole = pv\n"
                            "fast = Pac\nfast-interval = 200ms\ntimeout = 150ms\nretries = 0\n"
                            "disconnect-after = 2\nbackoff = 500ms\nmin-write-interval = 1s\nmin-delay = 20ms\n"
                            "setpoint.ActivePRate = ctl/limit\nfallback.ActivePRate = 100\n",
                            pty->b));
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = growatt/#\n"));
    WbtDaemon *gw = wbt_scratch_daemon(s);
    wbt_daemon_expect_point(gw, "growatt/power", 3380.2, 1e-6, 10000);
    wbt_daemon_expect_point(gw, "growatt/register/ActivePRate", 50, 0, 5000);
    wbt_daemon_expect_log(inv, "\\[inverter\\] write: ActivePRate = 50 %", 2000);
    g_assert_cmpuint(wbt_daemon_count_log(gw, "writing ActivePRate = 50 %"), ==, 1);

    /* night: the inverter goes away */
    wbt_daemon_stop(inv);
    wbt_daemon_expect_log(gw, "\\[growatt\\] unit 1 on .* does not answer \\(2 polls in a row\\); disconnected, "
                              "probing every 0.5 s", 5000);
    wbt_daemon_expect_point(gw, "growatt/modbus/connected", 0, 0, 2000);
    wbt_sleep(1500); /* a few probes in the dark */
    g_assert_cmpuint(wbt_daemon_count_log(gw, "writing ActivePRate = "), ==, 1);

    /* morning: it answers again, with the limit back at 255 */
    /* the first write at start-up logged the same line: wait for a second */
    const char *rewrite = "writing ActivePRate = 50 % \\(the device has 255 %\\)";
    guint rewrites = wbt_daemon_count_log(gw, rewrite);
    g_assert_cmpuint(rewrites, ==, 1);
    inv = inverter_start(s, inv_conf);
    wbt_daemon_expect_log(gw, "\\[growatt\\] unit 1 on .* answers again", 5000);
    wbt_daemon_expect_log_count(gw, rewrite, rewrites + 1, 5000);
    wbt_daemon_expect_point(gw, "growatt/register/ActivePRate", 50, 0, 5000);
    wbt_sleep(2500); /* past min-write-interval: nothing more to write */
    g_assert_cmpuint(wbt_daemon_count_log(gw, "writing ActivePRate = "), ==, 2);
    g_assert_cmpuint(wbt_daemon_count_log(inv, "write: ActivePRate = "), ==, 1);

    /* the gateway stops: the limit goes to its fallback, once */
    wbt_daemon_stop(gw);
    wbt_daemon_expect_log(inv, "\\[inverter\\] write: ActivePRate = 100 %", 2000);
    g_assert_cmpuint(wbt_daemon_count_log(inv, "write: ActivePRate = "), ==, 2);
    wbt_daemon_stop(inv);
    wbt_pty_stop(pty);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/modbus/line/shared", test_shared_line);
    g_test_add_func("/modbus/line/bulk-write", test_bulk_write);
    g_test_add_func("/modbus/line/setpoint-fallback", test_setpoint_fallback);
    g_test_add_func("/modbus/line/unplug", test_unplug);
    g_test_add_func("/modbus/line/growatt-night", test_growatt_night);
    return g_test_run();
}
