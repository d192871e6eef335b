/* Integration: Venus OS D-Bus on a private dbus-daemon, checked with gdbus
 * and dbus-monitor (clients we did not write), wire types included.
 *
 * - The seed installation's path: an Eastron SDM230 served on a pty,
 *   read by modbus-device, reaches D-Bus as com.victronenergy.grid with
 *   the right values, types and texts; every BusItem method of leaves,
 *   nodes and the root; ItemsChanged and PropertiesChanged; SetValue codes
 *   (1 read-only, 2 out of range, 0 accepted and flowing back as a point);
 *   /CustomName kept in the settings service; stale -> /Connected 0 and
 *   invalid values.
 * - Two grid meters get distinct DeviceInstances from the settings
 *   service (tests/tools/fake-settings.c, written for the tests).
 * - Without a settings service the DeviceInstance comes from the
 *   configuration, after settings-timeout, and the log says so. */
#include "wbt.h"

#include <math.h>

typedef struct {
    WbtScratch *s;
    WbtDbus *bus;
    GSubprocess *settings;
    GSubprocess *monitor;
    char *monitor_log;
    WbtDaemon *daemon;
} Fixture;

static void settings_start(Fixture *f)
{
    g_autofree char *tool = g_build_filename(g_getenv("WB_TEST_BUILDDIR"), "tests", "fake-settings", NULL);
    g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE);
    g_subprocess_launcher_setenv(l, "DBUS_SESSION_BUS_ADDRESS", f->bus->address, TRUE);
    const char *argv[] = {tool, NULL};
    GError *error = NULL;
    f->settings = g_subprocess_launcher_spawnv(l, argv, &error);
    g_assert_no_error(error);
    g_autoptr(GDataInputStream) in = g_data_input_stream_new(g_subprocess_get_stdout_pipe(f->settings));
    g_autofree char *line = g_data_input_stream_read_line(in, NULL, NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(line, ==, "ready");
}

static void monitor_start(Fixture *f)
{
    f->monitor_log = g_build_filename(f->s->dir, "monitor.log", NULL);
    g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDERR_SILENCE);
    g_subprocess_launcher_set_stdout_file_path(l, f->monitor_log);
    const char *argv[] = {"dbus-monitor", "--address", f->bus->address,
                          "type='signal',interface='com.victronenergy.BusItem'",
                          "type='signal',member='NameOwnerChanged'", NULL};
    GError *error = NULL;
    f->monitor = g_subprocess_launcher_spawnv(l, argv, &error);
    g_assert_no_error(error);
    wbt_sleep(300);
}

static char *monitor_text(Fixture *f)
{
    char *text = NULL;
    g_file_get_contents(f->monitor_log, &text, NULL, NULL);
    return text ? text : g_strdup("");
}

static WbtDaemon *daemon_start(Fixture *f)
{
    g_autofree char *data = g_build_filename(g_getenv("WB_TEST_SRCDIR"), "data", NULL);
    g_autofree char *env_bus = g_strdup_printf("DBUS_SESSION_BUS_ADDRESS=%s", f->bus->address);
    const char *env[] = {env_bus, NULL};
    const char *argv[] = {g_getenv("WB_TEST_DAEMON"), "--verbose", "--config-dir", f->s->confdir, "--plugin-dir",
                          g_getenv("WB_TEST_PLUGIN_DIR"), "--plugin-dir", g_getenv("WB_PLUGIN_DIR"), "--data-dir",
                          data, "--state-dir", f->s->statedir, NULL};
    return wbt_daemon_spawn(argv, env);
}

static void fixture_stop(Fixture *f)
{
    if (f->daemon)
        wbt_daemon_stop(f->daemon);
    if (f->monitor) {
        g_subprocess_force_exit(f->monitor);
        g_subprocess_wait(f->monitor, NULL, NULL);
        g_object_unref(f->monitor);
    }
    if (f->settings) {
        g_subprocess_force_exit(f->settings);
        g_subprocess_wait(f->settings, NULL, NULL);
        g_object_unref(f->settings);
    }
    wbt_dbus_stop(f->bus);
    g_free(f->monitor_log);
    wbt_scratch_free(f->s);
}

