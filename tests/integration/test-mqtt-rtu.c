/* Integration: MQTT -> emulated DTSU666 over Modbus RTU on socat pty pairs,
 * and what happens when the source goes stale, says it has no value, or
 * sends garbage, and when the daemon restarts with a lower counter.
 *
 * Expected frames and words are literals from shared/reference/
 * register-maps.md (Appendix A frames, section 1.6 vectors).  Requests that
 * Appendix A does not list get their CRC from the small function below;
 * replies are always compared with the literal bytes. */
#include "wbt.h"

#include <math.h>

static const char growatt_conf[] =
    "[growatt]\nplugin = mqtt\nhost = 127.0.0.1\nport = %u\nreconnect-delay = 100ms\n"
    "invalid-when = InverterStatus=-1\n"
    "point.power = energy/solar; OutputPower\n"
    "point.l1/power = energy/solar; L1ThreePhaseGridOutputPower\n"
    "point.l2/power = energy/solar; L2ThreePhaseGridOutputPower\n"
    "point.l3/power = energy/solar; L3ThreePhaseGridOutputPower\n"
    "point.l1/voltage = energy/solar; L1ThreePhaseGridVoltage\n"
    "point.l2/voltage = energy/solar; L2ThreePhaseGridVoltage\n"
    "point.l3/voltage = energy/solar; L3ThreePhaseGridVoltage\n"
    "point.frequency = energy/solar; GridFrequency\n"
    "point.energy-import = energy/solar; TotalGenerateEnergy\n";

#define WIRING                                                                                     \
    "point.power = growatt/power\npoint.power-l1 = growatt/l1/power\n"                             \
    "point.power-l2 = growatt/l2/power\npoint.power-l3 = growatt/l3/power\n"                       \
    "point.voltage-l1 = growatt/l1/voltage\npoint.voltage-l2 = growatt/l2/voltage\n"               \
    "point.voltage-l3 = growatt/l3/voltage\npoint.frequency = growatt/frequency\n"                 \
    "point.energy-import = growatt/energy-import\nmax-age = 1s\n"

/* the seed installation's meter on RS485, and two on TCP with the other
 * policies */
static const char meters_conf[] =
    "[seed]\nplugin = dtsu666\ntransport = rtu\ndevice = %s\nbaud = 9600\nunit-id = 1\n"
    "on-invalid = zero\non-stale = silent\nreopen-delay = 200ms\n" WIRING "\n"
    "[strict]\nplugin = dtsu666\ntransport = tcp\nport = 0\non-invalid = exception\non-stale = exception\n" WIRING "\n"
    "[lenient]\nplugin = dtsu666\ntransport = tcp\nport = 0\non-invalid = silent\non-stale = zero\n" WIRING;

/* Pa = +1000 W, Pb = -250 W, Pc = 0 (Appendix A's Deye reply), Pt = -1500 W
 * is not their sum on purpose: Pt is wired and served as published. */
static const char payload[] =
    "{\"InverterStatus\":1,\"OutputPower\":-1500,\"L1ThreePhaseGridOutputPower\":1000,"
    "\"L2ThreePhaseGridOutputPower\":-250,\"L3ThreePhaseGridOutputPower\":0,\"L1ThreePhaseGridVoltage\":230.9,"
    "\"L2ThreePhaseGridVoltage\":231.1,\"L3ThreePhaseGridVoltage\":230.7,\"GridFrequency\":50.015,"
    "\"TotalGenerateEnergy\":%s}";

typedef struct {
    WbtScratch *s;
    WbtBroker *broker;
    WbtPty *pty;
    WbtDaemon *daemon;
    char *rtu;      /* "rtu:<master end>" */
    char *strict;
    char *lenient;
    WbtRepeater *stick;   /* the Growatt stick, publishing every 200 ms */
} Fixture;

static void start_daemon(Fixture *f)
{
    f->daemon = wbt_scratch_daemon(f->s);
    wbt_daemon_expect_log(f->daemon, "\\[seed\\] serving Modbus RTU on ", 10000);
    g_free(f->strict);
    g_free(f->lenient);
    f->strict = wbt_daemon_tcp_target(f->daemon, "strict");
    f->lenient = wbt_daemon_tcp_target(f->daemon, "lenient");
    wbt_daemon_expect_log(f->daemon, "\\[growatt\\] connected to MQTT broker", 10000);
}

