/* Integration: PV data published to a real Mosquitto broker comes out of
 * the emulated DTSU666, read with mbpoll over Modbus TCP.
 *
 * Expected words are literals from shared/reference/: device-apis.md 3.4
 * (the register fixture derived from the Growatt sample payload) and
 * register-maps.md 1.6 (the OpenEMS vectors). */
#include "wbt.h"

#include <signal.h>

/* device-apis.md sample 3.3a, verbatim. */
static const char growatt_sample[] =
    "{\"InverterStatus\":1,\"InputPower\":3504.7,\"PV1Voltage\":352.1,\"PV1InputCurrent\":5.2,\"PV1InputPower\":1830.9,"
    "\"PV2Voltage\":348.7,\"PV2InputCurrent\":4.8,\"PV2InputPower\":1673.8,\"OutputPower\":3380.2,\"GridFrequency\":50.01,"
    "\"L1ThreePhaseGridVoltage\":231.2,\"L1ThreePhaseGridOutputCurrent\":4.8,\"L1ThreePhaseGridOutputPower\":1127.1,"
    "\"L2ThreePhaseGridVoltage\":232.5,\"L2ThreePhaseGridOutputCurrent\":4.8,\"L2ThreePhaseGridOutputPower\":1126.4,"
    "\"L3ThreePhaseGridVoltage\":230.8,\"L3ThreePhaseGridOutputCurrent\":4.9,\"L3ThreePhaseGridOutputPower\":1126.7,"
    "\"TodayGenerateEnergy\":12.4,\"TotalGenerateEnergy\":8734.6,\"TWorkTimeTotal\":9821534.5,\"PV1EnergyToday\":6.5,"
    "\"PV1EnergyTotal\":4480.2,\"PV2EnergyToday\":6.3,\"PV2EnergyTotal\":4391.7,\"PVEnergyTotal\":8871.9,"
    "\"InverterTemperature\":41.3,\"TemperatureInsideIPM\":45.0,\"BoostTemperature\":39.8,\"DischargePower\":0,"
    "\"ChargePower\":0,\"BatteryVoltage\":0,\"SOC\":0,\"ACPowerToUser\":0,\"ACPowerToUserTotal\":0,\"ACPowerToGrid\":2105.3,"
    "\"ACPowerToGridTotal\":2105.3,\"INVPowerToLocalLoad\":1274.9,\"INVPowerToLocalLoadTotal\":1274.9,"
    "\"BatteryTemperature\":0,\"BatteryState\":0,\"EnergyToUserToday\":1.2,\"EnergyToUserTotal\":1630.4,"
    "\"EnergyToGridToday\":7.9,\"EnergyToGridTotal\":5120.8,\"DischargeEnergyToday\":0,\"DischargeEnergyTotal\":0,"
    "\"ChargeEnergyToday\":0,\"ChargeEnergyTotal\":0,\"LocalLoadEnergyToday\":4.5,\"LocalLoadEnergyTotal\":3613.8,"
    "\"Mac\":\"A4:CF:12:34:56:78\",\"Cnt\":1234}";

/* The same keys carrying the OpenEMS test vectors. */
static const char openems_vectors[] =
    "{\"InverterStatus\":1,\"OutputPower\":2850,\"GridFrequency\":50.015,"
    "\"L1ThreePhaseGridVoltage\":230.9,\"L1ThreePhaseGridOutputCurrent\":5.25,\"L1ThreePhaseGridOutputPower\":1048,"
    "\"L2ThreePhaseGridVoltage\":231.1,\"L2ThreePhaseGridOutputCurrent\":4.7,\"L2ThreePhaseGridOutputPower\":1089,"
    "\"L3ThreePhaseGridVoltage\":230.7,\"L3ThreePhaseGridOutputCurrent\":4.1,\"L3ThreePhaseGridOutputPower\":713,"
    "\"TotalGenerateEnergy\":5678.234}";

