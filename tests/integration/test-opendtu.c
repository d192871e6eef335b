/* opendtu: the real daemon against an OpenDTU played by tests/tools/http-device
 * (libsoup's server, payloads from ../shared/reference/device-apis.md
 * section 1) over loopback.  Limits come from a real Mosquitto broker
 * through the mqtt plugin; the recorder plugin logs what is published. */
#include "wbt.h"

#include <math.h>

#define SERIAL "114182940773"
#define SHED "112183818450"

static WbtHttpDevice *dtu_start(const char *era, const char *extra)
{
    return wbt_http_device_start("opendtu", "--era", era, "--stats-ms", "150", extra ? extra : "--pending-ms=300",
                                 SERIAL, SHED, NULL);
}

static void dtu_conf(WbtScratch *s, WbtHttpDevice *h, const char *extra)
{
    g_free(wbt_scratch_conf(s, "20-dtu.conf",
                            "[dtu]\nplugin = opendtu\nurl = %s\npoll-interval = 100ms\ntimeout = 500ms\n"
                            "backoff-max = 400ms\nalias." SHED " = shed\n%s",
                            h->url, extra ? extra : ""));
}

/* The points a controller would publish, from MQTT topics of the same name. */
static void ctl_conf(WbtScratch *s, WbtBroker *broker, const char *points)
{
    g_free(wbt_scratch_conf(s, "10-ctl.conf",
                            "[ctl]\nplugin = mqtt\nhost = 127.0.0.1\nport = %u\nreconnect-delay = 100ms\n%s",
                            broker->port, points));
}

/* ---- every response era gives the same points ------------------------------------ */

static void check_sample_1_3b(WbtDaemon *d, const char *label)
{
    /* sample 1.3b's values, in our units (YieldDay Wh -> kWh) */
    static const struct {
        const char *point;
        double value;
    } expected[] = {
        {"power", 312.5}, {"voltage", 231.4}, {"current", 1.35}, {"frequency", 50.01},
        {"power-factor", 0.999}, {"reactive-power", 2.1}, {"dc/power", 327.9}, {"yield-today", 1.63},
        {"energy-import", 3071.882}, {"temperature", 38.2}, {"efficiency", 95.303},
        {"dc1/power", 162.3}, {"dc1/voltage", 33.8}, {"dc1/current", 4.8}, {"dc1/yield-today", 0.812},
        {"dc1/energy-import", 1534.211}, {"dc2/power", 165.6}, {"dc2/current", 4.86},
        {"reachable", 1}, {"producing", 1}, {"limit-relative", 100}, {"limit-absolute", 800},
    };
    for (guint i = 0; i < G_N_ELEMENTS(expected); i++) {
        g_autofree char *name = g_strdup_printf("dtu/%s/%s", label, expected[i].point);
        wbt_daemon_expect_point(d, name, expected[i].value, 1e-6, 5000);
    }
    g_autofree char *unit = g_strdup_printf("point dtu/%s/yield-today = 1.63 kWh \\(valid\\)", label);
    wbt_daemon_expect_log(d, unit, 1000);
    g_autofree char *temp = g_strdup_printf("point dtu/%s/temperature = 38.2 (\302\260|\\?)C \\(valid\\)", label);
    wbt_daemon_expect_log(d, temp, 1000);
}

static void test_era(gconstpointer data)
{
    const char *era = data;
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtHttpDevice *h = dtu_start(era, NULL);
    dtu_conf(s, h, NULL);
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = dtu/#\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    check_sample_1_3b(d, SERIAL);
    check_sample_1_3b(d, "shed");
    g_autofree char *format = g_strdup_printf("OpenDTU answers in format F%c ", era[1]);
    wbt_daemon_expect_log(d, format, 1000);
    if (strcmp(era, "f3") == 0) /* the channels come per inverter */
        wbt_daemon_expect_log(h->proc, "^GET /api/livedata/status\\?inv=" SERIAL "$", 1000);
    else
        g_assert_cmpuint(wbt_daemon_count_log(h->proc, "\\?inv="), ==, 0);
    wbt_daemon_expect_point(d, "dtu/connected", 1, 0, 1000);
    wbt_daemon_stop(d);
    wbt_http_device_stop(h);
}

/* ---- sample times: the statistics' own, and only new ones ------------------------- */