/* The stick publishes @energy's payload from now on. */
static void publish(Fixture *f, const char *energy)
{
    g_autofree char *text = g_strdup_printf(payload, energy);
    if (!f->stick)
        f->stick = wbt_repeat(f->broker, "energy/solar", text, 200);
    else
        wbt_repeater_set_payload(f->stick, text);
}

static void stick_stop(Fixture *f)
{
    wbt_repeater_stop(f->stick);
    f->stick = NULL;
}

static void setup(Fixture *f, gconstpointer data)
{
    f->s = wbt_scratch_new();
    f->broker = wbt_broker_start();
    f->pty = wbt_pty_start(f->s->dir, "rs485");
    f->rtu = g_strdup_printf("rtu:%s", f->pty->b);
    g_autofree char *src = g_strdup_printf(growatt_conf, f->broker->port);
    g_autofree char *meters = g_strdup_printf(meters_conf, f->pty->a);
    g_free(wbt_scratch_conf(f->s, "10-growatt.conf", "%s", src));
    g_free(wbt_scratch_conf(f->s, "20-meters.conf", "%s", meters));
    start_daemon(f);
}

static void teardown(Fixture *f, gconstpointer data)
{
    stick_stop(f);
    wbt_daemon_stop(f->daemon);
    wbt_pty_stop(f->pty);
    wbt_broker_stop(f->broker);
    g_free(f->rtu);
    g_free(f->strict);
    g_free(f->lenient);
    wbt_scratch_free(f->s);
}

/* CRC-16/MODBUS, only to build requests Appendix A does not list. */
static void add_crc(GByteArray *frame)
{
    guint16 crc = 0xFFFF;
    for (guint i = 0; i < frame->len; i++) {
        crc ^= frame->data[i];
        for (int b = 0; b < 8; b++)
            crc = (crc & 1) ? (crc >> 1) ^ 0xA001 : crc >> 1;
    }
    guint8 tail[2] = {crc & 0xFF, crc >> 8};
    g_byte_array_append(frame, tail, 2);
}

static void assert_frame(GBytes *got, const guint8 *expected, gsize n, const char *what)
{
    gsize len = 0;
    const guint8 *data = g_bytes_get_data(got, &len);
    if (len != n || memcmp(data, expected, n) != 0) {
        g_autoptr(GString) s = g_string_new(NULL);
        for (gsize i = 0; i < len; i++)
            g_string_append_printf(s, "%02X ", data[i]);
        g_error("%s: got [%s], expected %zu bytes", what, s->str, n);
    }
}

