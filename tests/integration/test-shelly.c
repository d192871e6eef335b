/* shelly: the real daemon against Shelly meters played by
 * tests/tools/http-device (libsoup's server; the sample payloads of
 * ../shared/reference/device-apis.md section 2) over loopback.  The
 * simulator's SHA-256 digest is checked with curl first, so that the
 * plugin and the simulator are not only checked against each other. */
#include "wbt.h"

#define PRO3EM_ID "shellypro3em-a0b1c2d3e4f5"

static WbtDaemon *meter_start(WbtScratch *s, WbtHttpDevice *h, const char *extra)
{
    g_free(wbt_scratch_conf(s, "20-meter.conf",
                            "[meter]\nplugin = shelly\nurl = %s\npoll-interval = 100ms\ntimeout = 500ms\n"
                            "backoff-max = 400ms\n%s",
                            h->url, extra ? extra : ""));
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = meter/#\nmax-age = 1s\n"));
    return wbt_scratch_daemon(s);
}

typedef struct {
    const char *point;
    double value;
} Expect;

static void expect_points(WbtDaemon *d, const Expect *e, guint n)
{
    for (guint i = 0; i < n; i++) {
        g_autofree char *name = g_strdup_printf("meter/%s", e[i].point);
        wbt_daemon_expect_point(d, name, e[i].value, 1e-6, 5000);
    }
}

/* ---- the simulator's digest, checked by curl ------------------------------------------ */

static void test_digest_curl(void)
{
    WbtHttpDevice *h = wbt_http_device_start("shelly", "--model=pro3em", "--password=s3cret", NULL);
    g_autofree char *url = g_strdup_printf("%s/rpc/EM.GetStatus?id=0", h->url);
    g_autofree char *out = NULL;
    /* no credentials: 401 with a SHA-256 challenge naming the device */
    const char *const plain[] = {"curl", "-s", "-i", url, NULL};
    g_assert_cmpint(wbt_run(plain, 10000, &out, NULL), ==, 0);
    g_assert_nonnull(strstr(out, "401"));
    g_assert_nonnull(strstr(out, "algorithm=SHA-256"));
    g_assert_nonnull(strstr(out, "realm=\"" PRO3EM_ID "\""));
    g_clear_pointer(&out, g_free);
    /* curl's own digest (RFC 7616, SHA-256) gets in with the password... */
    const char *const good[] = {"curl", "-s", "-f", "--digest", "-u", "admin:s3cret", url, NULL};
    g_assert_cmpint(wbt_run(good, 10000, &out, NULL), ==, 0);
    g_assert_nonnull(strstr(out, "\"total_act_power\":392.5"));
    g_clear_pointer(&out, g_free);
    /* ...and not with another one */
    const char *const bad[] = {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--digest", "-u",
                               "admin:wrong", url, NULL};
    wbt_run(bad, 10000, &out, NULL);
    g_assert_cmpstr(out, ==, "401");
    wbt_daemon_expect_log(h->proc, "^digest ok$", 1000);
    wbt_daemon_expect_log(h->proc, "^digest rejected: response$", 1000);
    wbt_http_device_stop(h);
}

/* ---- gen1 -------------------------------------------------------------------------------- */

static void test_gen1_em(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtHttpDevice *h = wbt_http_device_start("shelly", "--model=em", "--password=pw", NULL);
    WbtDaemon *d = meter_start(s, h, "password = pw\nchannel = 1\n");
    /* sample 2.1a, channel 1: exporting 412.37 W; energies Wh -> kWh */
    static const Expect e[] = {
        {"power", -412.37}, {"power-factor", -0.97}, {"reactive-power", 95.12}, {"voltage", 236.41},
        {"energy-import", 1284.5337}, {"energy-export", 2201.9464}, {"connected", 1},
    };
    expect_points(d, e, G_N_ELEMENTS(e));
    wbt_daemon_expect_log(d, "\\[meter\\] .* is a Shelly EM \\(gen1\\)", 1000);
    /* is_valid false: invalid, not 0 */
    wbt_http_device_command(h, "shelly status.emeters.0.is_valid=false");
    wbt_daemon_expect_point_state(d, "meter/power", "invalid", 3000);
    wbt_http_device_command(h, "shelly status.emeters.0.is_valid=true status.emeters.0.power=120.5");
    wbt_daemon_expect_point(d, "meter/power", 120.5, 1e-9, 3000);
    wbt_daemon_stop(d);
    wbt_http_device_stop(h);
}

static void test_gen1_3em(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtHttpDevice *h = wbt_http_device_start("shelly", "--model=3em", NULL);
    WbtDaemon *d = meter_start(s, h, NULL);
    /* sample 2.1b: the phases, and their sums */
    static const Expect e[] = {
        {"power", -251.08 + 155.02 + 6.75}, {"l1/power", -251.08}, {"l1/current", 1.16}, {"l2/voltage", 235.57},
        {"l3/power-factor", 0.26}, {"l1/power-factor", -0.92}, {"l2/energy-export", 0.0041},
        {"energy-import", (1686297.2 + 878905.6 + 206151.1) / 1000}, {"energy-export", (428958.4 + 4.1) / 1000},
    };
    expect_points(d, e, G_N_ELEMENTS(e));
    wbt_daemon_stop(d);
    wbt_http_device_stop(h);
}