static void sample_time(const char *age_flag, double lo, double hi)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtHttpDevice *h = wbt_http_device_start("opendtu", age_flag, SERIAL, NULL);
    /* statistics 4 s old when the daemon first reads them */
    wbt_http_device_command(h, "age " SERIAL " 4000");
    dtu_conf(s, h, NULL);
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = dtu/" SERIAL "/+\n"
                                              "show-age = true\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    g_autofree char *age = wbt_daemon_wait_log(d, "age dtu/" SERIAL "/power = ([0-9.]+) s", 5000);
    g_assert_nonnull(age);
    double a = g_ascii_strtod(age, NULL);
    if (a < lo || a > hi)
        g_error("power's age %.3f s, expected %.1f..%.1f s (the statistics' time, not the poll's)", a, lo, hi);
    g_autofree char *data_age = wbt_daemon_wait_log(d, "point dtu/" SERIAL "/data-age = ([0-9.]+) s", 1000);
    g_assert_nonnull(data_age);
    g_assert_cmpfloat(g_ascii_strtod(data_age, NULL), >=, 4.0);

    /* polls every 100 ms without new statistics publish nothing new */
    wbt_sleep(1000);
    guint n = wbt_daemon_count_point(d, "dtu/" SERIAL "/power");
    g_assert_cmpuint(n, ==, 1);
    g_assert_cmpuint(wbt_daemon_count_log(h->proc, "^GET /api/livedata/status"), >=, 5);
    /* new statistics: one new sample */
    wbt_http_device_command(h, "update " SERIAL " AC.Power=400.5");
    wbt_daemon_expect_point(d, "dtu/" SERIAL "/power", 400.5, 1e-9, 3000);
    wbt_sleep(600);
    g_assert_cmpuint(wbt_daemon_count_point(d, "dtu/" SERIAL "/power"), ==, 2);
    wbt_daemon_stop(d);
    wbt_http_device_stop(h);
}

static void test_sample_time_ms(void)
{
    sample_time("--era=f3", 3.95, 4.5);
}

/* data_age in whole seconds (F3 before March 2025): 1 s granularity */
static void test_sample_time_s(void)
{
    sample_time("--no-data-age-ms", 3.95, 5.5);
}

/* ---- reachable = false makes the measurements invalid ------------------------------- */

static void test_unreachable(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtHttpDevice *h = dtu_start("f3", NULL);
    dtu_conf(s, h, NULL);
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = dtu/#\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    wbt_daemon_expect_point(d, "dtu/shed/power", 312.5, 1e-9, 5000);
    wbt_http_device_command(h, "set " SHED " reachable=0 producing=0");
    wbt_daemon_expect_point_state(d, "dtu/shed/power", "invalid", 3000);
    wbt_daemon_expect_point_state(d, "dtu/shed/dc2/voltage", "invalid", 1000);
    wbt_daemon_expect_point(d, "dtu/shed/reachable", 0, 0, 1000);
    wbt_daemon_expect_point(d, "dtu/shed/producing", 0, 0, 1000);
    wbt_daemon_expect_log(d, "\\[dtu\\] shed is not reachable", 1000);
    /* the other inverter is unaffected */
    wbt_daemon_expect_point_state(d, "dtu/" SERIAL "/power", "valid", 1000);
    wbt_http_device_command(h, "update " SHED " reachable=1 producing=1 AC.Power=99");
    wbt_daemon_expect_point(d, "dtu/shed/power", 99, 1e-9, 3000);
    wbt_daemon_expect_point_state(d, "dtu/shed/power", "valid", 1000);
    wbt_daemon_expect_log(d, "\\[dtu\\] shed is reachable again", 1000);
    wbt_daemon_stop(d);
    wbt_http_device_stop(h);
}

/* ---- failures: logged once each, stale, back-off, recovery ------------------------- */

static void expect_failure(WbtDaemon *d, WbtHttpDevice *h, const char *mode, const char *reason)
{
    wbt_http_expect_failure(d, h, "dtu", mode, reason, "dtu/" SERIAL "/power");
}