static void test_frames(Fixture *f, gconstpointer data)
{
    publish(f, "5678.234");
    static const guint16 pt[] = {0xC66A, 0x6000};
    wbt_expect_words(f->rtu, 1, 3, 0x2012, pt, 2, "Pt over RTU");

    /* Appendix A, byte for byte, CRCs included */
    static const guint8 read_pt[] = {0x01, 0x03, 0x20, 0x12, 0x00, 0x02, 0x6F, 0xCE};
    static const guint8 pt_reply[] = {0x01, 0x03, 0x04, 0xC6, 0x6A, 0x60, 0x00, 0xCE, 0xA7};
    g_autoptr(GBytes) r1 = wbt_rtu_exchange(f->pty->b, read_pt, sizeof read_pt, 1000);
    assert_frame(r1, pt_reply, sizeof pt_reply, "FC03 Pt = -1500 W");

    static const guint8 read_pt4[] = {0x01, 0x04, 0x20, 0x12, 0x00, 0x02, 0xDA, 0x0E};
    static const guint8 pt4_reply[] = {0x01, 0x04, 0x04, 0xC6, 0x6A, 0x60, 0x00, 0xCF, 0x10};
    g_autoptr(GBytes) r2 = wbt_rtu_exchange(f->pty->b, read_pt4, sizeof read_pt4, 1000);
    assert_frame(r2, pt4_reply, sizeof pt4_reply, "FC04 Pt = -1500 W");

    static const guint8 deye[] = {0x01, 0x03, 0x20, 0x14, 0x00, 0x06, 0x8E, 0x0C};
    static const guint8 deye_reply[] = {0x01, 0x03, 0x0C, 0x46, 0x1C, 0x40, 0x00, 0xC5, 0x1C, 0x40,
                                        0x00, 0x00, 0x00, 0x00, 0x00, 0xEC, 0x6D};
    g_autoptr(GBytes) r3 = wbt_rtu_exchange(f->pty->b, deye, sizeof deye, 1000);
    assert_frame(r3, deye_reply, sizeof deye_reply, "Deye Pa..Pc");

    /* IrAt/UrAt: Appendix A's reply */
    g_autoptr(GByteArray) ratios = g_byte_array_new();
    g_byte_array_append(ratios, (const guint8[]){0x01, 0x03, 0x00, 0x06, 0x00, 0x02}, 6);
    add_crc(ratios);
    static const guint8 ratios_reply[] = {0x01, 0x03, 0x04, 0x00, 0x01, 0x00, 0x0A, 0x2B, 0xF4};
    g_autoptr(GBytes) r4 = wbt_rtu_exchange(f->pty->b, ratios->data, ratios->len, 1000);
    assert_frame(r4, ratios_reply, sizeof ratios_reply, "IrAt/UrAt");

    /* outside every block: Appendix A's exception 02 */
    g_autoptr(GByteArray) outside = g_byte_array_new();
    g_byte_array_append(outside, (const guint8[]){0x01, 0x03, 0x30, 0x00, 0x00, 0x02}, 6);
    add_crc(outside);
    static const guint8 exc[] = {0x01, 0x83, 0x02, 0xC0, 0xF1};
    g_autoptr(GBytes) r5 = wbt_rtu_exchange(f->pty->b, outside->data, outside->len, 1000);
    assert_frame(r5, exc, sizeof exc, "exception 02");

    /* another unit id (the Growatt capture's unit 4): no answer at all */
    static const guint8 unit4[] = {0x04, 0x03, 0x20, 0x12, 0x00, 0x10, 0xEF, 0x96};
    g_autoptr(GBytes) r6 = wbt_rtu_exchange(f->pty->b, unit4, sizeof unit4, 300);
    g_assert_cmpuint(g_bytes_get_size(r6), ==, 0);

    /* mbpoll over RTU agrees */
    static const guint16 u[] = {0x4510, 0x5000, 0x4510, 0x7000, 0x4510, 0x3000};
    wbt_expect_words(f->rtu, 1, 3, 0x2006, u, G_N_ELEMENTS(u), "Ua..Uc over RTU");
    static const guint16 e[] = {0x45B1, 0x71DF};
    wbt_expect_words(f->rtu, 1, 3, 0x101E, e, 2, "ImpEp over RTU");
}

