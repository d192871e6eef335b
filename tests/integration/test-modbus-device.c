/* Integration: every shipped map served by meter-emulator and read back by
 * modbus-device over a socat pty pair; the emulated SDM630 and DTSU666-H
 * read by an independent master the way real inverters poll them; the TCP
 * and RTU-over-TCP transports; and the configuration errors a user meets
 * (a shared line with two settings, rs485 on a line without it, a port
 * another program holds).
 *
 * The values a reader publishes are compared with what the source
 * published, converted as DESIGN.md says for the reader's role; the
 * inverter-side frames are the literal bytes of shared/reference/
 * register-maps.md Appendix A and section 1.8. */
#include "wbt.h"

#include <math.h>
#include <unistd.h>

/* What [src] publishes (the good test plugin, every 100 ms). */
static const char source_conf[] =
    "[src]\nplugin = good\nname = x\ninterval = 100ms\n"
    "point.power = -1500\npoint.pv-power = 3380.2\npoint.l1/voltage = 230.9\npoint.frequency = 50.01\n"
    "point.energy-import = 1234.5\npoint.l1/current = 5.25\npoint.soc = 55.5\npoint.temperature = 21.5\n"
    "point.state = 1\npoint.dc1/voltage = 350.4\n";

typedef struct {
    const char *point;   /* under the reader's instance */
    double value;
    double tolerance;
    const char *text;    /* or a text value */
} Expect;

typedef struct {
    const char *map;
    const char *wiring;  /* the emulator's point.* lines */
    const char *reader;  /* the reader's role, registers and options */
    Expect expect[8];
} MapCase;

#define METER_WIRING                                                                                  \
    "point.power = src/power\npoint.voltage-l1 = src/l1/voltage\npoint.frequency = src/frequency\n"   \
    "point.energy-import = src/energy-import\npoint.current-l1 = src/l1/current\n"
#define METER_EXPECT(power, energy)                                                                   \
    {"power", power, 1e-3, NULL}, {"l1/voltage", 230.9, 1e-4, NULL}, {"frequency", 50.01, 1e-4, NULL}, \
        {energy, 1234.5, 1e-3, NULL}, {"l1/current", 5.25, 1e-4, NULL}

static const MapCase map_cases[] = {
    {"chint-dtsu666", METER_WIRING,
     "role = grid\nfast = Pt@0x2012; Ua@0x2006; Freq@0x2044; ImpEp@0x101E; Ia@0x200C\nconnect = REV.\n",
     {METER_EXPECT(-1500, "energy-import"), {"register/REV.", 204, 0, NULL}}},
    {"huawei-dtsu666-h", METER_WIRING, "role = grid\nfast = Pt; Ua; Freq; ImpEp; Ia\nconnect = Presence; Addr\n",
     {METER_EXPECT(-1500, "energy-import"), {"register/Presence", 15121, 0, NULL}, {"register/Addr", 11, 0, NULL}}},
    {"eastron-sdm120", METER_WIRING, "role = grid\nfast = ActivePower; Voltage; Frequency; ImportActiveEnergy; Current\n",
     {METER_EXPECT(-1500, "energy-import")}},
    {"eastron-sdm230", METER_WIRING, "role = grid\nfast = ActivePower; Voltage; Frequency; ImportActiveEnergy; Current\n",
     {METER_EXPECT(-1500, "energy-import")}},
    /* a meter on a PV inverter's line: its import (-1500 W) is production,
     * the counter of its import is the PV's export */
    {"eastron-sdm630", METER_WIRING,
     "role = pv\nfast = TotalActivePower; Voltage1; Frequency; ImportActiveEnergy; Current1\n",
     {METER_EXPECT(1500, "energy-export")}},
    {"growatt-min-tl-x", METER_WIRING "point.voltage-dc1 = src/dc1/voltage\npoint.temperature = src/temperature\n",
     "role = pv\nfast = Pac; Vac1; Fac; EacTotal; Iac1; Vpv1; Temp1\nmin-delay = 20ms\n",
     /* 0.1 A registers: 5.25 A is served as 5.2 */
     {{"power", -1500, 1e-6, NULL}, {"l1/voltage", 230.9, 1e-6, NULL}, {"frequency", 50.01, 1e-6, NULL},
      {"energy-import", 1234.5, 1e-6, NULL}, {"l1/current", 5.2, 1e-6, NULL}, {"dc1/voltage", 350.4, 1e-6, NULL},
      {"temperature", 21.5, 1e-6, NULL}}},
    {"growatt-mid-tl3-x",
     "point.power = src/pv-power\npoint.voltage-l1 = src/l1/voltage\npoint.frequency = src/frequency\n"
     "point.energy-import = src/energy-import\npoint.state = src/state\n",
     "role = pv\nfast = Pac; Vac1; Fac; EacTotal; InverterStatus\nmin-delay = 20ms\n",
     {{"power", 3380.2, 1e-6, NULL}, {"l1/voltage", 230.9, 1e-6, NULL}, {"frequency", 50.01, 1e-6, NULL},
      {"energy-import", 1234.5, 1e-6, NULL}, {"state", 0, 0, "normal"}}},
    /* the battery's register says -1500 W: charging, +1500 W as a battery */
    {"sungrow-sh",
     "point.power = src/power\npoint.soc = src/soc\npoint.temperature = src/temperature\n"
     "point.voltage-l1 = src/l1/voltage\n",
     "role = battery\nfast = BatteryPower; BatterySOC; BatteryTemperature; PhaseAVoltage\n",
     {{"power", 1500, 0, NULL}, {"soc", 55.5, 1e-6, NULL}, {"temperature", 21.5, 1e-6, NULL},
      {"l1/voltage", 230.9, 1e-6, NULL}}},
};