static void test_failures(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtHttpDevice *h = dtu_start("f3", NULL);
    dtu_conf(s, h, NULL);
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = dtu/#\nmax-age = 1s\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    wbt_daemon_expect_point_state(d, "dtu/" SERIAL "/power", "valid", 5000);

    expect_failure(d, h, "401", "HTTP 401 Unauthorized: the device wants a password");
    expect_failure(d, h, "garbage", "the answer is not JSON \\(it starts \"<html><body>\"\\)");
    expect_failure(d, h, "truncated", "the answer is not JSON \\(cut short or garbled\\)");
    expect_failure(d, h, "missing", "an inverter without a usable \"serial\"");
    expect_failure(d, h, "stall 1500", "no answer within 0.5 s");
    g_assert_cmpuint(wbt_daemon_count_log(d, "answers again \\(after"), ==, 5);

    /* 429: the Retry-After (2 s) is longer than backoff-max and wins */
    wbt_http_device_command(h, "mode 429 2");
    wbt_daemon_expect_log(d, "HTTP 429 Too Many Requests \\(Retry-After: 2 s\\).*next try in 2 s", 3000);
    guint before = wbt_daemon_count_log(h->proc, "^GET /api/livedata/status$");
    wbt_sleep(1500);
    g_assert_cmpuint(wbt_daemon_count_log(h->proc, "^GET /api/livedata/status$"), ==, before);
    wbt_http_device_command(h, "mode ok");
    wbt_daemon_expect_point_state(d, "dtu/" SERIAL "/power", "valid", 5000);

    /* backing off: at most one try per backoff-max (400 ms) while failing */
    wbt_http_device_command(h, "mode garbage");
    wbt_sleep(800);
    before = wbt_daemon_count_log(h->proc, "^GET /api/livedata/status$");
    wbt_sleep(2000);
    guint tries = wbt_daemon_count_log(h->proc, "^GET /api/livedata/status$") - before;
    g_assert_cmpuint(tries, <=, 6);
    g_assert_cmpuint(tries, >=, 3);
    wbt_http_device_command(h, "mode ok");
    wbt_daemon_expect_point_state(d, "dtu/" SERIAL "/power", "valid", 5000);

    /* connection refused: the device goes away, comes back on its port */
    guint port = h->port;
    wbt_http_device_stop(h);
    g_autofree char *re = g_strdup_printf("http://127.0.0.1:%u: .*(refused|connect)", port);
    wbt_daemon_expect_log(d, re, 3000);
    wbt_daemon_expect_point_state(d, "dtu/" SERIAL "/power", "stale", 3000);
    g_autofree char *port_arg = g_strdup_printf("--port=%u", port);
    h = wbt_http_device_start("opendtu", port_arg, "--stats-ms=150", SERIAL, SHED, NULL);
    wbt_daemon_expect_point_state(d, "dtu/" SERIAL "/power", "valid", 5000);
    wbt_daemon_stop(d);
    wbt_http_device_stop(h);
}

/* ---- the limit actuator ---------------------------------------------------------------- */

#define LIMIT_POST "^POST /api/limit/config data=\\{\"serial\":\"" SERIAL "\",\"limit_type\":0,\"limit_value\":"

static guint limit_posts(WbtHttpDevice *h, const char *value)
{
    g_autofree char *re = g_strdup_printf(LIMIT_POST "%s\\}$", value);
    return wbt_daemon_count_log(h->proc, re);
}

static void expect_limit_post(WbtHttpDevice *h, const char *value, guint count, guint timeout_ms)
{
    g_autofree char *re = g_strdup_printf(LIMIT_POST "%s\\}$", value);
    wbt_daemon_expect_log_count(h->proc, re, count, timeout_ms);
}

