/* Integration: replay -> dtsu666 on Modbus TCP, read with mbpoll.
 *
 * Expected register words are literals from shared/reference/
 * register-maps.md (section 1.6 test vectors and Appendix A), never
 * computed with our encoder or read from our map. */
#include "wbt.h"

#include <math.h>

/* The OpenEMS test vectors (register-maps.md 1.6) as a trace. */
static const char trace[] =
    "time,pv/power,pv/l1/power,pv/l2/power,pv/l3/power,pv/l1/voltage,pv/l2/voltage,pv/l3/voltage,"
    "pv/l1/current,pv/l2/current,pv/l3/current,pv/frequency,pv/energy-import,rev/power,rev/energy-import\n"
    "00:00:00,2850,1048,1089,713,230.9,231.1,230.7,5.25,4.7,4.1,50.015,5678.234,1500,12.5\n"
    "00:00:01,2850,1048,1089,713,230.9,231.1,230.7,5.25,4.7,4.1,50.015,5678.234,1500,12.5\n"
    "00:00:02,2850,1048,1089,713,230.9,231.1,230.7,5.25,4.7,4.1,50.015,5678.234,1500,12.5\n";

static const char meter_conf[] =
    "[meter]\n"
    "plugin = dtsu666\n"
    "transport = tcp\n"
    "port = 0\n"
    "max-age = 1s\n"
    "point.power = trace/pv/power\n"
    "point.power-l1 = trace/pv/l1/power\n"
    "point.power-l2 = trace/pv/l2/power\n"
    "point.power-l3 = trace/pv/l3/power\n"
    "point.voltage-l1 = trace/pv/l1/voltage\n"
    "point.voltage-l2 = trace/pv/l2/voltage\n"
    "point.voltage-l3 = trace/pv/l3/voltage\n"
    "point.current-l1 = trace/pv/l1/current\n"
    "point.current-l2 = trace/pv/l2/current\n"
    "point.current-l3 = trace/pv/l3/current\n"
    "point.frequency = trace/pv/frequency\n"
    "point.energy-import = trace/pv/energy-import\n"
    "\n"
    "[reverse]\n"
    "plugin = dtsu666\n"
    "transport = tcp\n"
    "port = 0\n"
    "unit-id = 3\n"
    "max-age = 1s\n"
    "direction = reverse\n"
    "phases = 1\n"
    "point.power = trace/rev/power\n"
    "point.energy-import = trace/rev/energy-import\n";

typedef struct {
    WbtScratch *s;
    WbtDaemon *daemon;
    char *meter;    /* "tcp:PORT" */
    char *reverse;
} Fixture;

static void setup(Fixture *f, gconstpointer data)
{
    f->s = wbt_scratch_new();
    g_autofree char *tpath = wbt_scratch_write(f->s, "trace.csv", "%s", trace);
    g_autofree char *src = g_strdup_printf("[trace]\nplugin = replay\ntrace = %s\nspeed = 10\n", tpath);
    g_free(wbt_scratch_conf(f->s, "10-trace.conf", "%s", src));
    g_free(wbt_scratch_conf(f->s, "20-meter.conf", "%s", meter_conf));
    f->daemon = wbt_scratch_daemon(f->s);
    f->meter = wbt_daemon_tcp_target(f->daemon, "meter");
    f->reverse = wbt_daemon_tcp_target(f->daemon, "reverse");
    wbt_daemon_expect_log(f->daemon, "\\[meter\\] serving measurements", 10000);
    wbt_daemon_expect_log(f->daemon, "\\[reverse\\] serving measurements", 10000);
}

static void teardown(Fixture *f, gconstpointer data)
{
    wbt_daemon_stop(f->daemon);
    g_free(f->meter);
    g_free(f->reverse);
    wbt_scratch_free(f->s);
}