/* ---- gen2, digest ---------------------------------------------------------------------- */

static void test_gen2_pro3em(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtHttpDevice *h = wbt_http_device_start("shelly", "--model=pro3em", "--password=s3cret", NULL);
    WbtDaemon *d = meter_start(s, h, "password = s3cret\n");
    /* the EM and EMData samples of section 2.2; gen2's pf has no sign:
     * ours takes active power's */
    static const Expect e[] = {
        {"power", 392.5}, {"current", 3.693}, {"apparent-power", 828.6}, {"frequency", 50},
        {"l1/power", -60.2}, {"l1/power-factor", -0.45}, {"l2/power-factor", 0.32}, {"l3/voltage", 224.3},
        {"l2/apparent-power", 233.1}, {"l1/energy-import", 8340.01574}, {"l1/energy-export", 0.31558},
        {"energy-import", 27680.69754}, {"energy-export", 0.33364},
    };
    expect_points(d, e, G_N_ELEMENTS(e));
    wbt_daemon_expect_log(d, "is a Shelly Pro 3EM \\(gen2, triphase\\)", 1000);
    g_assert_cmpuint(wbt_daemon_count_log(h->proc, "^digest rejected"), ==, 0);
    g_assert_cmpuint(wbt_daemon_count_log(h->proc, "^digest ok"), >=, 2);
    /* a value changes; a missing neutral CT (null) is no problem */
    wbt_http_device_command(h, "shelly em.total_act_power=-1500 em.n_current=null");
    wbt_daemon_expect_point(d, "meter/power", -1500, 1e-9, 3000);
    wbt_daemon_stop(d);

    /* the wrong password: said once, the points stay away */
    g_free(wbt_scratch_conf(s, "20-meter.conf",
                            "[meter]\nplugin = shelly\nurl = %s\npoll-interval = 100ms\npassword = nope\n", h->url));
    d = wbt_scratch_daemon(s);
    wbt_daemon_expect_log(d, "HTTP 401 Unauthorized: the password is wrong", 5000);
    wbt_sleep(500);
    g_assert_cmpuint(wbt_daemon_count_log(d, "the password is wrong"), ==, 1);
    g_assert_cmpuint(wbt_daemon_count_point(d, "meter/power"), ==, 0);
    wbt_daemon_stop(d);
    wbt_http_device_stop(h);
}

static void test_gen2_proem(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtHttpDevice *h = wbt_http_device_start("shelly", "--model=proem", "--password=pw", NULL);
    WbtDaemon *d = meter_start(s, h, "password = pw\nchannel = 2\n");
    /* em1:1 of the simulator: -232.2 W, 2264.15 Wh imported */
    static const Expect e[] = {
        {"power", -232.2}, {"power-factor", -0.99}, {"voltage", 226.9}, {"current", 1.473},
        {"energy-import", 2.26415}, {"energy-export", 144.79228},
    };
    expect_points(d, e, G_N_ELEMENTS(e));
    wbt_daemon_expect_log(h->proc, "^GET /rpc/EM1.GetStatus\\?id=1$", 1000);
    wbt_daemon_expect_log(h->proc, "^GET /rpc/EM1Data.GetStatus\\?id=1$", 1000);
    wbt_daemon_stop(d);
    wbt_http_device_stop(h);
}

/* invert: a CT fitted the other way round swaps import and export */
static void test_invert(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtHttpDevice *h = wbt_http_device_start("shelly", "--model=proem", NULL);
    WbtDaemon *d = meter_start(s, h, "invert = true\n");
    static const Expect e[] = {
        {"power", 332.2}, {"power-factor", 0.99}, {"energy-import", 144.79228}, {"energy-export", 1.26415},
    };
    expect_points(d, e, G_N_ELEMENTS(e));
    wbt_daemon_stop(d);
    wbt_http_device_stop(h);
}

/* ---- failures ------------------------------------------------------------------------------ */

static void test_failures(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtHttpDevice *h = wbt_http_device_start("shelly", "--model=3em", NULL);
    WbtDaemon *d = meter_start(s, h, NULL);
    wbt_daemon_expect_point_state(d, "meter/power", "valid", 5000);
    static const struct {
        const char *mode, *reason;
    } modes[] = {
        {"429 1", "HTTP 429 Too Many Requests \\(Retry-After: 1 s\\)"},
        {"garbage", "the answer is not JSON \\(it starts \"<html><body>\"\\)"},
        {"truncated", "the answer is not JSON \\(cut short or garbled\\)"},
        {"stall 1500", "no answer within 0.5 s"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(modes); i++)
        wbt_http_expect_failure(d, h, "meter", modes[i].mode, modes[i].reason, "meter/power");
    g_assert_cmpuint(wbt_daemon_count_log(d, "answers again"), ==, G_N_ELEMENTS(modes));
    wbt_daemon_stop(d);
    wbt_http_device_stop(h);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/shelly/digest-curl", test_digest_curl);
    g_test_add_func("/shelly/gen1-em", test_gen1_em);
    g_test_add_func("/shelly/gen1-3em", test_gen1_3em);
    g_test_add_func("/shelly/gen2-pro3em", test_gen2_pro3em);
    g_test_add_func("/shelly/gen2-proem", test_gen2_proem);
    g_test_add_func("/shelly/invert", test_invert);
    g_test_add_func("/shelly/failures", test_failures);
    return g_test_run();
}