static void test_limit(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtBroker *broker = wbt_broker_start();
    WbtHttpDevice *h = dtu_start("f3", "--password=secret");
    ctl_conf(s, broker, "point.limit = ctl/limit\n");
    dtu_conf(s, h,
             "password = secret\nlimit." SERIAL " = ctl/limit\nfallback-limit = 100\nmax-power = 600\n"
             "setpoint-max-age = 1s\nlimit-timeout = 2s\n");
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = dtu/" SERIAL "/limit-relative\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    wbt_daemon_expect_log(d, "\\[ctl\\] connected to MQTT broker", 10000);

    /* no limit point yet: the fallback, once, then confirmed (12.5 % of 800 W) */
    expect_limit_post(h, "100", 1, 5000);
    wbt_daemon_expect_point(d, "dtu/" SERIAL "/limit-relative", 12.5, 1e-9, 3000);
    wbt_daemon_expect_log(d, "the inverter confirmed the limit", 2000);
    wbt_sleep(500);
    g_assert_cmpuint(limit_posts(h, "[0-9.]+"), ==, 1);

    /* a setpoint: sent once, read back */
    WbtRepeater *r = wbt_repeat(broker, "ctl/limit", "400", 200);
    expect_limit_post(h, "400", 1, 3000);
    wbt_daemon_expect_point(d, "dtu/" SERIAL "/limit-relative", 50, 1e-9, 3000);
    wbt_sleep(600);
    g_assert_cmpuint(limit_posts(h, "400"), ==, 1);

    /* above max-power: clamped, never sent as asked */
    wbt_repeater_set_payload(r, "700");
    expect_limit_post(h, "600", 1, 3000);
    wbt_daemon_expect_log(d, "limit 700 W is outside 0\\.\\.600 W: 600 W is sent", 1000);
    g_assert_cmpuint(limit_posts(h, "700"), ==, 0);
    wbt_daemon_expect_point(d, "dtu/" SERIAL "/limit-relative", 75, 1e-9, 3000);

    /* a Failure is retried */
    wbt_http_device_command(h, "limit-result failure");
    wbt_repeater_set_payload(r, "300");
    expect_limit_post(h, "300", 2, 5000);
    wbt_daemon_expect_log(d, "did not take the limit \\(Failure\\): retrying", 1000);
    wbt_http_device_command(h, "limit-result ok");
    wbt_daemon_expect_point(d, "dtu/" SERIAL "/limit-relative", 37.5, 1e-9, 5000);

    /* Pending: nothing new is sent until limit-timeout (2 s) */
    wbt_http_device_command(h, "limit-result hold");
    wbt_repeater_set_payload(r, "200");
    expect_limit_post(h, "200", 1, 3000);
    wbt_sleep(300);
    wbt_repeater_set_payload(r, "250");
    wbt_sleep(1000);
    g_assert_cmpuint(limit_posts(h, "250"), ==, 0);
    wbt_daemon_expect_log(d, "was still pending after 2 s: sending it again", 3000);
    expect_limit_post(h, "250", 1, 2000);
    wbt_http_device_command(h, "limit-result ok");
    wbt_daemon_expect_point(d, "dtu/" SERIAL "/limit-relative", 31.25, 1e-9, 5000);

    /* the inverter restarts (unreachable, then back): the limit is sent again */
    guint before = limit_posts(h, "250");
    guint again = wbt_daemon_count_log(d, "sent again"); /* the pending timeout's resend said it too */
    wbt_http_device_command(h, "set " SERIAL " reachable=0 limit_relative=100");
    wbt_daemon_expect_log(d, SERIAL " is not reachable", 3000);
    wbt_http_device_command(h, "update " SERIAL " reachable=1");
    expect_limit_post(h, "250", before + 1, 3000);
    wbt_daemon_expect_log_count(d, "sent again", again + 1, 1000);

    /* the point goes stale: the fallback, once */
    wbt_repeater_stop(r);
    expect_limit_post(h, "100", 2, 4000);
    wbt_daemon_expect_log(d, "limit point ctl/limit is stale: the fallback limit 100 W applies", 1000);
    wbt_daemon_expect_point(d, "dtu/" SERIAL "/limit-relative", 12.5, 1e-9, 3000);
    wbt_sleep(600);
    g_assert_cmpuint(limit_posts(h, "100"), ==, 2);

    /* stopping: the fallback once more, whatever the inverter has */
    wbt_daemon_stop(d);
    expect_limit_post(h, "100", 3, 1000);
    wbt_http_device_stop(h);
    wbt_broker_stop(broker);
}

/* Stopping while a poll and a limit command are both stuck at the device:
 * the fallback still goes out, at once.  (libsoup keeps two connections
 * per host; cancelled requests give theirs back only when the main loop
 * runs, which it no longer does.) */