/* gdbus call on the service, failing the test when it fails */
static char *call(Fixture *f, const char *dest, const char *path, const char *method, const char *const *args)
{
    g_autofree char *error = NULL;
    char *out = wbt_gdbus_call(f->bus, dest, path, method, args, &error);
    if (!out)
        g_error("gdbus %s %s %s: %s", dest, path, method, error);
    return out;
}

/* Waits until @path's GetValue prints as @expected (GVariant text). */
static void expect_value(Fixture *f, const char *dest, const char *path, const char *expected, guint timeout_ms)
{
    gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    g_autofree char *last = NULL;
    do {
        g_free(last);
        last = wbt_gdbus_call(f->bus, dest, path, "com.victronenergy.BusItem.GetValue", NULL, NULL);
        if (last && strcmp(last, expected) == 0)
            return;
        wbt_sleep(50);
    } while (g_get_monotonic_time() < end);
    g_error("%s %s: GetValue is %s, expected %s", dest, path, last ? last : "(no answer)", expected);
}

/* A double in gdbus's "(<230.89999389648438>,)" */
static double double_of(const char *out)
{
    const char *p = strchr(out, '<');
    g_assert_nonnull(p);
    return g_ascii_strtod(p + 1, NULL);
}

static const char sdm_source[] =
    "[src]\nplugin = good\nname = x\ninterval = 100ms\npoint.power = 1234.5\npoint.l1/voltage = 230.9\n"
    "point.l1/current = 5.35\npoint.frequency = 50.01\npoint.energy-import = 100.5\npoint.energy-export = 20.25\n";

#define GRID "com.victronenergy.grid.house"
#define GETVALUE "com.victronenergy.BusItem.GetValue"
#define GETTEXT "com.victronenergy.BusItem.GetText"
#define SETVALUE "com.victronenergy.BusItem.SetValue"