static const char growatt_conf[] =
    "[growatt]\n"
    "plugin = mqtt\n"
    "host = localhost\n"
    "port = %u\n"
    "reconnect-delay = 100ms\n"
    "reconnect-delay-max = 400ms\n"
    "keepalive = 5s\n"
    "invalid-when = InverterStatus=-1\n"
    "point.power = energy/solar; OutputPower\n"
    "point.l1/power = energy/solar; L1ThreePhaseGridOutputPower\n"
    "point.l2/power = energy/solar; L2ThreePhaseGridOutputPower\n"
    "point.l3/power = energy/solar; L3ThreePhaseGridOutputPower\n"
    "point.l1/voltage = energy/solar; L1ThreePhaseGridVoltage\n"
    "point.l2/voltage = energy/solar; L2ThreePhaseGridVoltage\n"
    "point.l3/voltage = energy/solar; L3ThreePhaseGridVoltage\n"
    "point.l1/current = energy/solar; L1ThreePhaseGridOutputCurrent\n"
    "point.l2/current = energy/solar; L2ThreePhaseGridOutputCurrent\n"
    "point.l3/current = energy/solar; L3ThreePhaseGridOutputCurrent\n"
    "point.frequency = energy/solar; GridFrequency\n"
    "point.energy-import = energy/solar; TotalGenerateEnergy\n"
    "point.kw = test/kilowatts; scale=1000; unit=W\n"
    "point.nested = test/nested; $.meter.phases[2].power\n"
    "point.kept = test/kept; retained=accept\n"
    "point.fresh = test/fresh\n";

static const char meter_conf[] =
    "[meter]\nplugin = dtsu666\ntransport = tcp\nport = 0\nmax-age = 1s\n"
    "point.power = growatt/power\n"
    "point.power-l1 = growatt/l1/power\npoint.power-l2 = growatt/l2/power\npoint.power-l3 = growatt/l3/power\n"
    "point.voltage-l1 = growatt/l1/voltage\npoint.voltage-l2 = growatt/l2/voltage\npoint.voltage-l3 = growatt/l3/voltage\n"
    "point.current-l1 = growatt/l1/current\npoint.current-l2 = growatt/l2/current\npoint.current-l3 = growatt/l3/current\n"
    "point.frequency = growatt/frequency\npoint.energy-import = growatt/energy-import\n"
    "\n"
    /* one meter per extra mapping, each wired to Pt, so each value can be read */
    "[kw]\nplugin = dtsu666\ntransport = tcp\nport = 0\nphases = 1\nmax-age = 1s\npoint.power = growatt/kw\n"
    "[nested]\nplugin = dtsu666\ntransport = tcp\nport = 0\nphases = 1\nmax-age = 1s\npoint.power = growatt/nested\n"
    "[kept]\nplugin = dtsu666\ntransport = tcp\nport = 0\nphases = 1\nmax-age = 1s\npoint.power = growatt/kept\n"
    "[fresh]\nplugin = dtsu666\ntransport = tcp\nport = 0\nphases = 1\nmax-age = 1s\npoint.power = growatt/fresh\n";

typedef struct {
    WbtScratch *s;
    WbtBroker *broker;
    WbtDaemon *daemon;
    char *meter;
} Fixture;

static void setup(Fixture *f, gconstpointer data)
{
    f->s = wbt_scratch_new();
    f->broker = wbt_broker_start();
    /* retained before the daemon subscribes: one accepted, one not */
    wbt_publish(f->broker, "test/kept", "1500", TRUE);
    wbt_publish(f->broker, "test/fresh", "1500", TRUE);
    g_autofree char *src = g_strdup_printf(growatt_conf, f->broker->port);
    g_free(wbt_scratch_conf(f->s, "10-growatt.conf", "%s", src));
    g_free(wbt_scratch_conf(f->s, "20-meter.conf", "%s", meter_conf));
    f->daemon = wbt_scratch_daemon(f->s);
    f->meter = wbt_daemon_tcp_target(f->daemon, "meter");
    wbt_daemon_expect_log(f->daemon, "\\[growatt\\] connected to MQTT broker localhost", 10000);
}

static void teardown(Fixture *f, gconstpointer data)
{
    wbt_daemon_stop(f->daemon);
    wbt_broker_stop(f->broker);
    g_free(f->meter);
    wbt_scratch_free(f->s);
}