static void test_stop_while_busy(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtBroker *broker = wbt_broker_start();
    WbtHttpDevice *h = dtu_start("f3", "--password=secret");
    ctl_conf(s, broker, "point.limit = ctl/limit\n");
    /* a timeout longer than the test: the two requests stay in flight */
    g_free(wbt_scratch_conf(s, "20-dtu.conf",
                            "[dtu]\nplugin = opendtu\nurl = %s\npoll-interval = 100ms\ntimeout = 3s\npassword = secret\n"
                            "limit." SERIAL " = ctl/limit\nfallback-limit = 100\n",
                            h->url));
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = dtu/" SERIAL "/limit-relative\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    wbt_daemon_expect_log(d, "\\[ctl\\] connected to MQTT broker", 10000);
    expect_limit_post(h, "100", 1, 5000);
    wbt_daemon_expect_point(d, "dtu/" SERIAL "/limit-relative", 12.5, 1e-9, 3000);
    /* the device stops answering: the next poll and a new limit hang */
    wbt_http_device_command(h, "mode stall 30000");
    guint gets = wbt_daemon_count_log(h->proc, "^GET /api/livedata/status$");
    wbt_daemon_expect_log_count(h->proc, "^GET /api/livedata/status$", gets + 1, 3000);
    wbt_publish(broker, "ctl/limit", "400", FALSE);
    expect_limit_post(h, "400", 1, 3000);
    /* it answers again, but the two stay stuck; now stop */
    wbt_http_device_command(h, "mode ok");
    gint64 t0 = g_get_monotonic_time();
    wbt_daemon_stop(d);
    double took = (double)(g_get_monotonic_time() - t0) / G_USEC_PER_SEC;
    if (took > 5)
        g_error("stopping took %.1f s", took);
    expect_limit_post(h, "100", 2, 1000);
    wbt_http_device_stop(h);
    wbt_broker_stop(broker);
}

/* A wrong password: the POST's 401 is logged, nothing else breaks. */
static void test_limit_password(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtHttpDevice *h = dtu_start("f3", "--password=secret");
    dtu_conf(s, h, "password = wrong\nlimit." SERIAL " = ctl/none\nfallback-limit = 50\nlimit-unit = %\n");
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = dtu/" SERIAL "/power\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    wbt_daemon_expect_log(d, "sending the limit failed: HTTP 401 Unauthorized: the password is wrong", 5000);
    wbt_daemon_expect_point_state(d, "dtu/" SERIAL "/power", "valid", 1000);
    g_assert_cmpuint(wbt_daemon_count_log(h->proc, "^POST /api/limit/config"), ==, 0);
    wbt_daemon_stop(d);
    wbt_http_device_stop(h);
}

/* ---- power on/off and restart ------------------------------------------------------------ */

static void test_power(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtBroker *broker = wbt_broker_start();
    WbtHttpDevice *h = dtu_start("f2", "--password=pw");
    ctl_conf(s, broker, "point.on = ctl/on\npoint.restart = ctl/restart\n");
    dtu_conf(s, h, "password = pw\npower.shed = ctl/on\nrestart.shed = ctl/restart\n");
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = dtu/shed/producing\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    wbt_daemon_expect_log(d, "\\[ctl\\] connected to MQTT broker", 10000);
    wbt_daemon_expect_point(d, "dtu/shed/producing", 1, 0, 5000);
    wbt_publish(broker, "ctl/on", "0", FALSE);
    wbt_daemon_expect_log(h->proc, "^POST /api/power/config data=\\{\"serial\":\"" SHED "\",\"power\":false\\}$", 3000);
    wbt_daemon_expect_point(d, "dtu/shed/producing", 0, 0, 3000);
    wbt_publish(broker, "ctl/on", "0", FALSE); /* no change: nothing sent */
    wbt_publish(broker, "ctl/on", "1", FALSE);
    wbt_daemon_expect_log(h->proc, "^POST /api/power/config data=\\{\"serial\":\"" SHED "\",\"power\":true\\}$", 3000);
    g_assert_cmpuint(wbt_daemon_count_log(h->proc, "\"power\":false"), ==, 1);
    wbt_publish(broker, "ctl/restart", "0", FALSE);
    wbt_sleep(300);
    wbt_publish(broker, "ctl/restart", "1", FALSE);
    wbt_daemon_expect_log(h->proc, "^POST /api/power/config data=\\{\"serial\":\"" SHED "\",\"restart\":true\\}$",
                          3000);
    wbt_daemon_stop(d);
    wbt_http_device_stop(h);
    wbt_broker_stop(broker);
}

/* ---- the /livedata websocket ------------------------------------------------------------------ */