static void test_vectors(Fixture *f, gconstpointer data)
{
    /* Ua, Ub, Uc: 230.9, 231.1, 230.7 V */
    static const guint16 u[] = {0x4510, 0x5000, 0x4510, 0x7000, 0x4510, 0x3000};
    wbt_expect_words(f->meter, 1, 3, 0x2006, u, G_N_ELEMENTS(u), "Ua..Uc");
    /* Ia, Ib, Ic: 5.250, 4.700, 4.100 A */
    static const guint16 i[] = {0x45A4, 0x1000, 0x4592, 0xE000, 0x4580, 0x2000};
    wbt_expect_words(f->meter, 1, 3, 0x200C, i, G_N_ELEMENTS(i), "Ia..Ic");
    /* Pt, Pa, Pb, Pc: 2850, 1048, 1089, 713 W */
    static const guint16 p[] = {0x46DE, 0xA800, 0x4623, 0xC000, 0x462A, 0x2800, 0x45DE, 0xD000};
    wbt_expect_words(f->meter, 1, 3, 0x2012, p, G_N_ELEMENTS(p), "Pt..Pc");
    /* Freq 50.015 Hz */
    static const guint16 hz[] = {0x459C, 0x4C00};
    wbt_expect_words(f->meter, 1, 3, 0x2044, hz, G_N_ELEMENTS(hz), "Freq");
    /* PFt: no reactive power wired, so S = P and PF = 1.000 */
    static const guint16 pf[] = {0x447A, 0x0000};
    wbt_expect_words(f->meter, 1, 3, 0x202A, pf, G_N_ELEMENTS(pf), "PFt");
    /* IrAt = 1, UrAt = 10 (Appendix A reply 01 03 04 00 01 00 0A) */
    static const guint16 ratios[] = {0x0001, 0x000A};
    wbt_expect_words(f->meter, 1, 3, 0x0006, ratios, G_N_ELEMENTS(ratios), "IrAt/UrAt");
    /* ImpEp 5678.234 kWh, at 0x101E and its mirrors 0x401E and 0x4000 */
    static const guint16 e[] = {0x45B1, 0x71DF};
    wbt_expect_words(f->meter, 1, 3, 0x101E, e, G_N_ELEMENTS(e), "ImpEp");
    wbt_expect_words(f->meter, 1, 3, 0x401E, e, G_N_ELEMENTS(e), "ImpEp mirror 0x401E");
    wbt_expect_words(f->meter, 1, 3, 0x4000, e, G_N_ELEMENTS(e), "energy 0x4000");
    /* FC04 reads the same image (Appendix A: FC04 reply for Pt) */
    static const guint16 pt[] = {0x46DE, 0xA800};
    wbt_expect_words(f->meter, 1, 4, 0x2012, pt, G_N_ELEMENTS(pt), "Pt by FC04");
}

static void test_reverse(Fixture *f, gconstpointer data)
{
    /* direction = reverse: 1500 W of production served as Pt = -1500 W
     * (Appendix A: C6 6A 60 00), and the energy counted in ExpEp */
    static const guint16 pt[] = {0xC66A, 0x6000};
    wbt_expect_words(f->reverse, 3, 3, 0x2012, pt, G_N_ELEMENTS(pt), "reverse Pt");
    /* phases = 1: Pa = Pt, Pb = Pc = 0 */
    static const guint16 phases[] = {0xC66A, 0x6000, 0x0000, 0x0000, 0x0000, 0x0000};
    wbt_expect_words(f->reverse, 3, 3, 0x2014, phases, G_N_ELEMENTS(phases), "reverse Pa..Pc");
    /* ImpEp 0, ExpEp 12.5 kWh (0x4148 0x0000) */
    static const guint16 zero[] = {0x0000, 0x0000};
    wbt_expect_words(f->reverse, 3, 3, 0x101E, zero, G_N_ELEMENTS(zero), "reverse ImpEp");
    static const guint16 exp[] = {0x4148, 0x0000};
    wbt_expect_words(f->reverse, 3, 3, 0x1028, exp, G_N_ELEMENTS(exp), "reverse ExpEp");
    /* no voltage wired: the map's default, nominal 230 V = 2300.0 (0x450F 0xC000) */
    static const guint16 ua[] = {0x450F, 0xC000};
    wbt_expect_words(f->reverse, 3, 3, 0x2006, ua, G_N_ELEMENTS(ua), "default Ua");
    /* nominal frequency 50 Hz = 5000.0 */
    static const guint16 hz[] = {0x459C, 0x4000};
    wbt_expect_words(f->reverse, 3, 3, 0x2044, hz, G_N_ELEMENTS(hz), "default Freq");
    /* the served unit id is in Addr */
    static const guint16 addr[] = {0x0003};
    wbt_expect_words(f->reverse, 3, 3, 0x002E, addr, 1, "Addr");
}