static void test_garbage(Fixture *f, gconstpointer data)
{
    publish(f, "5678.234");
    static const guint16 pt[] = {0xC66A, 0x6000};
    wbt_expect_words(f->rtu, 1, 3, 0x2012, pt, 2, "Pt before the garbage");

    /* a payload that does not parse: the reason is logged, the last good
     * values stay served (the stick now sends only garbage: they stay until
     * max-age, and never turn invalid or zero) */
    wbt_repeater_set_payload(f->stick, "garbage{\"OutputPower\":");
    wbt_daemon_expect_log(f->daemon, "\\[growatt\\] energy/solar: ignoring a payload that does not parse", 5000);
    wbt_expect_words(f->rtu, 1, 3, 0x2012, pt, 2, "Pt after the garbage");
    wbt_expect_words(f->strict, 1, 3, 0x2012, pt, 2, "Pt after the garbage (TCP)");
    g_autofree char *log = wbt_daemon_log(f->daemon);
    g_assert_null(strstr(log, "is invalid"));
    /* a field that is not a number keeps its last good value too */
    wbt_repeater_set_payload(f->stick, "{\"OutputPower\":\"lots\"}");
    wbt_daemon_expect_log(f->daemon, "field OutputPower is not a number", 5000);
    /* the other fields are missing from that payload: those points are
     * invalid now, so the seed meter serves zeros (on-invalid = zero) */
    static const guint16 zero[] = {0x0000, 0x0000, 0x0000, 0x0000, 0x0000, 0x0000, 0x0000, 0x0000};
    wbt_expect_words(f->rtu, 1, 3, 0x2012, zero, 8, "Pt..Pc zeroed while fields are missing");
    /* the other fields back (Pa now 1100 W), OutputPower still not a
     * number: once the new Pa is served, Pt is the last good -1500 W */
    wbt_repeater_set_payload(f->stick,
                             "{\"InverterStatus\":1,\"OutputPower\":\"lots\",\"L1ThreePhaseGridOutputPower\":1100,"
                             "\"L2ThreePhaseGridOutputPower\":-250,\"L3ThreePhaseGridOutputPower\":0,"
                             "\"L1ThreePhaseGridVoltage\":230.9,\"L2ThreePhaseGridVoltage\":231.1,"
                             "\"L3ThreePhaseGridVoltage\":230.7,\"GridFrequency\":50.015,"
                             "\"TotalGenerateEnergy\":5678.234}");
    static const guint16 pabc_lots[] = {0x462B, 0xE000, 0xC51C, 0x4000, 0x0000, 0x0000}; /* 1100, -250, 0 W */
    wbt_expect_words(f->rtu, 1, 3, 0x2014, pabc_lots, 6, "Pa..Pc beside a power that is not a number");
    g_autoptr(WbtRead) kept = wbt_mbpoll_read(f->rtu, 1, 3, 0x2012, 2);
    wbt_assert_words(kept, pt, 2, "Pt keeps its last good value");
    publish(f, "5678.234");
    wbt_expect_words(f->rtu, 1, 3, 0x2012, pt, 2, "Pt with good data again");
    static const guint16 ptabc[] = {0xC66A, 0x6000, 0x461C, 0x4000, 0xC51C, 0x4000, 0x0000, 0x0000};
    wbt_expect_words(f->rtu, 1, 3, 0x2012, ptabc, 8, "Pt..Pc with good data again");

    /* noise on the RS485 line: discarded, the next request is answered */
    static const guint8 noise[] = {0xFF, 0x00, 0x13, 0x37, 0x01, 0x03, 0x20, 0x99, 0xAB, 0xCD, 0xEF, 0x55, 0xAA};
    wbt_rtu_send(f->pty->b, noise, sizeof noise);
    wbt_sleep(700);
    g_autoptr(WbtRead) after_noise = wbt_mbpoll_read(f->rtu, 1, 3, 0x2012, 2);
    wbt_assert_words(after_noise, pt, 2, "Pt after line noise");
}

static void test_invalid(Fixture *f, gconstpointer data)
{
    publish(f, "5678.234");
    static const guint16 pt[] = {0xC66A, 0x6000};
    wbt_expect_words(f->rtu, 1, 3, 0x2012, pt, 2, "Pt");
    wbt_expect_words(f->strict, 1, 3, 0x2012, pt, 2, "Pt (strict)");
    wbt_expect_words(f->lenient, 1, 3, 0x2012, pt, 2, "Pt (lenient)");

    /* the Growatt stick's read-failure message, exactly as it sends it */
    wbt_repeater_set_payload(f->stick, "{\"InverterStatus\": -1 }");
    /* on-invalid = zero: no power; voltages and the counter as last served */
    static const guint16 zero[] = {0x0000, 0x0000, 0x0000, 0x0000, 0x0000, 0x0000, 0x0000, 0x0000};
    wbt_expect_words(f->rtu, 1, 3, 0x2012, zero, 8, "Pt..Pc zeroed");
    static const guint16 u[] = {0x4510, 0x5000, 0x4510, 0x7000, 0x4510, 0x3000};
    wbt_expect_words(f->rtu, 1, 3, 0x2006, u, 6, "voltages kept");
    static const guint16 e[] = {0x45B1, 0x71DF};
    wbt_expect_words(f->rtu, 1, 3, 0x101E, e, 2, "ImpEp kept");
    static const guint16 pf[] = {0x447A, 0x0000};
    wbt_expect_words(f->rtu, 1, 3, 0x202A, pf, 2, "PF 1.000 with no load");
    /* on-invalid = exception: 04; on-invalid = silent: no answer */
    wbt_expect_failure(f->strict, 1, 0x2012, "Slave device or server failure", "strict meter");
    wbt_expect_failure(f->lenient, 1, 0x2012, "Connection timed out", "lenient meter");

    /* the inverter wakes up: serving again */
    publish(f, "5678.234");
    wbt_expect_words(f->rtu, 1, 3, 0x2012, pt, 2, "Pt after waking");
    wbt_expect_words(f->strict, 1, 3, 0x2012, pt, 2, "strict after waking");
    wbt_expect_words(f->lenient, 1, 3, 0x2012, pt, 2, "lenient after waking");
}