static void test_growatt_sample(Fixture *f, gconstpointer data)
{
    wbt_publish(f->broker, "energy/solar", growatt_sample, TRUE);
    /* device-apis.md 3.4: the register fixture derived from sample 3.3a */
    static const guint16 hz[] = {0x459C, 0x4800};      /* Freq 5001.0 */
    static const guint16 ua[] = {0x4510, 0x8000};      /* Ua 2312.0 */
    static const guint16 ia[] = {0x4596, 0x0000};      /* Ia 4800.0 */
    static const guint16 pt_pa[] = {0x4704, 0x0A00,    /* Pt 33802.0 */
                                    0x4630, 0x1C00};   /* Pa 11271.0 */
    static const guint16 qt[] = {0x0000, 0x0000};      /* Qt 0.0 */
    wbt_expect_words(f->meter, 1, 3, 0x2044, hz, 2, "Freq");
    wbt_expect_words(f->meter, 1, 3, 0x2006, ua, 2, "Ua");
    wbt_expect_words(f->meter, 1, 3, 0x200C, ia, 2, "Ia");
    wbt_expect_words(f->meter, 1, 3, 0x2012, pt_pa, 4, "Pt, Pa");
    wbt_expect_words(f->meter, 1, 3, 0x201A, qt, 2, "Qt");
}

static void test_openems_vectors(Fixture *f, gconstpointer data)
{
    wbt_publish(f->broker, "energy/solar", openems_vectors, FALSE);
    static const guint16 u[] = {0x4510, 0x5000, 0x4510, 0x7000, 0x4510, 0x3000,  /* 230.9 231.1 230.7 V */
                                0x45A4, 0x1000, 0x4592, 0xE000, 0x4580, 0x2000,  /* 5.25 4.7 4.1 A */
                                0x46DE, 0xA800, 0x4623, 0xC000, 0x462A, 0x2800, 0x45DE, 0xD000}; /* W */
    wbt_expect_words(f->meter, 1, 3, 0x2006, u, G_N_ELEMENTS(u), "Ua..Pc");
    static const guint16 hz[] = {0x459C, 0x4C00};
    wbt_expect_words(f->meter, 1, 3, 0x2044, hz, 2, "Freq 50.015");
    static const guint16 e[] = {0x45B1, 0x71DF};
    wbt_expect_words(f->meter, 1, 3, 0x101E, e, 2, "ImpEp 5678.234");
}

static void test_mapping_forms(Fixture *f, gconstpointer data)
{
    /* a plain number with a scale: 2.85 kW -> Pt 2850 W */
    wbt_publish(f->broker, "test/kilowatts", "2.85", FALSE);
    g_autofree char *kw = wbt_daemon_tcp_target(f->daemon, "kw");
    static const guint16 p2850[] = {0x46DE, 0xA800};
    wbt_expect_words(kw, 1, 3, 0x2012, p2850, 2, "scaled plain number");

    /* a JsonPath into nested objects and arrays */
    wbt_publish(f->broker, "test/nested", "{\"meter\":{\"phases\":[{\"power\":1},{\"power\":2},{\"power\":-1500}]}}", FALSE);
    g_autofree char *nested = wbt_daemon_tcp_target(f->daemon, "nested");
    static const guint16 m1500[] = {0xC66A, 0x6000};
    wbt_expect_words(nested, 1, 3, 0x2012, m1500, 2, "JsonPath field");
}

static void test_retained(Fixture *f, gconstpointer data)
{
    /* retained=accept: served from the retained message */
    g_autofree char *kept = wbt_daemon_tcp_target(f->daemon, "kept");
    static const guint16 raw15000[] = {0x466A, 0x6000}; /* 1500 W = 15000.0 in 0.1 W */
    wbt_expect_words(kept, 1, 3, 0x2012, raw15000, 2, "retained=accept");

    /* default: a retained message is of unknown age: invalid, so silent */
    g_autofree char *fresh = wbt_daemon_tcp_target(f->daemon, "fresh");
    wbt_daemon_expect_log(f->daemon, "\\[fresh\\] (still )?silent: growatt/fresh is invalid", 5000);
    g_autoptr(WbtRead) r = wbt_mbpoll_read(fresh, 1, 3, 0x2012, 2);
    g_assert_false(r->ok);
    g_assert_cmpstr(r->error, ==, "Connection timed out");
    /* a live message makes it valid */
    wbt_publish(f->broker, "test/fresh", "-1500", FALSE);
    static const guint16 m1500[] = {0xC66A, 0x6000};
    wbt_expect_words(fresh, 1, 3, 0x2012, m1500, 2, "live after retained");
}