static void test_gap_read_through(Fixture *f, gconstpointer data)
{
    /* Growatt reads 0x202A x 28, across the undocumented 0x2032-0x2043:
     * the gap reads as zeros, then Freq */
    g_autoptr(WbtRead) r = wbt_mbpoll_read(f->meter, 1, 3, 0x202A, 28);
    g_assert_true(r->ok);
    g_assert_cmpuint(g_array_index(r->words, guint16, 0), ==, 0x447A);
    for (guint k = 8; k < 26; k++)
        g_assert_cmpuint(g_array_index(r->words, guint16, k), ==, 0);
    g_assert_cmpuint(g_array_index(r->words, guint16, 26), ==, 0x459C);
    g_assert_cmpuint(g_array_index(r->words, guint16, 27), ==, 0x4C00);
}

static void test_exceptions(Fixture *f, gconstpointer data)
{
    /* outside every block: exception 02 */
    g_autoptr(WbtRead) outside = wbt_mbpoll_read(f->meter, 1, 3, 0x3000, 2);
    g_assert_false(outside->ok);
    g_assert_cmpstr(outside->error, ==, "Illegal data address");
    /* a block's end crossed: exception 02 */
    g_autoptr(WbtRead) crossing = wbt_mbpoll_read(f->meter, 1, 3, 0x2050, 4);
    g_assert_cmpstr(crossing->error, ==, "Illegal data address");
    /* another unit id over TCP: exception 0B (gateway target failed) */
    g_autoptr(WbtRead) other = wbt_mbpoll_read(f->meter, 7, 3, 0x2000, 2);
    g_assert_cmpstr(other->error, ==, "Target device failed to respond");

    /* a parameter write is accepted, stored and read back */
    g_autofree char *w = wbt_mbpoll_write(f->meter, 1, 0x002E, 5);
    g_assert_null(w);
    wbt_daemon_expect_log(f->daemon, "a master wrote Addr = 5", 5000);
    static const guint16 five[] = {5};
    wbt_expect_words(f->meter, 1, 3, 0x002E, five, 1, "Addr after write");
    /* the unit id served did not change */
    static const guint16 pt[] = {0x46DE, 0xA800};
    wbt_expect_words(f->meter, 1, 3, 0x2012, pt, 2, "Pt at unit 1 after the write");
    /* out of range: exception 03 */
    g_autofree char *big = wbt_mbpoll_write(f->meter, 1, 0x002E, 300);
    g_assert_cmpstr(big, ==, "Illegal data value");
    /* read-only: exception 02 */
    g_autofree char *ro = wbt_mbpoll_write(f->meter, 1, 0x0000, 5);
    g_assert_cmpstr(ro, ==, "Illegal data address");
    g_autofree char *meas = wbt_mbpoll_write(f->meter, 1, 0x2006, 5);
    g_assert_cmpstr(meas, ==, "Illegal data address");
}

static double word_float(const WbtRead *r, guint i)
{
    union {
        guint32 u;
        float f;
    } c = {.u = (guint32)g_array_index(r->words, guint16, i) << 16 | g_array_index(r->words, guint16, i + 1)};
    return c.f;
}