static void test_every_map(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_free(wbt_scratch_conf(s, "10-src.conf", "%s", source_conf));
    WbtPty *ptys[G_N_ELEMENTS(map_cases)];
    for (gsize i = 0; i < G_N_ELEMENTS(map_cases); i++) {
        const MapCase *c = &map_cases[i];
        ptys[i] = wbt_pty_start(s->dir, c->map);
        g_autofree char *emu = g_strdup_printf("20-emu-%zu.conf", i);
        g_autofree char *dev = g_strdup_printf("30-dev-%zu.conf", i);
        g_free(wbt_scratch_conf(s, emu, "[emu-%s]\nplugin = meter-emulator\nmap = %s\ndevice = %s\nmax-age = 5s\n%s",
                                c->map, c->map, ptys[i]->a, c->wiring));
        g_free(wbt_scratch_conf(s, dev,
                                "[dev-%s]\nplugin = modbus-device\nmap = %s\ndevice = %s\nfast-interval = 200ms\n"
                                "timeout = 300ms\n%s",
                                c->map, c->map, ptys[i]->b, c->reader));
    }
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = +/#\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    for (gsize i = 0; i < G_N_ELEMENTS(map_cases); i++) {
        const MapCase *c = &map_cases[i];
        for (const Expect *e = c->expect; e->point; e++) {
            g_autofree char *name = g_strdup_printf("dev-%s/%s", c->map, e->point);
            if (e->text)
                wbt_daemon_expect_point_text(d, name, e->text, 10000);
            else
                wbt_daemon_expect_point(d, name, e->value, e->tolerance, 10000);
        }
        g_test_message("%s: served and read back", c->map);
    }
    g_autofree char *log = wbt_daemon_log(d);
    g_assert_null(strstr(log, "cannot serve"));
    wbt_daemon_stop(d);
    for (gsize i = 0; i < G_N_ELEMENTS(map_cases); i++)
        wbt_pty_stop(ptys[i]);
}

/* ---- an independent master, polling like the inverters do ------------------------ */

static void expect_frame(const char *path, const guint8 *request, gsize len, const guint8 *reply, gsize reply_len,
                         const char *what)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        g_autoptr(GBytes) got = wbt_rtu_exchange(path, request, len, 500);
        gsize n = 0;
        const guint8 *data = g_bytes_get_data(got, &n);
        if (n == reply_len && memcmp(data, reply, n) == 0)
            return;
        if (attempt == 49) {
            g_autoptr(GString) s = g_string_new(NULL);
            for (gsize i = 0; i < n; i++)
                g_string_append_printf(s, "%02X ", data[i]);
            g_error("%s: got %s", what, s->str);
        }
        wbt_sleep(100);
    }
}