static void test_reconnect(Fixture *f, gconstpointer data)
{
    wbt_publish(f->broker, "test/kilowatts", "1", FALSE);
    g_autofree char *kw = wbt_daemon_tcp_target(f->daemon, "kw");
    static const guint16 p1000[] = {0x461C, 0x4000};
    wbt_expect_words(kw, 1, 3, 0x2012, p1000, 2, "before the broker restarts");

    /* the broker goes away and comes back on the same port */
    guint port = f->broker->port;
    wbt_broker_stop(f->broker);
    wbt_daemon_expect_log(f->daemon, "\\[growatt\\] localhost:\\d+: .*retrying in", 5000);
    wbt_sleep(500);
    f->broker = NULL;
    for (int attempt = 0; attempt < 20 && !f->broker; attempt++) {
        f->broker = wbt_broker_start_on(port);
        if (!f->broker)
            wbt_sleep(100);
    }
    g_assert_nonnull(f->broker);
    /* reconnected and resubscribed: a new value arrives */
    g_assert_cmpuint(wbt_daemon_count_log(f->daemon, "\\[growatt\\] connected to MQTT broker"), ==, 1);
    gint64 end = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    while (wbt_daemon_count_log(f->daemon, "\\[growatt\\] connected to MQTT broker") < 2 &&
           g_get_monotonic_time() < end)
        wbt_sleep(50);
    g_assert_cmpuint(wbt_daemon_count_log(f->daemon, "\\[growatt\\] connected to MQTT broker"), ==, 2);
    wbt_publish(f->broker, "test/kilowatts", "2.85", FALSE);
    static const guint16 p2850[] = {0x46DE, 0xA800};
    wbt_expect_words(kw, 1, 3, 0x2012, p2850, 2, "after the broker restarted");
}

static void openssl(const char *dir, const char *cmd)
{
    g_autofree char *full = g_strdup_printf("cd '%s' && %s", dir, cmd);
    const char *argv[] = {"sh", "-c", full, NULL};
    g_autofree char *err = NULL;
    int status = wbt_run(argv, 30000, NULL, &err);
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("%s: %s", cmd, err);
}

/* tls = true: the broker's certificate is checked against ca-file and must
 * name the host; a broker with a certificate from another CA is refused. */
static void test_tls(void)
{
    g_autofree char *dir = wbt_tmpdir_new();
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    g_autofree char *ca = g_strdup_printf("openssl req -x509 %s -days 2 -subj /CN=wattbridge-test-ca "
                                          "-keyout ca.key -out ca.crt 2>/dev/null", ec);
    g_autofree char *other = g_strdup_printf("openssl req -x509 %s -days 2 -subj /CN=someone-else "
                                             "-keyout other.key -out other.crt 2>/dev/null", ec);
    g_autofree char *csr = g_strdup_printf("openssl req %s -subj /CN=localhost -keyout server.key -out server.csr "
                                           "2>/dev/null", ec);
    openssl(dir, ca);
    openssl(dir, other);
    openssl(dir, csr);
    g_free(wbt_write(dir, "san.ext", "subjectAltName=DNS:localhost\n"));
    openssl(dir, "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
                 "-extfile san.ext -out server.crt 2>/dev/null");
    g_autofree char *cafile = g_build_filename(dir, "ca.crt", NULL);
    g_autofree char *otherca = g_build_filename(dir, "other.crt", NULL);
    g_autofree char *cert = g_build_filename(dir, "server.crt", NULL);
    g_autofree char *key = g_build_filename(dir, "server.key", NULL);
    WbtBroker *broker = wbt_broker_start_tls(cafile, cert, key);

    g_autofree char *confdir = g_build_filename(dir, "conf.d", NULL);
    g_autofree char *statedir = g_build_filename(dir, "state", NULL);
    g_autofree char *good = g_strdup_printf("[secure]\nplugin = mqtt\nhost = localhost\nport = %u\ntls = true\n"
                                            "ca-file = %s\nreconnect-delay = 200ms\npoint.power = test/kw; scale=1000\n",
                                            broker->port, cafile);
    g_autofree char *bad = g_strdup_printf("[untrusted]\nplugin = mqtt\nhost = localhost\nport = %u\ntls = true\n"
                                           "ca-file = %s\nreconnect-delay = 200ms\npoint.power = test/kw\n",
                                           broker->port, otherca);
    /* a certificate for "localhost" does not name 127.0.0.1 */
    g_autofree char *by_ip = g_strdup_printf("[by-address]\nplugin = mqtt\nhost = 127.0.0.1\nport = %u\ntls = true\n"
                                             "ca-file = %s\nreconnect-delay = 200ms\npoint.power = test/kw\n",
                                             broker->port, cafile);
    g_free(wbt_write(confdir, "10-secure.conf", good));
    g_free(wbt_write(confdir, "11-untrusted.conf", bad));
    g_free(wbt_write(confdir, "12-by-address.conf", by_ip));
    g_free(wbt_write(confdir, "20-meter.conf", "[meter]\nplugin = dtsu666\ntransport = tcp\nport = 0\nphases = 1\n"
                                               "max-age = 1s\npoint.power = secure/power\n"));
    WbtDaemon *d = wbt_daemon_start(confdir, statedir, NULL);
    g_autofree char *meter = wbt_daemon_tcp_target(d, "meter");
    wbt_daemon_expect_log(d, "\\[secure\\] connected to MQTT broker localhost", 10000);
    wbt_publish(broker, "test/kw", "2.85", FALSE);
    static const guint16 p2850[] = {0x46DE, 0xA800};
    wbt_expect_words(meter, 1, 3, 0x2012, p2850, 2, "over TLS");

    /* the certificate is not from the CA it trusts: refused, retried */
    wbt_daemon_expect_log(d, "\\[untrusted\\] localhost:\\d+: .*TLS.*retrying", 10000);
    wbt_daemon_expect_log(d, "\\[untrusted\\] .*certificate verify failed", 10000);
    wbt_daemon_expect_log(d, "\\[by-address\\] 127\\.0\\.0\\.1:\\d+: .*TLS.*certificate verify failed.*retrying", 10000);
    g_autofree char *log = wbt_daemon_log(d);
    g_assert_null(strstr(log, "[untrusted] connected"));
    g_assert_null(strstr(log, "[by-address] connected"));
    wbt_daemon_stop(d);
    wbt_broker_stop(broker);
    wbt_tmpdir_free(g_steal_pointer(&dir));
}