static void test_websocket(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    /* frames without new statistics every 300 ms (10 s on a device) */
    WbtHttpDevice *h = wbt_http_device_start("opendtu", "--websocket", "--ws-repeat-ms=300", SERIAL, SHED, NULL);
    dtu_conf(s, h, "websocket-idle = 2s\nwebsocket-retry = 500ms\n");
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = dtu/#\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    g_autofree char *following = g_strdup_printf("following http://127.0.0.1:%u/livedata over a websocket", h->port);
    wbt_daemon_expect_log(d, following, 5000);
    wbt_daemon_expect_log(h->proc, "^websocket connected$", 1000);
    check_sample_1_3b(d, SERIAL);
    check_sample_1_3b(d, "shed");

    /* the websocket replaces polling /api/livedata/status */
    wbt_sleep(300);
    guint gets = wbt_daemon_count_log(h->proc, "^GET /api/livedata/status");
    guint frames = wbt_daemon_count_log(h->proc, "^frame " SERIAL "$");
    guint samples = wbt_daemon_count_point(d, "dtu/" SERIAL "/power");
    wbt_sleep(1200);
    g_assert_cmpuint(wbt_daemon_count_log(h->proc, "^GET /api/livedata/status"), ==, gets);
    /* repeated frames without new statistics are not new samples */
    g_assert_cmpuint(wbt_daemon_count_log(h->proc, "^frame " SERIAL "$"), >=, frames + 3);
    g_assert_cmpuint(wbt_daemon_count_point(d, "dtu/" SERIAL "/power"), ==, samples);
    /* new statistics are pushed, merged by serial */
    wbt_http_device_command(h, "update " SERIAL " AC.Power=444");
    wbt_daemon_expect_point(d, "dtu/" SERIAL "/power", 444, 1e-9, 1000);
    wbt_daemon_expect_point(d, "dtu/shed/power", 312.5, 1e-9, 1000);

    /* the device closes it: polling takes over, then the websocket again */
    gets = wbt_daemon_count_log(h->proc, "^GET /api/livedata/status");
    wbt_http_device_command(h, "ws-close");
    wbt_daemon_expect_log(d, "websocket http://127\\.0\\.0\\.1:[0-9]+/livedata: closed by the device", 3000);
    wbt_daemon_expect_log_count(h->proc, "^GET /api/livedata/status", gets + 1, 1000);
    wbt_http_device_command(h, "update " SERIAL " AC.Power=555");
    wbt_daemon_expect_point(d, "dtu/" SERIAL "/power", 555, 1e-9, 3000);
    wbt_daemon_expect_log_count(d, following, 2, 5000);
    g_assert_cmpuint(wbt_daemon_count_log(d, following), ==, 2);
    wbt_daemon_stop(d);
    wbt_http_device_stop(h);
}

/* With read-only access off, the websocket wants the password in a
 * digest (realm "live websocket"): libsoup answers it. */
static void test_websocket_digest(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtHttpDevice *h = wbt_http_device_start("opendtu", "--websocket", "--password=pw", "--auth-read", SERIAL, NULL);
    /* statistics of a while ago: the update below is a new sample however
     * fast this runs (samples closer than the frames' transit allowance,
     * 100 ms, are one) */
    wbt_http_device_command(h, "age " SERIAL " 5000");
    dtu_conf(s, h, "password = pw\n");
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = dtu/" SERIAL "/power\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    wbt_daemon_expect_log(d, "over a websocket", 5000);
    wbt_daemon_expect_log(h->proc, "^websocket connected$", 1000);
    wbt_http_device_command(h, "update " SERIAL " AC.Power=123.4");
    wbt_daemon_expect_point(d, "dtu/" SERIAL "/power", 123.4, 1e-9, 2000);
    wbt_daemon_stop(d);
    wbt_http_device_stop(h);
}

/* ---- the main loop never waits for the device -------------------------------------------- */

/* While the OpenDTU stalls for 10 s (the request outstanding: timeout
 * 15 s), a replay source in the same daemon feeds an emulated DTSU666 on
 * Modbus TCP a new value every 100 ms; mbpoll, polling every 200 ms, must
 * see the served value change at least 30 times, and host/main-loop-lag
 * stays below 1 s.  (Latency belongs to the benchmarks.) */