static void test_independent_master(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtPty *sdm = wbt_pty_start(s->dir, "sdm630");
    WbtPty *huawei = wbt_pty_start(s->dir, "dtsu666h");
    g_free(wbt_scratch_conf(s, "10-src.conf",
                            "[src]\nplugin = good\nname = x\ninterval = 100ms\npoint.power = 1234.5\n"
                            "point.minus = -1500\npoint.l1/voltage = 230.9\n"));
    g_free(wbt_scratch_conf(s, "20-sdm.conf",
                            "[sdm]\nplugin = meter-emulator\nmap = eastron-sdm630\ndevice = %s\nmax-age = 5s\n"
                            "point.power = src/power\npoint.voltage-l1 = src/l1/voltage\n", sdm->a));
    g_free(wbt_scratch_conf(s, "30-huawei.conf",
                            "[huawei]\nplugin = meter-emulator\nmap = huawei-dtsu666-h\ndevice = %s\nmax-age = 5s\n"
                            "point.power = src/minus\npoint.voltage-l1 = src/l1/voltage\n", huawei->a));
    WbtDaemon *d = wbt_scratch_daemon(s);
    wbt_daemon_expect_log(d, "\\[huawei\\] serving Modbus RTU on .* unit id 11, map huawei-dtsu666-h", 10000);

    /* Appendix A: total power 0x0034 and its reply 1234.5 W */
    static const guint8 sdm_req[] = {0x01, 0x04, 0x00, 0x34, 0x00, 0x02, 0x30, 0x05};
    static const guint8 sdm_rsp[] = {0x01, 0x04, 0x04, 0x44, 0x9A, 0x50, 0x00, 0xF3, 0x5B};
    expect_frame(sdm->b, sdm_req, sizeof sdm_req, sdm_rsp, sizeof sdm_rsp, "SDM630 total power");
    /* the whole first 80 input registers in one read, as ESPHome polls */
    g_autofree char *target = g_strdup_printf("rtu:%s", sdm->b);
    static const guint16 first[] = {0x4366, 0xE666}; /* Voltage1 230.9 */
    wbt_expect_words(target, 1, 4, 0x0000, first, 2, "SDM630 voltage");
    g_autoptr(WbtRead) all = wbt_mbpoll_read(target, 1, 4, 0x0000, 80);
    g_assert_true(all->ok);
    g_assert_cmpuint(g_array_index(all->words, guint16, 0x34), ==, 0x449A);
    g_assert_cmpuint(g_array_index(all->words, guint16, 0x35), ==, 0x5000);

    /* 1.8: the SUN2000's presence probe, data block and parameter block */
    static const guint8 probe[] = {0x0B, 0x03, 0x07, 0xD1, 0x00, 0x01, 0xD5, 0xED};
    static const guint8 probe_rsp[] = {0x0B, 0x03, 0x02, 0x3B, 0x11, 0xF3, 0x79};
    expect_frame(huawei->b, probe, sizeof probe, probe_rsp, sizeof probe_rsp, "DTSU666-H presence");
    static const guint8 data_req[] = {0x0B, 0x03, 0x08, 0x36, 0x00, 0x50, 0xA7, 0x32};
    g_autoptr(GBytes) data = wbt_rtu_exchange(huawei->b, data_req, sizeof data_req, 1000);
    gsize n = 0;
    const guint8 *b = g_bytes_get_data(data, &n);
    g_assert_cmpuint(n, ==, 3 + 160 + 2);
    g_assert_cmpuint(b[0], ==, 0x0B);
    g_assert_cmpuint(b[1], ==, 0x03);
    g_assert_cmpuint(b[2], ==, 160);
    static const guint8 ua[] = {0x43, 0x66, 0xE6, 0x66};   /* 0x083E: 230.9 V, plain units */
    static const guint8 pt[] = {0xC4, 0xBB, 0x80, 0x00};   /* 0x084E: -1500 W */
    g_assert_cmpmem(b + 3 + 2 * (0x083E - 0x0836), 4, ua, 4);
    g_assert_cmpmem(b + 3 + 2 * (0x084E - 0x0836), 4, pt, 4);
    static const guint8 param_req[] = {0x0B, 0x03, 0x08, 0xA6, 0x00, 0x0A, 0x27, 0x24};
    g_autoptr(GBytes) params = wbt_rtu_exchange(huawei->b, param_req, sizeof param_req, 1000);
    b = g_bytes_get_data(params, &n);
    g_assert_cmpuint(n, ==, 3 + 20 + 2);
    /* version, code, clear, wiring 0, CT 1, PT 1, protocol 3, address 11, baud 1, type 1 */
    static const guint8 want[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 3, 0, 11, 0, 1, 0, 1};
    g_assert_cmpmem(b + 3, 20, want, 20);

    wbt_daemon_stop(d);
    wbt_pty_stop(sdm);
    wbt_pty_stop(huawei);
}