/* The shipped demo configuration, on a free port: what the README runs. */
static void test_demo(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    const char *names[] = {"10-trace.conf", "20-pv-meter.conf"};
    for (gsize i = 0; i < G_N_ELEMENTS(names); i++) {
        g_autofree char *src = g_build_filename(g_getenv("WB_TEST_SRCDIR"), "conf.d", names[i], NULL);
        g_autofree char *text = NULL;
        g_assert_true(g_file_get_contents(src, &text, NULL, NULL));
        g_autoptr(GRegex) re = g_regex_new("^port = 5020$", G_REGEX_MULTILINE, 0, NULL);
        g_autofree char *patched = g_regex_replace_literal(re, text, -1, 0, "port = 0", 0, NULL);
        g_free(wbt_scratch_conf(s, names[i], "%s", patched));
    }
    WbtDaemon *d = wbt_scratch_daemon(s);
    g_autofree char *target = wbt_daemon_tcp_target(d, "pv-meter");
    wbt_daemon_expect_log(d, "\\[pv-meter\\] serving measurements", 15000);

    g_autoptr(WbtRead) r = wbt_mbpoll_read(target, 1, 3, 0x2000, 32);
    if (!r->ok)
        g_error("%s", r->error);
    double uab = word_float(r, 0) / 10, ua = word_float(r, 6) / 10, ub = word_float(r, 8) / 10,
           uc = word_float(r, 10) / 10;
    double pt = word_float(r, 18) / 10, pa = word_float(r, 20) / 10, pb = word_float(r, 22) / 10,
           pc = word_float(r, 24) / 10;
    g_test_message("demo: Ua %.1f Ub %.1f Uc %.1f Uab %.1f Pt %.1f = %.1f + %.1f + %.1f", ua, ub, uc, uab, pt, pa, pb,
                   pc);
    /* 10:00 on a sunny day: the inverter produces, voltages in 225..245 V */
    double phases[] = {ua, ub, uc};
    for (gsize k = 0; k < G_N_ELEMENTS(phases); k++)
        g_assert_true(phases[k] >= 225 && phases[k] <= 245);
    g_assert_cmpfloat(fabs(uab - sqrt(ua * ua + ub * ub + ua * ub)), <, 0.2);
    g_assert_cmpfloat(pt, >, 100);
    g_assert_cmpfloat(fabs(pt - (pa + pb + pc)), <, 1.0);
    g_autoptr(WbtRead) hz = wbt_mbpoll_read(target, 1, 3, 0x2044, 2);
    g_assert_true(hz->ok);
    g_assert_cmpfloat(word_float(hz, 0), >=, 4995);
    g_assert_cmpfloat(word_float(hz, 0), <=, 5005);
    wbt_daemon_stop(d);
}

/* A broken instance is disabled with its place named; enabled = false
 * skips one; the rest run. */