/* A broker that stops answering (frozen, not closed): the keepalive
 * notices, one warning is logged, and the connection comes back when the
 * broker does. */
static void test_keepalive(Fixture *f, gconstpointer data)
{
    wbt_publish(f->broker, "test/kilowatts", "1", FALSE);
    g_autofree char *kw = wbt_daemon_tcp_target(f->daemon, "kw");
    static const guint16 p1000[] = {0x461C, 0x4000};
    wbt_expect_words(kw, 1, 3, 0x2012, p1000, 2, "before the broker freezes");
    g_subprocess_send_signal(f->broker->proc, SIGSTOP);
    /* keepalive = 5 s (MQTT's minimum in libmosquitto): a PINGREQ after
     * 5 s, no PINGRESP within another 5 s */
    g_autofree char *line = wbt_daemon_wait_log(
        f->daemon, "(\\[growatt\\] .*no answer from the broker within the keepalive; retrying in 0\\.1 s.*)", 20000);
    g_assert_nonnull(line);
    g_subprocess_send_signal(f->broker->proc, SIGCONT);
    gint64 end = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (wbt_daemon_count_log(f->daemon, "\\[growatt\\] connected to MQTT broker") < 2 &&
           g_get_monotonic_time() < end)
        wbt_sleep(50);
    g_assert_cmpuint(wbt_daemon_count_log(f->daemon, "\\[growatt\\] connected to MQTT broker"), ==, 2);
    /* one failure, one warning, one retry */
    g_assert_cmpuint(wbt_daemon_count_log(f->daemon, "warning: \\[growatt\\] .*retrying in"), ==, 1);
    wbt_publish(f->broker, "test/kilowatts", "2.85", FALSE);
    static const guint16 p2850[] = {0x46DE, 0xA800};
    wbt_expect_words(kw, 1, 3, 0x2012, p2850, 2, "after the broker came back");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/mqtt/tcp/growatt-sample", Fixture, NULL, setup, test_growatt_sample, teardown);
    g_test_add("/mqtt/tcp/openems-vectors", Fixture, NULL, setup, test_openems_vectors, teardown);
    g_test_add("/mqtt/tcp/mapping-forms", Fixture, NULL, setup, test_mapping_forms, teardown);
    g_test_add("/mqtt/tcp/retained", Fixture, NULL, setup, test_retained, teardown);
    g_test_add("/mqtt/tcp/reconnect", Fixture, NULL, setup, test_reconnect, teardown);
    g_test_add_func("/mqtt/tls", test_tls);
    g_test_add("/mqtt/tcp/keepalive", Fixture, NULL, setup, test_keepalive, teardown);
    return g_test_run();
}