/* ---- transports ------------------------------------------------------------------- */

static void test_tcp_and_rtu_over_tcp(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    /* a TCP-to-RS485 converter: socat between a TCP port and a pty */
    guint converter = wbt_free_port();
    g_autofree char *pty = g_build_filename(s->dir, "rs485", NULL);
    g_autofree char *pty_arg = g_strdup_printf("pty,raw,echo=0,link=%s", pty);
    g_autofree char *listen = g_strdup_printf("tcp-listen:%u,bind=127.0.0.1,reuseaddr", converter);
    const char *socat[] = {"socat", pty_arg, listen, NULL};
    GSubprocess *conv = wbt_spawn(socat, G_SUBPROCESS_FLAGS_STDERR_SILENCE);
    for (int i = 0; i < 100 && !g_file_test(pty, G_FILE_TEST_EXISTS); i++)
        wbt_sleep(20);
    g_free(wbt_scratch_conf(s, "10-src.conf", "[src]\nplugin = good\nname = x\ninterval = 100ms\npoint.power = 1234.5\n"));
    g_free(wbt_scratch_conf(s, "20-rtu.conf",
                            "[rtu-meter]\nplugin = meter-emulator\nmap = eastron-sdm230\ndevice = %s\n"
                            "point.power = src/power\nmax-age = 5s\nreopen-delay = 100ms\n", pty));
    guint tcp_port = wbt_free_port();
    g_free(wbt_scratch_conf(s, "30-tcp.conf",
                            "[tcp-meter]\nplugin = meter-emulator\nmap = eastron-sdm630\ntransport = tcp\nport = %u\n"
                            "unit-id = 7\npoint.power = src/power\nmax-age = 5s\n", tcp_port));
    g_free(wbt_scratch_conf(s, "40-a.conf",
                            "[via-converter]\nplugin = modbus-device\ntransport = rtu-over-tcp\nhost = 127.0.0.1:%u\n"
                            "map = eastron-sdm230\nrole = grid\nfast = ActivePower\nfast-interval = 200ms\n"
                            "timeout = 300ms\nreopen-delay = 200ms\n", converter));
    g_free(wbt_scratch_conf(s, "50-b.conf",
                            "[via-tcp]\nplugin = modbus-device\ntransport = tcp\nhost = 127.0.0.1:%u\nunit-id = 7\n"
                            "map = eastron-sdm630\nrole = grid\nfast = TotalActivePower\nfast-interval = 200ms\n"
                            "reopen-delay = 200ms\n", tcp_port));
    g_free(wbt_scratch_conf(s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = +/power\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    wbt_daemon_expect_point(d, "via-converter/power", 1234.5, 0, 10000);
    wbt_daemon_expect_point(d, "via-tcp/power", 1234.5, 0, 10000);
    wbt_daemon_expect_log(d, "Modbus port 127.0.0.1:.* open \\(rtu-over-tcp\\)", 1000);
    wbt_daemon_expect_log(d, "Modbus port 127.0.0.1:.* open \\(tcp\\)", 1000);
    wbt_daemon_stop(d);
    g_subprocess_force_exit(conv);
    g_subprocess_wait(conv, NULL, NULL);
    g_object_unref(conv);
}

/* ---- what a user gets wrong --------------------------------------------------------- */

/* Two devices behind one Modbus TCP gateway share its port: serial
 * settings (here a baud rate, and two maps' own serial lines) mean nothing
 * on TCP and are no conflict. */
static void test_tcp_shared(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_free(wbt_scratch_conf(s, "10-meter.conf",
                            "[meter]\nplugin = modbus-device\ntransport = tcp\nhost = 127.0.0.1:15020\nbaud = 9600\n"
                            "unit-id = 1\nmap = eastron-sdm230\nrole = grid\nfast = ActivePower\n"));
    g_free(wbt_scratch_conf(s, "20-inverter.conf",
                            "[inverter]\nplugin = modbus-device\ntransport = tcp\nhost = 127.0.0.1:15020\n"
                            "baud = 19200\nunit-id = 2\nmap = growatt-min-tl-x\nrole = pv\nfast = Pac\n"));
    g_autofree char *data = g_build_filename(g_getenv("WB_TEST_SRCDIR"), "data", NULL);
    const char *args[] = {"--config-dir", s->confdir, "--plugin-dir", g_getenv("WB_PLUGIN_DIR"), "--data-dir", data,
                          "--check-config", NULL};
    g_autofree char *out = NULL, *err = NULL;
    int status = wbt_run_daemon(args, &out, &err);
    if (status != 0)
        g_error("--check-config exited %d:\n%s\n%s", status, out, err);
    g_assert_null(strstr(out, "Modbus port"));
    g_assert_nonnull(strstr(out, "configuration OK"));
}

/* A setpoint names one point: a pattern is refused by the host. */
static void test_setpoint_pattern(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_autofree char *f = wbt_scratch_conf(s, "10-inverter.conf",
                                          "[inverter]\nplugin = modbus-device\ntransport = tcp\nhost = 127.0.0.1\n"
                                          "map = growatt-min-tl-x\nrole = pv\nfast = Pac\n"
                                          "setpoint.ActivePRate = ctl/+/limit\nfallback.ActivePRate = 100\n");
    g_autofree char *data = g_build_filename(g_getenv("WB_TEST_SRCDIR"), "data", NULL);
    const char *args[] = {"--config-dir", s->confdir, "--plugin-dir", g_getenv("WB_PLUGIN_DIR"), "--data-dir", data,
                          "--check-config", NULL};
    g_autofree char *out = NULL, *err = NULL;
    int status = wbt_run_daemon(args, &out, &err);
    g_assert_cmpint(status, ==, 1);
    g_autofree char *want = g_strdup_printf("%s:8: [inverter] setpoint.ActivePRate: expected one point's name", f);
    if (!strstr(out, want))
        g_error("expected \"%s\" in:\n%s\n%s", want, out, err);
}

static void test_line_settings_conflict(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtPty *pty = wbt_pty_start(s->dir, "bus");
    /* the same line through a link and its target, at two speeds */
    g_autofree char *link = g_build_filename(s->dir, "by-id-link", NULL);
    g_assert_cmpint(symlink(pty->b, link), ==, 0);
    g_autofree char *f1 = wbt_scratch_conf(s, "10-meter.conf",
                                           "[meter]\nplugin = modbus-device\ndevice = %s\nbaud = 9600\n"
                                           "map = eastron-sdm230\nrole = grid\nfast = ActivePower\n", pty->b);
    g_autofree char *f2 = wbt_scratch_conf(s, "20-inverter.conf",
                                           "[inverter]\nplugin = modbus-device\ndevice = %s\nbaud = 19200\n"
                                           "map = growatt-min-tl-x\nrole = pv\nfast = Pac\n", link);
    g_free(wbt_scratch_conf(s, "30-fine.conf", "[fine]\nplugin = good\nname = x\n"));
    g_autofree char *data = g_build_filename(g_getenv("WB_TEST_SRCDIR"), "data", NULL);
    const char *args[] = {"--config-dir", s->confdir, "--plugin-dir", g_getenv("WB_TEST_PLUGIN_DIR"), "--plugin-dir",
                          g_getenv("WB_PLUGIN_DIR"), "--data-dir", data, "--check-config", NULL};
    g_autofree char *out = NULL, *err = NULL;
    /* exits normally, without a sanitizer report, with the status of a
     * configuration that has errors */
    int status = wbt_run_daemon(args, &out, &err);
    g_assert_cmpint(status, !=, 0);
    if (status != 1)
        g_error("--check-config exited %d, expected 1:\n%s\n%s", status, out, err);
    /* both refused, each message naming both files and both settings */
    for (int i = 0; i < 2; i++) {
        const char *who = i ? "[inverter]" : "[meter]";
        g_autofree char *pattern = g_strdup_printf("%s:3: %s device: Modbus port ", i ? f2 : f1, who);
        const char *at = strstr(out, pattern);
        if (!at)
            g_error("no conflict reported for %s in:\n%s\n%s", who, out, err);
        g_autofree char *line = g_strndup(at, strcspn(at, "\n"));
        g_assert_nonnull(strstr(line, f1));
        g_assert_nonnull(strstr(line, f2));
        g_assert_nonnull(strstr(line, "rtu 9600 8N1"));
        g_assert_nonnull(strstr(line, "rtu 19200 8N1"));
    }
    g_assert_nonnull(strstr(out, "[fine]"));
    /* neither is listed as one that would run */
    g_assert_null(strstr(out, "\n[meter] "));
    g_assert_null(strstr(out, "\n[inverter] "));

    /* the daemon runs the rest */
    WbtDaemon *d = wbt_scratch_daemon(s);
    wbt_daemon_expect_log(d, "running 1 instance \\(some were disabled by errors", 10000);
    wbt_daemon_stop(d);
    wbt_pty_stop(pty);
}

static void test_port_refusals(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    WbtPty *pty = wbt_pty_start(s->dir, "bus");
    g_free(wbt_scratch_conf(s, "10-holder.conf",
                            "[holder]\nplugin = modbus-device\ndevice = %s\nmap = eastron-sdm230\nrole = grid\n"
                            "fast = ActivePower\nfast-interval = 200ms\ntimeout = 100ms\n", pty->b));
    g_free(wbt_scratch_conf(s, "20-kernel.conf",
                            "[kernel]\nplugin = modbus-device\ndevice = %s\nrs485 = kernel\nmap = eastron-sdm230\n"
                            "role = grid\nfast = ActivePower\nreopen-delay = 10s\n", pty->a));
    WbtDaemon *d = wbt_scratch_daemon(s);
    wbt_daemon_expect_log(d, "cannot open Modbus port .*bus-a: rs485 = kernel: the driver has no RS485 mode "
                             "\\(TIOCSRS485: .*\\); use rs485 = rts", 10000);
    wbt_daemon_expect_log(d, "Modbus port .*bus-b open", 5000);

    /* a second daemon on the held line is refused (TIOCEXCL); as root, only
     * without CAP_SYS_ADMIN, which TIOCEXCL lets through */
    g_autoptr(WbtScratch) s2 = wbt_scratch_new();
    g_free(wbt_scratch_conf(s2, "10-second.conf",
                            "[second]\nplugin = modbus-device\ndevice = %s\nmap = eastron-sdm230\nrole = grid\n"
                            "fast = ActivePower\nreopen-delay = 10s\n", pty->b));
    g_autofree char *data = g_build_filename(g_getenv("WB_TEST_SRCDIR"), "data", NULL);
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    if (getuid() == 0) {
        g_ptr_array_add(argv, "setpriv");
        g_ptr_array_add(argv, "--bounding-set=-sys_admin");
        g_ptr_array_add(argv, "--inh-caps=-sys_admin");
    }
    const char *rest[] = {g_getenv("WB_TEST_DAEMON"), "--verbose", "--config-dir", s2->confdir, "--plugin-dir",
                          g_getenv("WB_PLUGIN_DIR"), "--data-dir", data, "--state-dir", s2->statedir, NULL};
    for (int i = 0; rest[i]; i++)
        g_ptr_array_add(argv, (char *)rest[i]);
    g_ptr_array_add(argv, NULL);
    WbtDaemon *second = wbt_daemon_spawn((const char *const *)argv->pdata, NULL);
    wbt_daemon_expect_log(second, "cannot open Modbus port .*bus-b: Device or resource busy \\(another program holds "
                                  "it locked\\)", 10000);
    wbt_daemon_stop(second);
    wbt_daemon_stop(d);
    wbt_pty_stop(pty);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/modbus/device/every-map", test_every_map);
    g_test_add_func("/modbus/device/independent-master", test_independent_master);
    g_test_add_func("/modbus/device/tcp-and-rtu-over-tcp", test_tcp_and_rtu_over_tcp);
    g_test_add_func("/modbus/device/line-settings-conflict", test_line_settings_conflict);
    g_test_add_func("/modbus/device/tcp-shared", test_tcp_shared);
    g_test_add_func("/modbus/device/setpoint-pattern", test_setpoint_pattern);
    g_test_add_func("/modbus/device/port-refusals", test_port_refusals);
    return g_test_run();
}