static void test_sdm230_grid(void)
{
    Fixture fx = {.s = wbt_scratch_new(), .bus = wbt_dbus_start()}, *f = &fx;
    settings_start(f);
    monitor_start(f);
    WbtPty *pty = wbt_pty_start(f->s->dir, "rs485");
    g_free(wbt_scratch_conf(f->s, "10-src.conf", "%s", sdm_source));
    g_free(wbt_scratch_conf(f->s, "20-sdm.conf",
                            "[sdm]\nplugin = meter-emulator\nmap = eastron-sdm230\ndevice = %s\nmax-age = 5s\n"
                            "point.power = src/power\npoint.voltage-l1 = src/l1/voltage\npoint.current-l1 = src/l1/current\n"
                            "point.frequency = src/frequency\npoint.energy-import = src/energy-import\n"
                            "point.energy-export = src/energy-export\n", pty->a));
    g_free(wbt_scratch_conf(f->s, "30-grid-meter.conf",
                            "[grid-meter]\nplugin = modbus-device\nmap = eastron-sdm230\ndevice = %s\nrole = grid\n"
                            "fast = ActivePower; Voltage; Current; Frequency\nfast-interval = 200ms\n"
                            "slow = ImportActiveEnergy; ExportActiveEnergy\nslow-interval = 500ms\ntimeout = 200ms\n"
                            "reopen-delay = 200ms\n", pty->b));
    g_free(wbt_scratch_conf(f->s, "40-venus.conf",
                            "[venus-grid]\nplugin = victron-dbus\ntype = grid\nname = house\nsource = grid-meter\n"
                            "path./Ac/L1/Power = grid-meter/power\nmax-age = 1s\nsettings-timeout = 5s\n"
                            "setting./Settings/MaxFeedIn = 3000; 0; 10000\n"));
    g_free(wbt_scratch_conf(f->s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = venus-grid/#\n"));
    f->daemon = daemon_start(f);
    wbt_daemon_expect_log(f->daemon, "on D-Bus as " GRID ", DeviceInstance 40", 10000);

    /* values, with their wire types: doubles for measurements */
    expect_value(f, GRID, "/Ac/Power", "(<1234.5>,)", 10000);
    expect_value(f, GRID, "/Ac/L1/Power", "(<1234.5>,)", 5000);
    g_autofree char *u = call(f, GRID, "/Ac/L1/Voltage", GETVALUE, NULL);
    g_assert_cmpfloat(fabs(double_of(u) - 230.9), <, 1e-4); /* the SDM230's float */
    g_autofree char *i = call(f, GRID, "/Ac/L1/Current", GETVALUE, NULL);
    g_assert_cmpfloat(fabs(double_of(i) - 5.35), <, 1e-5);
    expect_value(f, GRID, "/Ac/Energy/Forward", "(<100.5>,)", 5000);
    expect_value(f, GRID, "/Ac/Energy/Reverse", "(<20.25>,)", 5000);
    /* ints for the identity paths */
    expect_value(f, GRID, "/DeviceInstance", "(<40>,)", 1000);
    expect_value(f, GRID, "/Connected", "(<1>,)", 1000);
    expect_value(f, GRID, "/ProductId", "(<65535>,)", 1000);
    expect_value(f, GRID, "/Mgmt/ProcessName", "(<'wattbridge'>,)", 1000);
    expect_value(f, GRID, "/Mgmt/Connection", "(<'wattbridge grid-meter'>,)", 1000);
    /* invalid: an empty int32 array, text --- */
    expect_value(f, GRID, "/HardwareVersion", "(<@ai []>,)", 1000);
    g_autofree char *dash = call(f, GRID, "/HardwareVersion", GETTEXT, NULL);
    g_assert_cmpstr(dash, ==, "('---',)");
    g_autofree char *text = call(f, GRID, "/Ac/Energy/Forward", GETTEXT, NULL);
    g_assert_cmpstr(text, ==, "('100.50 kWh',)");
    g_autofree char *pid = call(f, GRID, "/ProductId", GETTEXT, NULL);
    g_assert_cmpstr(pid, ==, "('0xFFFF',)");

    /* nodes: the subtree, keys relative to the node */
    g_autofree char *node = call(f, GRID, "/Ac/Energy", GETVALUE, NULL);
    g_assert_cmpstr(node, ==, "(<{'Forward': <100.5>, 'Reverse': <20.25>}>,)");
    g_autofree char *node_text = call(f, GRID, "/Ac/Energy", GETTEXT, NULL);
    g_assert_cmpstr(node_text, ==, "(<{'Forward': '100.50 kWh', 'Reverse': '20.25 kWh'}>,)");
    g_autofree char *root = call(f, GRID, "/", GETVALUE, NULL);
    g_assert_nonnull(strstr(root, "'Ac/Energy/Forward': <100.5>"));
    g_assert_nonnull(strstr(root, "'DeviceInstance': <40>"));
    /* the root: every path, full, with Value and Text */
    g_autofree char *items = call(f, GRID, "/", "com.victronenergy.BusItem.GetItems", NULL);
    g_assert_nonnull(strstr(items, "'/Ac/Energy/Forward': {'Value': <100.5>, 'Text': <'100.50 kWh'>}"));
    g_assert_nonnull(strstr(items, "'/DeviceInstance': {'Value': <40>, 'Text': <'40'>}"));
    g_assert_nonnull(strstr(items, "'/HardwareVersion': {'Value': <@ai []>, 'Text': <'---'>}"));
    for (const char *const *p = (const char *const[]){"/Mgmt/ProcessName", "/Mgmt/ProcessVersion", "/Mgmt/Connection",
                                                     "/ProductId", "/ProductName", "/FirmwareVersion", "/Connected",
                                                     "/CustomName", NULL};
         *p; p++) {
        g_autofree char *key = g_strdup_printf("'%s': {'Value'", *p);
        g_assert_nonnull(strstr(items, key));
    }

    /* SetValue: 1 read-only, 2 out of range, 0 accepted */
    g_autofree char *ro = call(f, GRID, "/Ac/Power", SETVALUE, (const char *const[]){"<100.0>", NULL});
    g_assert_cmpstr(ro, ==, "(1,)");
    g_autofree char *range = call(f, GRID, "/Settings/MaxFeedIn", SETVALUE, (const char *const[]){"<20000>", NULL});
    g_assert_cmpstr(range, ==, "(2,)");
    g_autofree char *type = call(f, GRID, "/Settings/MaxFeedIn", SETVALUE, (const char *const[]){"<'a lot'>", NULL});
    g_assert_cmpstr(type, ==, "(1,)");
    g_autofree char *ok = call(f, GRID, "/Settings/MaxFeedIn", SETVALUE, (const char *const[]){"<5000>", NULL});
    g_assert_cmpstr(ok, ==, "(0,)");
    expect_value(f, GRID, "/Settings/MaxFeedIn", "(<5000>,)", 1000);
    wbt_daemon_expect_point(f->daemon, "venus-grid/Settings/MaxFeedIn", 5000, 0, 5000);
    /* kept in the settings service */
    expect_value(f, "com.victronenergy.settings", "/Settings/Devices/wattbridge_house/Settings_MaxFeedIn", "(<5000>,)",
                 2000);
    g_autofree char *named = call(f, GRID, "/CustomName", SETVALUE, (const char *const[]){"<'Garage meter'>", NULL});
    g_assert_cmpstr(named, ==, "(0,)");
    expect_value(f, "com.victronenergy.settings", "/Settings/Devices/wattbridge_house/CustomName",
                 "(<'Garage meter'>,)", 2000);
    /* and a change made in the settings (the GUI) comes back */
    g_free(call(f, "com.victronenergy.settings", "/Settings/Devices/wattbridge_house/CustomName", SETVALUE,
                (const char *const[]){"<'Shed'>", NULL}));
    expect_value(f, GRID, "/CustomName", "(<'Shed'>,)", 2000);

    /* the meter goes away: after max-age, /Connected 0 and no stale number */
    wbt_pty_stop(pty);
    expect_value(f, GRID, "/Connected", "(<0>,)", 5000);
    expect_value(f, GRID, "/Ac/Power", "(<@ai []>,)", 1000);
    g_autofree char *gone = call(f, GRID, "/Ac/Power", GETTEXT, NULL);
    g_assert_cmpstr(gone, ==, "('---',)");

    /* the signals, as dbus-monitor saw them: the name only after its paths,
     * a PropertiesChanged on each changed path with {Value, Text}, and one
     * ItemsChanged on / per update, the full paths in it */
    wbt_sleep(200);
    g_autofree char *mon = monitor_text(f);
    g_assert_nonnull(strstr(mon, "string \"com.victronenergy.grid.house\""));
    g_assert_nonnull(strstr(mon, "path=/Settings/MaxFeedIn; interface=com.victronenergy.BusItem; "
                                 "member=PropertiesChanged\n   array [\n      dict entry(\n         string \"Value\"\n"
                                 "         variant             int32 5000\n"));
    g_assert_nonnull(strstr(mon, "variant             string \"Garage meter\""));
    /* going stale: /Ac/Power's last change made it invalid (an empty int32
     * array, text ---); earlier ones carried numbers */
    const char *stale = g_strrstr(mon, "path=/Ac/Power; interface=com.victronenergy.BusItem; member=PropertiesChanged");
    g_assert_nonnull(stale);
    g_assert_true(g_str_has_prefix(strstr(stale, "variant"), "variant             array [\n"));
    g_assert_nonnull(strstr(stale, "string \"---\""));
    const char *batch = strstr(stale, "path=/; interface=com.victronenergy.BusItem; member=ItemsChanged");
    g_assert_nonnull(batch);
    g_assert_nonnull(strstr(batch, "string \"/Ac/Power\""));
    g_assert_nonnull(strstr(batch, "string \"/Connected\""));
    fixture_stop(f);
}

static void test_two_meters(void)
{
    Fixture fx = {.s = wbt_scratch_new(), .bus = wbt_dbus_start()}, *f = &fx;
    settings_start(f);
    g_free(wbt_scratch_conf(f->s, "10-src.conf", "[src]\nplugin = good\nname = x\ninterval = 100ms\npoint.power = 5\n"));
    g_free(wbt_scratch_conf(f->s, "20-a.conf", "[a]\nplugin = victron-dbus\ntype = grid\nsource = src\n"));
    g_free(wbt_scratch_conf(f->s, "30-b.conf", "[b]\nplugin = victron-dbus\ntype = grid\nsource = src\n"));
    g_free(wbt_scratch_conf(f->s, "40-pv.conf", "[pv]\nplugin = victron-dbus\ntype = pvinverter\nsource = src\n"
                                                "position = 1\n"));
    f->daemon = daemon_start(f);
    wbt_daemon_expect_log(f->daemon, "on D-Bus as com.victronenergy.grid.a, DeviceInstance", 10000);
    wbt_daemon_expect_log(f->daemon, "on D-Bus as com.victronenergy.grid.b, DeviceInstance", 10000);
    /* the same class: 40 and 41, whichever asked first; another class: 40 */
    g_autofree char *a = call(f, "com.victronenergy.grid.a", "/DeviceInstance", GETVALUE, NULL);
    g_autofree char *b = call(f, "com.victronenergy.grid.b", "/DeviceInstance", GETVALUE, NULL);
    g_assert_true((strcmp(a, "(<40>,)") == 0 && strcmp(b, "(<41>,)") == 0) ||
                  (strcmp(a, "(<41>,)") == 0 && strcmp(b, "(<40>,)") == 0));
    g_autofree char *b_setting = g_strdup_printf("(<'grid:%c%c'>,)", b[2], b[3]);
    expect_value(f, "com.victronenergy.settings", "/Settings/Devices/wattbridge_b/ClassAndVrmInstance", b_setting,
                 1000);
    wbt_daemon_expect_log(f->daemon, "on D-Bus as com.victronenergy.pvinverter.pv, DeviceInstance 40", 10000);
    expect_value(f, "com.victronenergy.pvinverter.pv", "/Position", "(<1>,)", 1000);
    /* /Position is writable 0..2 */
    g_autofree char *bad = call(f, "com.victronenergy.pvinverter.pv", "/Position", SETVALUE,
                                (const char *const[]){"<3>", NULL});
    g_assert_cmpstr(bad, ==, "(2,)");
    fixture_stop(f);
}

static void test_without_settings(void)
{
    Fixture fx = {.s = wbt_scratch_new(), .bus = wbt_dbus_start()}, *f = &fx;
    g_free(wbt_scratch_conf(f->s, "10-src.conf", "[src]\nplugin = good\nname = x\ninterval = 100ms\npoint.power = 5\n"));
    g_free(wbt_scratch_conf(f->s, "20-a.conf", "[a]\nplugin = victron-dbus\ntype = battery\nsource = src\n"
                                               "device-instance = 33\nsettings-timeout = 300ms\n"));
    f->daemon = daemon_start(f);
    wbt_daemon_expect_log(f->daemon, "com.victronenergy.settings did not appear within 0.3 s; registering with "
                                     "DeviceInstance 33 from the configuration", 10000);
    expect_value(f, "com.victronenergy.battery.a", "/DeviceInstance", "(<33>,)", 5000);
    expect_value(f, "com.victronenergy.battery.a", "/Dc/0/Power", "(<5.0>,)", 5000);
    fixture_stop(f);
}

/* ---- victron-dbus-reader ------------------------------------------------------------------- */

/* A Venus service written with dbus-python (tests/tools/venus-service.py),
 * driven through its stdin. */
typedef struct {
    GSubprocess *proc;
    GDataInputStream *out;
} Venus;

static void venus_expect(Venus *v, const char *expected)
{
    GError *error = NULL;
    g_autofree char *line = g_data_input_stream_read_line(v->out, NULL, NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(line, ==, expected);
}

static Venus *venus_start(Fixture *f, gboolean legacy, const char *name, const char *values)
{
    g_autofree char *tool = g_build_filename(g_getenv("WB_TEST_SRCDIR"), "tests", "tools", "venus-service.py", NULL);
    g_autoptr(GSubprocessLauncher) l =
        g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE);
    g_subprocess_launcher_setenv(l, "DBUS_SESSION_BUS_ADDRESS", f->bus->address, TRUE);
    g_auto(GStrv) words = g_strsplit(values, " ", -1);
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, "/usr/bin/python3");
    g_ptr_array_add(argv, tool);
    if (legacy)
        g_ptr_array_add(argv, "--legacy");
    g_ptr_array_add(argv, (char *)name);
    for (char **w = words; *w; w++)
        g_ptr_array_add(argv, *w);
    g_ptr_array_add(argv, NULL);
    GError *error = NULL;
    Venus *v = g_new0(Venus, 1);
    v->proc = g_subprocess_launcher_spawnv(l, (const char *const *)argv->pdata, &error);
    g_assert_no_error(error);
    v->out = g_data_input_stream_new(g_subprocess_get_stdout_pipe(v->proc));
    venus_expect(v, "ready");
    return v;
}

static void venus_command(Venus *v, const char *command)
{
    g_autofree char *line = g_strdup_printf("%s\n", command);
    GError *error = NULL;
    g_output_stream_write_all(g_subprocess_get_stdin_pipe(v->proc), line, strlen(line), NULL, NULL, &error);
    g_assert_no_error(error);
    venus_expect(v, "ok");
}

/* "quit": the service releases its name and exits */
static void venus_stop(Venus *v)
{
    GError *error = NULL;
    g_output_stream_write_all(g_subprocess_get_stdin_pipe(v->proc), "quit\n", 5, NULL, NULL, &error);
    g_assert_no_error(error);
    g_subprocess_wait_check(v->proc, NULL, &error);
    g_assert_no_error(error);
    g_object_unref(v->out);
    g_object_unref(v->proc);
    g_free(v);
}

/* The match rules each connection holds, from the bus itself
 * (org.freedesktop.DBus.Debug.Stats): those of the connection that
 * follows NameOwnerChanged on com.victronenergy, i.e. the reader's. */
static guint reader_match_rules(Fixture *f, char **rules_text)
{
    g_autofree char *out = call(f, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                "org.freedesktop.DBus.Debug.Stats.GetAllMatchRules", NULL);
    GError *error = NULL;
    g_autoptr(GVariant) all = g_variant_parse(G_VARIANT_TYPE("(a{sas})"), out, NULL, NULL, &error);
    g_assert_no_error(error);
    g_autoptr(GVariant) dict = g_variant_get_child_value(all, 0);
    GVariantIter it;
    const char *conn;
    GVariant *rules;
    g_variant_iter_init(&it, dict);
    while (g_variant_iter_loop(&it, "{&s@as}", &conn, &rules)) {
        g_autofree char *text = g_variant_print(rules, FALSE);
        if (strstr(text, "NameOwnerChanged") && strstr(text, "arg0namespace='com.victronenergy'")) {
            *rules_text = g_steal_pointer(&text);
            guint n = (guint)g_variant_n_children(rules);
            g_variant_unref(rules);
            return n;
        }
    }
    g_error("no connection follows NameOwnerChanged for com.victronenergy: %s", out);
}

static void test_reader(void)
{
    Fixture fx = {.s = wbt_scratch_new(), .bus = wbt_dbus_start()}, *f = &fx;
    /* systemcalc's summary, a BMS on USB and one on CAN: the CAN one from
     * before GetItems (velib < Oct 2021), with the lower DeviceInstance */
    Venus *system = venus_start(f, FALSE, "com.victronenergy.system",
                                "/DeviceInstance=0 /Dc/Battery/Soc=55.5 /Dc/Battery/Power=-120.0 "
                                "/Ac/Grid/L1/Power=300");
    Venus *bms_usb = venus_start(f, FALSE, "com.victronenergy.battery.ttyUSB0",
                                 "/DeviceInstance=512 /Info/MaxChargeCurrent=50.0 /Info/MaxDischargeCurrent=100.0");
    Venus *bms_can = venus_start(f, TRUE, "com.victronenergy.battery.socketcan_can0",
                                 "/DeviceInstance=288 /Info/MaxChargeCurrent=70.0 /Info/MaxDischargeCurrent=150.0");
    g_free(wbt_scratch_conf(f->s, "10-venus.conf",
                            "[venus]\nplugin = victron-dbus-reader\n"
                            "point.soc = com.victronenergy.system /Dc/Battery/Soc\n"
                            "point.battery/power = com.victronenergy.system /Dc/Battery/Power\n"
                            "point.grid/l1/power = com.victronenergy.system /Ac/Grid/L1/Power\n"
                            "point.charge-current-limit = com.victronenergy.battery /Info/MaxChargeCurrent\n"
                            "point.discharge-current-limit = com.victronenergy.battery* /Info/MaxDischargeCurrent\n"
                            "point.missing = com.victronenergy.system /No/Such/Path\n"
                            "point.vebus/soc = com.victronenergy.vebus /Soc\n"
                            "refresh-interval = 300ms\ncall-timeout = 500ms\n"));
    g_free(wbt_scratch_conf(f->s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = venus/#\nmax-age = 1s\n"));
    f->daemon = daemon_start(f);

    /* the snapshot: values, units from the point names, wire int32 as numbers */
    wbt_daemon_expect_log(f->daemon, "point venus/soc = 55\\.5 % \\(valid\\)", 10000);
    wbt_daemon_expect_log(f->daemon, "point venus/battery/power = -120 W \\(valid\\)", 5000);
    wbt_daemon_expect_log(f->daemon, "point venus/grid/l1/power = 300 W \\(valid\\)", 5000);
    /* a class: the lowest DeviceInstance, here the old-style service */
    wbt_daemon_expect_log(f->daemon, "point venus/charge-current-limit = 70 A \\(valid\\)", 5000);
    wbt_daemon_expect_point(f->daemon, "venus/discharge-current-limit", 150, 0, 5000);
    wbt_daemon_expect_log(f->daemon, "following com.victronenergy.battery.socketcan_can0 .*DeviceInstance 288\\), "
                                     "a service without GetItems", 1000);
    /* and no flapping at the start: never the other battery's value first */
    g_assert_cmpuint(wbt_daemon_count_point(f->daemon, "venus/charge-current-limit"), ==, 1);
    wbt_daemon_expect_point_state(f->daemon, "venus/missing", "invalid", 5000);
    wbt_daemon_expect_point_state(f->daemon, "venus/vebus/soc", "invalid", 5000);
    wbt_daemon_expect_log(f->daemon, "vebus/soc: waiting for com.victronenergy.vebus", 1000);

    /* ItemsChanged (a batch on /) and PropertiesChanged (per path) */
    venus_command(system, "set /Dc/Battery/Soc=56.25 /Dc/Battery/Power=250.0");
    wbt_daemon_expect_point(f->daemon, "venus/soc", 56.25, 0, 2000);
    wbt_daemon_expect_point(f->daemon, "venus/battery/power", 250, 0, 2000);
    venus_command(bms_can, "set /Info/MaxChargeCurrent=65.0");
    wbt_daemon_expect_point(f->daemon, "venus/charge-current-limit", 65, 0, 2000);
    /* Venus's invalid (an empty array) is an invalid point */
    venus_command(system, "set /Dc/Battery/Power=null");
    wbt_daemon_expect_point_state(f->daemon, "venus/battery/power", "invalid", 2000);

    /* one match rule per service plus NameOwnerChanged, however many paths */
    g_autofree char *rules = NULL;
    g_assert_cmpuint(reader_match_rules(f, &rules), ==, 4);
    g_assert_nonnull(strstr(rules, "interface='com.victronenergy.BusItem'"));

    /* a service goes: the next of its class takes over; it comes back
     * under a new owner and is followed again */
    venus_stop(bms_can);
    wbt_daemon_expect_point(f->daemon, "venus/charge-current-limit", 50, 0, 3000);
    wbt_daemon_expect_point(f->daemon, "venus/discharge-current-limit", 100, 0, 3000);
    bms_can = venus_start(f, TRUE, "com.victronenergy.battery.socketcan_can0",
                          "/DeviceInstance=288 /Info/MaxChargeCurrent=80.0 /Info/MaxDischargeCurrent=150.0");
    wbt_daemon_expect_point(f->daemon, "venus/charge-current-limit", 80, 0, 3000);
    venus_command(bms_can, "set /Info/MaxChargeCurrent=75.0");
    wbt_daemon_expect_point(f->daemon, "venus/charge-current-limit", 75, 0, 2000);
    /* the only one goes: invalid, then back */
    venus_stop(system);
    wbt_daemon_expect_point_state(f->daemon, "venus/soc", "invalid", 3000);
    wbt_daemon_expect_log(f->daemon, "com.victronenergy.system left the bus", 1000);
    system = venus_start(f, FALSE, "com.victronenergy.system", "/DeviceInstance=0 /Dc/Battery/Soc=60.0");
    wbt_daemon_expect_point(f->daemon, "venus/soc", 60, 0, 3000);
    wbt_daemon_expect_point_state(f->daemon, "venus/soc", "valid", 1000);

    /* unchanged values stay fresh (refresh-interval); a driver that hangs
     * lets them go stale at the subscriber (max-age 1 s) instead */
    wbt_sleep(1500);
    wbt_daemon_expect_point_state(f->daemon, "venus/charge-current-limit", "valid", 100);
    venus_command(bms_can, "hang 3");
    wbt_daemon_expect_point_state(f->daemon, "venus/charge-current-limit", "stale", 3000);
    wbt_daemon_expect_point_state(f->daemon, "venus/charge-current-limit", "valid", 5000);

    venus_stop(system);
    venus_stop(bms_usb);
    venus_stop(bms_can);
    fixture_stop(f);
}

/* dbus-address: a bus on TCP with ANONYMOUS authentication (how Venus OS
 * offers its system bus to another machine).  dbus = system beside it
 * shows that the address wins. */
static void test_tcp_address(void)
{
    Fixture fx = {.s = wbt_scratch_new(), .bus = wbt_dbus_start_tcp()}, *f = &fx;
    g_assert_true(g_str_has_prefix(f->bus->address, "tcp:host=127.0.0.1,"));
    Venus *system = venus_start(f, FALSE, "com.victronenergy.system", "/DeviceInstance=0 /Dc/Battery/Soc=42.0");
    g_free(wbt_scratch_conf(f->s, "10-src.conf", "[src]\nplugin = good\nname = x\ninterval = 100ms\npoint.power = 5\n"));
    g_free(wbt_scratch_conf(f->s, "20-a.conf", "[a]\nplugin = victron-dbus\ntype = grid\nsource = src\ndbus = system\n"
                                               "dbus-address = %s\nsettings-timeout = 100ms\n", f->bus->address));
    g_free(wbt_scratch_conf(f->s, "30-r.conf", "[venus]\nplugin = victron-dbus-reader\ndbus = system\n"
                                               "dbus-address = %s\n"
                                               "point.soc = com.victronenergy.system /Dc/Battery/Soc\n",
                            f->bus->address));
    g_free(wbt_scratch_conf(f->s, "90-rec.conf", "[rec]\nplugin = recorder\npattern = venus/#\n"));
    f->daemon = daemon_start(f);
    expect_value(f, "com.victronenergy.grid.a", "/Ac/Power", "(<5.0>,)", 10000);
    wbt_daemon_expect_point(f->daemon, "venus/soc", 42, 0, 5000);
    wbt_daemon_expect_log(f->daemon, "\\[a\\] on D-Bus as com.victronenergy.grid.a", 1000);
    venus_stop(system);
    fixture_stop(f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/victron/sdm230-grid", test_sdm230_grid);
    g_test_add_func("/victron/two-meters", test_two_meters);
    g_test_add_func("/victron/without-settings", test_without_settings);
    g_test_add_func("/victron/reader", test_reader);
    g_test_add_func("/victron/tcp-address", test_tcp_address);
    return g_test_run();
}