static void test_broken_instance_isolated(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_autofree char *tpath = wbt_scratch_write(s, "trace.csv", "%s", trace);
    g_autofree char *src = g_strdup_printf("[trace]\nplugin = replay\ntrace = %s\nspeed = 10\n", tpath);
    g_free(wbt_scratch_conf(s, "10-trace.conf", "%s", src));
    g_free(wbt_scratch_conf(s, "20-good.conf", "%s",
                     "[good]\nplugin = dtsu666\ntransport = tcp\nport = 0\nmax-age = 1s\npoint.power = trace/pv/power\n"));
    g_autofree char *bad = wbt_scratch_conf(s, "30-bad.conf", "%s",
                                     "[bad]\nplugin = dtsu666\ntransport = tcp\nport = 0\nbaud = fast\n");
    g_autofree char *typo = wbt_scratch_conf(s, "40-typo.conf", "%s",
                                      "[typo]\nplugin = dtsu666\ntransport = tcp\npoint.pwoer = trace/pv/power\n");
    g_free(wbt_scratch_conf(s, "50-off.conf", "%s", "[off]\nplugin = dtsu666\nenabled = false\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    g_autofree char *good = wbt_daemon_tcp_target(d, "good");
    wbt_daemon_expect_log(d, "running 2 instances \\(some were disabled by errors", 10000);
    g_autofree char *log = wbt_daemon_log(d);
    g_autofree char *e1 = g_strdup_printf("%s:5: [bad] baud: expected an integer from 300 to 921600, got \"fast\"", bad);
    g_autofree char *e2 = g_strdup_printf("%s:4: [typo] point.pwoer: chint-dtsu666 serves no measurement 'pwoer'; it serves: power, ", typo);
    g_assert_nonnull(strstr(log, e1));
    g_assert_nonnull(strstr(log, e2));
    g_assert_nonnull(strstr(log, "[off] skipped (enabled = false)"));
    g_assert_null(strstr(log, "[bad] serving"));
    static const guint16 pt[] = {0x46DE, 0xA800};
    wbt_expect_words(good, 1, 3, 0x2012, pt, 2, "the good instance serves");
    wbt_daemon_stop(d);
}

/* max-clients refuses the client beyond it; idle-timeout drops a silent
 * client, which frees the place. */
static void test_tcp_clients(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_free(wbt_scratch_conf(s, "10-meter.conf", "%s",
                     "[meter]\nplugin = dtsu666\ntransport = tcp\nport = 0\nmax-clients = 1\nidle-timeout = 500ms\n"
                     "on-stale = zero\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    g_autofree char *target = wbt_daemon_tcp_target(d, "meter");
    static const guint16 freq[] = {0x459C, 0x4000}; /* nothing wired: nominal 50 Hz */
    wbt_expect_words(target, 1, 3, 0x2044, freq, 2, "one client");

    /* a client that connects and says nothing holds the only place (the
     * reads above logged their own connections: wait for one more) */
    const char *connected = "Modbus TCP client 127\\.0\\.0\\.1:\\d+ connected";
    guint clients = wbt_daemon_count_log(d, connected);
    g_assert_cmpuint(clients, >=, 1);
    g_autoptr(GSocketClient) client = g_socket_client_new();
    g_autoptr(GError) error = NULL;
    g_autoptr(GSocketConnection) idle =
        g_socket_client_connect_to_host(client, "127.0.0.1", (guint16)atoi(target + 4), NULL, &error);
    g_assert_no_error(error);
    wbt_daemon_expect_log_count(d, connected, clients + 1, 5000);
    g_autoptr(WbtRead) refused = wbt_mbpoll_read(target, 1, 3, 0x2044, 2);
    g_assert_false(refused->ok);
    wbt_daemon_expect_log(d, "refusing Modbus TCP client .*max-clients", 5000);
    /* after idle-timeout the silent client is dropped and reads work again */
    wbt_daemon_expect_log(d, "closing Modbus TCP client .*: idle for 0\\.5 s", 5000);
    wbt_expect_words(target, 1, 3, 0x2044, freq, 2, "after the idle client was dropped");
    wbt_daemon_stop(d);
}

/* replay: cumulative columns continue across loops; others repeat. */
static void test_replay_cumulative(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_autofree char *tpath = wbt_scratch_write(s, "counter.csv", "%s",
                                       "# three seconds: the counter rises 0, 1, 2 kWh\n"
                                       "time,power,energy-import\n"
                                       "00:00:00,100,0\n00:00:01,100,1\n00:00:02,100,2\n");
    g_autofree char *src = g_strdup_printf("[src]\nplugin = replay\ntrace = %s\nspeed = 10\n"
                                           "cumulative = energy-import\n", tpath);
    g_free(wbt_scratch_conf(s, "10-src.conf", "%s", src));
    g_free(wbt_scratch_conf(s, "20-meter.conf", "%s",
                     "[meter]\nplugin = dtsu666\ntransport = tcp\nport = 0\nphases = 1\nmax-age = 1s\n"
                     "point.power = src/power\npoint.energy-import = src/energy-import\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    g_autofree char *target = wbt_daemon_tcp_target(d, "meter");
    wbt_daemon_expect_log(d, "\\[src\\] replaying .*: 3 rows of 2 points from 00:00:00 at x10, looping", 10000);
    /* a loop lasts 0.3 s; after 1.5 s the counter is past 2 + 2 * 3 kWh, and
     * it only ever rises */
    double last = -1;
    for (int i = 0; i < 15; i++) {
        wbt_sleep(100);
        g_autoptr(WbtRead) r = wbt_mbpoll_read(target, 1, 3, 0x101E, 2);
        if (!r->ok)
            continue;
        double v = word_float(r, 0);
        g_assert_cmpfloat(v, >=, last);
        last = v;
    }
    g_test_message("ImpEp after 1.5 s of x10 replay: %g kWh", last);
    g_assert_cmpfloat(last, >=, 8);
    wbt_daemon_stop(d);
}

/* The main loop stalls (a plugin blocks it): the serving thread must not
 * keep presenting the image past its data's freshness. */
static void test_main_loop_stall(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_autofree char *tpath = wbt_scratch_write(s, "trace.csv", "%s", trace);
    g_autofree char *src = g_strdup_printf("[trace]\nplugin = replay\ntrace = %s\nspeed = 10\n", tpath);
    g_free(wbt_scratch_conf(s, "10-trace.conf", "%s", src));
    g_free(wbt_scratch_conf(s, "20-meter.conf", "%s",
                     "[meter]\nplugin = dtsu666\ntransport = tcp\nport = 0\nmax-age = 600ms\npoint.power = trace/pv/power\n"));
    g_free(wbt_scratch_conf(s, "30-stall.conf", "%s", "[stall]\nplugin = stall\nafter = 800ms\nblock = 3s\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    g_autofree char *meter = wbt_daemon_tcp_target(d, "meter");
    static const guint16 pt[] = {0x46DE, 0xA800};
    wbt_expect_words(meter, 1, 3, 0x2012, pt, 2, "before the stall");
    wbt_daemon_expect_log(d, "\\[stall\\] stalling the main loop", 5000);
    /* max-age 0.6 s plus 0.3 s of grace: silent well within the 3 s stall */
    wbt_sleep(1300);
    g_autoptr(WbtRead) during = wbt_mbpoll_read(meter, 1, 3, 0x2012, 2);
    g_assert_false(during->ok);
    g_assert_cmpstr(during->error, ==, "Connection timed out");
    wbt_daemon_expect_log(d, "\\[meter\\] no fresh image from the main loop in time; silent", 5000);
    /* the stall ends, fresh data flows again */
    wbt_daemon_expect_log(d, "\\[stall\\] stall over", 5000);
    wbt_expect_words(meter, 1, 3, 0x2012, pt, 2, "after the stall");
    wbt_daemon_stop(d);
}

/* replay: a start-at before the trace's first row starts at that row;
 * counters never go below it. */
static void test_replay_start_before_trace(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_autofree char *tpath = wbt_scratch_write(s, "morning.csv", "%s",
                                       "time,power,energy-import\n06:00:00,100,5\n06:00:01,100,6\n06:00:02,100,7\n");
    g_autofree char *src = g_strdup_printf("[src]\nplugin = replay\ntrace = %s\nstart-at = 00:00\nspeed = 0.5\n"
                                           "cumulative = energy-import\n", tpath);
    g_free(wbt_scratch_conf(s, "10-src.conf", "%s", src));
    g_free(wbt_scratch_conf(s, "20-meter.conf", "%s",
                     "[meter]\nplugin = dtsu666\ntransport = tcp\nport = 0\nphases = 1\nmax-age = 1s\n"
                     "point.energy-import = src/energy-import\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    g_autofree char *meter = wbt_daemon_tcp_target(d, "meter");
    static const guint16 five[] = {0x40A0, 0x0000}; /* 5.0 kWh: the first row */
    wbt_expect_words(meter, 1, 3, 0x101E, five, 2, "ImpEp from the first row");
    g_autofree char *log = wbt_daemon_log(d);
    g_assert_null(strstr(log, "went backwards"));
    wbt_daemon_stop(d);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/dtsu666/tcp/vectors", Fixture, NULL, setup, test_vectors, teardown);
    g_test_add("/dtsu666/tcp/reverse-and-defaults", Fixture, NULL, setup, test_reverse, teardown);
    g_test_add("/dtsu666/tcp/gap-read-through", Fixture, NULL, setup, test_gap_read_through, teardown);
    g_test_add("/dtsu666/tcp/exceptions-and-writes", Fixture, NULL, setup, test_exceptions, teardown);
    g_test_add_func("/dtsu666/tcp/demo", test_demo);
    g_test_add_func("/dtsu666/tcp/broken-instance-isolated", test_broken_instance_isolated);
    g_test_add_func("/dtsu666/tcp/max-clients-and-idle", test_tcp_clients);
    g_test_add_func("/replay/cumulative-across-loops", test_replay_cumulative);
    g_test_add_func("/replay/start-before-trace", test_replay_start_before_trace);
    g_test_add_func("/dtsu666/tcp/main-loop-stall", test_main_loop_stall);
    return g_test_run();
}