static void test_stale(Fixture *f, gconstpointer data)
{
    publish(f, "5678.234");
    static const guint16 pt[] = {0xC66A, 0x6000};
    wbt_expect_words(f->rtu, 1, 3, 0x2012, pt, 2, "Pt");

    /* nothing more for longer than max-age (1 s) */
    stick_stop(f);
    wbt_daemon_expect_log(f->daemon, "\\[seed\\] silent: growatt/[a-z0-9/-]+ is stale \\(on-stale = silent\\)", 5000);
    wbt_expect_failure(f->rtu, 1, 0x2012, "Connection timed out", "seed meter when stale");
    static const guint8 read_pt[] = {0x01, 0x03, 0x20, 0x12, 0x00, 0x02, 0x6F, 0xCE};
    g_autoptr(GBytes) none = wbt_rtu_exchange(f->pty->b, read_pt, sizeof read_pt, 300);
    g_assert_cmpuint(g_bytes_get_size(none), ==, 0);
    wbt_expect_failure(f->strict, 1, 0x2012, "Slave device or server failure", "strict meter when stale");
    /* on-stale = zero: 0 W, voltages kept */
    static const guint16 zero[] = {0x0000, 0x0000};
    wbt_expect_words(f->lenient, 1, 3, 0x2012, zero, 2, "lenient Pt when stale");
    static const guint16 ua[] = {0x4510, 0x5000};
    wbt_expect_words(f->lenient, 1, 3, 0x2006, ua, 2, "lenient Ua when stale");

    /* fresh data: answering resumes */
    publish(f, "5678.234");
    wbt_expect_words(f->rtu, 1, 3, 0x2012, pt, 2, "Pt when fresh again");
    wbt_expect_words(f->strict, 1, 3, 0x2012, pt, 2, "strict when fresh again");
}

static void test_restart_lower_counter(Fixture *f, gconstpointer data)
{
    publish(f, "5678.234");
    static const guint16 e[] = {0x45B1, 0x71DF}; /* 5678.234 kWh */
    wbt_expect_words(f->rtu, 1, 3, 0x101E, e, 2, "ImpEp");
    stick_stop(f);
    wbt_daemon_stop(f->daemon);

    /* restarted, no data yet: the zero policy serves the saved counter,
     * never 0; the others stay silent or answer 04 */
    start_daemon(f);
    wbt_expect_words(f->lenient, 1, 3, 0x101E, e, 2, "ImpEp under on-stale = zero before any data");
    static const guint16 zero[] = {0x0000, 0x0000};
    wbt_expect_words(f->lenient, 1, 3, 0x2012, zero, 2, "Pt under on-stale = zero before any data");
    wbt_expect_failure(f->rtu, 1, 0x101E, "Connection timed out", "seed meter before any data");

    /* the source comes back with a lower counter: the meter does not go back */
    publish(f, "5000");
    wbt_daemon_expect_log(f->daemon, "\\[seed\\] energy-import went backwards \\(5000\\.000 kWh < 5678\\.234 kWh", 5000);
    static const guint16 ua[] = {0x4510, 0x5000};
    wbt_expect_words(f->rtu, 1, 3, 0x2006, ua, 2, "serving after the restart");
    wbt_expect_words(f->rtu, 1, 3, 0x101E, e, 2, "ImpEp after the restart");
    wbt_expect_words(f->rtu, 1, 3, 0x401E, e, 2, "ImpEp mirror after the restart");
    /* and follows again once the source is past it: 6000.0 = 0x45BB8000 */
    publish(f, "6000");
    static const guint16 e6000[] = {0x45BB, 0x8000};
    wbt_expect_words(f->rtu, 1, 3, 0x101E, e6000, 2, "ImpEp when the source passes it");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/mqtt/rtu/appendix-a-frames", Fixture, NULL, setup, test_frames, teardown);
    g_test_add("/mqtt/rtu/garbage", Fixture, NULL, setup, test_garbage, teardown);
    g_test_add("/mqtt/rtu/invalid", Fixture, NULL, setup, test_invalid, teardown);
    g_test_add("/mqtt/rtu/stale", Fixture, NULL, setup, test_stale, teardown);
    g_test_add("/mqtt/rtu/restart-lower-counter", Fixture, NULL, setup, test_restart_lower_counter, teardown);
    return g_test_run();
}