static void test_main_loop(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    GString *trace = g_string_new("time,pv/power\n");
    for (guint i = 0; i < 600; i++)
        g_string_append_printf(trace, "00:%02u:%02u,%u\n", i / 60, i % 60, 1000 + i);
    g_autofree char *tpath = wbt_scratch_write(s, "trace.csv", "%s", trace->str);
    g_string_free(trace, TRUE);
    g_free(wbt_scratch_conf(s, "10-trace.conf", "[trace]\nplugin = replay\ntrace = %s\nspeed = 10\n", tpath));
    g_free(wbt_scratch_conf(s, "11-meter.conf", "[meter]\nplugin = dtsu666\ntransport = tcp\nport = 0\nmax-age = 1s\n"
                                                "phases = 1\npoint.power = trace/pv/power\n"));
    WbtHttpDevice *h = dtu_start("f3", NULL);
    wbt_http_device_command(h, "mode stall 10000");
    g_free(wbt_scratch_conf(s, "20-dtu.conf", "[dtu]\nplugin = opendtu\nurl = %s\npoll-interval = 100ms\n"
                                              "timeout = 15s\n", h->url));
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = host/main-loop-lag\n"));
    g_free(wbt_scratch_conf(s, "91-rec.conf", "[rec-dtu]\nplugin = recorder\npattern = dtu/#\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    g_autofree char *target = wbt_daemon_tcp_target(d, "meter");
    /* the stall has begun: the first poll is outstanding */
    wbt_daemon_expect_log(h->proc, "^GET /api/livedata/status$", 5000);
    gint64 start = g_get_monotonic_time(), end = start + 9 * G_USEC_PER_SEC;
    guint changes = 0, reads = 0;
    guint16 last[2] = {0, 0};
    while (g_get_monotonic_time() < end) {
        gint64 next = g_get_monotonic_time() + 200000;
        g_autoptr(WbtRead) r = wbt_mbpoll_read(target, 1, 3, 0x2012, 2);
        g_assert_true(r->ok);
        guint16 w[2] = {g_array_index(r->words, guint16, 0), g_array_index(r->words, guint16, 1)};
        if (reads++ && (w[0] != last[0] || w[1] != last[1]))
            changes++;
        memcpy(last, w, sizeof last);
        while (g_get_monotonic_time() < next)
            wbt_sleep(5);
    }
    /* the device still had not answered the first poll */
    g_assert_cmpuint(wbt_daemon_count_log(h->proc, "^GET /api/livedata/status"), ==, 1);
    g_assert_cmpuint(wbt_daemon_count_point(d, "dtu/" SERIAL "/power"), ==, 0);
    if (changes < 30)
        g_error("mbpoll saw the served power change %u times in %u reads during the stall, expected >= 30", changes,
                reads);
    /* every lag reported during the stall: below 1 s */
    g_autofree char *log = wbt_daemon_log(d);
    g_autoptr(GRegex) re = g_regex_new("point host/main-loop-lag = ([0-9.e-]+)", 0, 0, NULL);
    g_autoptr(GMatchInfo) info = NULL;
    guint lags = 0;
    g_regex_match(re, log, 0, &info);
    while (g_match_info_matches(info)) {
        g_autofree char *v = g_match_info_fetch(info, 1);
        g_assert_cmpfloat(g_ascii_strtod(v, NULL), <, 1.0);
        lags++;
        g_match_info_next(info, NULL);
    }
    g_assert_cmpuint(lags, >=, 8);
    /* and when the stall ends, the inverter's values arrive */
    wbt_http_device_command(h, "mode ok");
    wbt_daemon_expect_point(d, "dtu/" SERIAL "/power", 312.5, 1e-9, 5000);
    wbt_daemon_stop(d);
    wbt_http_device_stop(h);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    static const char *const eras[] = {"f0", "f1", "f2", "f3"};
    for (guint i = 0; i < G_N_ELEMENTS(eras); i++) {
        g_autofree char *path = g_strdup_printf("/opendtu/era/%s", eras[i]);
        g_test_add_data_func(path, eras[i], test_era);
    }
    g_test_add_func("/opendtu/sample-time/data-age-ms", test_sample_time_ms);
    g_test_add_func("/opendtu/sample-time/data-age", test_sample_time_s);
    g_test_add_func("/opendtu/unreachable", test_unreachable);
    g_test_add_func("/opendtu/failures", test_failures);
    g_test_add_func("/opendtu/limit", test_limit);
    g_test_add_func("/opendtu/limit-password", test_limit_password);
    g_test_add_func("/opendtu/stop-while-busy", test_stop_while_busy);
    g_test_add_func("/opendtu/power", test_power);
    g_test_add_func("/opendtu/main-loop", test_main_loop);
    g_test_add_func("/opendtu/websocket", test_websocket);
    g_test_add_func("/opendtu/websocket-digest", test_websocket_digest);
    return g_test_run();
}
