/* Unit tests: conf.d loading and option validation, every error path. */
#include "wb-private.h"
#include "wbt.h"

#include <glib/gstdio.h>
#include <unistd.h>

static const char *plugin_dir;
static WbPlugin *good;

typedef struct {
    char *root;
} Tmp;

static void tmp_setup(Tmp *t, gconstpointer data)
{
    t->root = wbt_tmpdir_new();
}

static void tmp_teardown(Tmp *t, gconstpointer data)
{
    wbt_tmpdir_free(t->root);
}

/* Writes @text to <root>/<dir>/<file> and returns the file's path. */
static char *write_conf(Tmp *t, const char *dir, const char *file, const char *text)
{
    g_autofree char *name = g_build_filename(dir, file, NULL);
    return wbt_write(t->root, name, text);
}

static char *dir_path(Tmp *t, const char *dir)
{
    return g_build_filename(t->root, dir, NULL);
}

static WbConfd *load(Tmp *t, const char *d1, const char *d2)
{
    g_autofree char *a = dir_path(t, d1);
    g_autofree char *b = d2 ? dir_path(t, d2) : NULL;
    const char *dirs[] = {a, b, NULL};
    return wb_confd_load(dirs);
}

static char *all_errors(WbConfd *c)
{
    g_ptr_array_add(c->errors, NULL);
    char *s = g_strjoinv("\n", (char **)c->errors->pdata);
    g_ptr_array_remove_index(c->errors, c->errors->len - 1);
    return s;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!haystack || !strstr(haystack, needle))
        g_error("expected \"%s\" in:\n%s", needle, haystack ? haystack : "(null)");
}

static void test_precedence(Tmp *t, gconstpointer data)
{
    g_autofree char *v = write_conf(t, "vendor", "10-x.conf", "[x]\nplugin = good\nname = vendor\n");
    g_autofree char *a = write_conf(t, "admin", "10-x.conf", "[x]\nplugin = good\nname = admin\n");
    g_autoptr(WbConfd) c = load(t, "vendor", "admin");
    g_assert_cmpuint(c->errors->len, ==, 0);
    g_assert_cmpuint(c->sections->len, ==, 1);
    WbConfdSection *s = g_ptr_array_index(c->sections, 0);
    /* the administrator's file replaces the vendor's of the same name */
    g_assert_cmpstr(s->file, ==, a);
    g_autofree char *name = g_key_file_get_string(s->keyfile, "x", "name", NULL);
    g_assert_cmpstr(name, ==, "admin");
}

static void test_masking(Tmp *t, gconstpointer data)
{
    g_autofree char *v = write_conf(t, "vendor", "10-x.conf", "[x]\nplugin = good\nname = vendor\n");
    g_autofree char *admin = dir_path(t, "admin");
    g_mkdir_with_parents(admin, 0755);
    g_autofree char *link = g_build_filename(admin, "10-x.conf", NULL);
    g_assert_cmpint(symlink("/dev/null", link), ==, 0);
    g_autoptr(WbConfd) c = load(t, "vendor", "admin");
    g_assert_cmpuint(c->errors->len, ==, 0);
    g_assert_cmpuint(c->sections->len, ==, 0);
    g_assert_cmpuint(c->masked->len, ==, 1);
    g_assert_cmpstr(g_ptr_array_index(c->masked, 0), ==, link);
}

static void test_order(Tmp *t, gconstpointer data)
{
    g_autofree char *b = write_conf(t, "vendor", "20-b.conf", "[b]\nplugin = good\n");
    g_autofree char *a = write_conf(t, "admin", "10-a.conf", "[a]\nplugin = good\n");
    g_autofree char *c3 = write_conf(t, "vendor", "30-c.conf", "[c]\nplugin = good\n");
    g_autofree char *ignored = write_conf(t, "vendor", "README", "[nope]\n");
    g_autoptr(WbConfd) c = load(t, "vendor", "admin");
    g_assert_cmpuint(c->sections->len, ==, 3);
    /* file-name order across directories */
    g_assert_cmpstr(((WbConfdSection *)g_ptr_array_index(c->sections, 0))->name, ==, "a");
    g_assert_cmpstr(((WbConfdSection *)g_ptr_array_index(c->sections, 1))->name, ==, "b");
    g_assert_cmpstr(((WbConfdSection *)g_ptr_array_index(c->sections, 2))->name, ==, "c");
    WbConfdSection *sa = g_ptr_array_index(c->sections, 0);
    g_assert_cmpint(sa->line, ==, 1);
}

static void test_duplicate_section_in_file(Tmp *t, gconstpointer data)
{
    g_autofree char *f = write_conf(t, "d", "10-x.conf", "# comment\n[x]\nplugin = good\n\n[x]\nname = y\n");
    g_autoptr(WbConfd) c = load(t, "d", NULL);
    g_autofree char *e = all_errors(c);
    g_autofree char *expect = g_strdup_printf("%s:5: section [x] repeated; it is already defined at %s:2", f, f);
    assert_contains(e, expect);
    WbConfdSection *s = wb_confd_find(c, "x");
    g_assert_nonnull(s);
    g_assert_true(s->broken);
}

static void test_duplicate_section_across_files(Tmp *t, gconstpointer data)
{
    g_autofree char *f1 = write_conf(t, "d", "10-x.conf", "[x]\nplugin = good\nname = a\n");
    g_autofree char *f2 = write_conf(t, "d", "20-y.conf", "[y]\nplugin = good\nname = y\n\n[x]\nname = b\n");
    g_autoptr(WbConfd) c = load(t, "d", NULL);
    g_autofree char *e = all_errors(c);
    g_autofree char *expect = g_strdup_printf("%s:5: section [x] is also defined at %s:1", f2, f1);
    assert_contains(e, expect);
    /* never merged: the first one is disabled, the second dropped, y runs */
    WbConfdSection *x = wb_confd_find(c, "x");
    g_assert_true(x->broken);
    g_assert_cmpstr(x->file, ==, f1);
    g_assert_false(wb_confd_find(c, "y")->broken);
}

static void test_repeated_key(Tmp *t, gconstpointer data)
{
    g_autofree char *f = write_conf(t, "d", "10-x.conf", "[x]\nplugin = good\nname = a\nname = b\n");
    g_autoptr(WbConfd) c = load(t, "d", NULL);
    g_autofree char *e = all_errors(c);
    g_autofree char *expect = g_strdup_printf("%s:4: [x] key 'name' repeated; it is already set at line 3", f);
    assert_contains(e, expect);
    g_assert_true(wb_confd_find(c, "x")->broken);
}

static void test_syntax(Tmp *t, gconstpointer data)
{
    g_autofree char *f = write_conf(t, "d", "10-x.conf", "[x]\nplugin = good\nthis line is nonsense\n");
    g_autofree char *f2 = write_conf(t, "d", "20-y.conf", "orphan = 1\n[y]\nplugin = good\n");
    g_autofree char *f3 = write_conf(t, "d", "30-z.conf", "[bad name!]\nplugin = good\n");
    g_autoptr(WbConfd) c = load(t, "d", NULL);
    g_autofree char *e = all_errors(c);
    g_autofree char *e1 = g_strdup_printf("%s:3: expected \"key = value\"", f);
    g_autofree char *e2 = g_strdup_printf("%s:1: key 'orphan' comes before any [section]", f2);
    g_autofree char *e3 = g_strdup_printf("%s:1: [bad name!]: an instance name may use only", f3);
    assert_contains(e, e1);
    assert_contains(e, e2);
    assert_contains(e, e3);
    g_assert_true(wb_confd_find(c, "x")->broken);
    g_assert_true(wb_confd_find(c, "bad name!")->broken);
}

/* Validates one section of good's options; returns the error text or NULL. */
static char *validate(Tmp *t, const char *body, WbConfig **out, char **file)
{
    g_autofree char *text = g_strconcat("[inst]\nplugin = good\n", body, NULL);
    *file = write_conf(t, "v", "10-inst.conf", text);
    g_autoptr(WbConfd) c = load(t, "v", NULL);
    g_assert_cmpuint(c->errors->len, ==, 0);
    g_autoptr(GError) error = NULL;
    WbConfig *config = wb_config_new(wb_confd_find(c, "inst"), good->options, &error);
    if (out)
        *out = config;
    else
        wb_config_free(config);
    return error ? g_strdup(error->message) : NULL;
}

typedef struct {
    const char *body;
    int line;
    const char *key;
    const char *message;
} Bad;

static const Bad bad_values[] = {
    {"name = a\nbogus = 1\n", 4, "bogus",
     "unknown key; valid keys are: plugin, enabled, name, count, ratio, flag, interval, mode, items, watch, "
     "password, point.<name>"},
    {"name = a\ncount = many\n", 4, "count", "expected an integer from 1 to 10, got \"many\""},
    {"name = a\ncount = 11\n", 4, "count", "expected an integer from 1 to 10, got \"11\""},
    {"name = a\ncount = 0x0B\n", 4, "count", "expected an integer from 1 to 10, got \"0x0B\""},
    {"name = a\nratio = 1.5\n", 4, "ratio", "expected a number from 0 to 1, got \"1.5\""},
    {"name = a\nratio = nan\n", 4, "ratio", "expected a number from 0 to 1, got \"nan\""},
    {"name = a\nflag = maybe\n", 4, "flag", "expected true or false, got \"maybe\""},
    {"name = a\ninterval = 5 parsecs\n", 4, "interval", "expected a duration from 0.01 s to 3600 s"},
    {"name = a\ninterval = 5ms\n", 4, "interval", "expected a duration from 0.01 s to 3600 s"},
    {"name = a\nmode = medium\n", 4, "mode", "expected one of: fast, slow, got \"medium\""},
    {"name = a\nwatch = pv/#/x\n", 4, "watch", "expected a point name"},
    {"name = a\npoint.power = lots\n", 4, "point.power", "expected a number, got \"lots\""},
    {"name = a\nenabled = perhaps\n", 4, "enabled", "expected true or false, got \"perhaps\""},
    {"count = 2\n", 1, NULL, "missing required key 'name' (Any text.)"},
};

static void test_bad_values(Tmp *t, gconstpointer data)
{
    for (gsize i = 0; i < G_N_ELEMENTS(bad_values); i++) {
        const Bad *b = &bad_values[i];
        g_autofree char *file = NULL;
        g_autofree char *e = validate(t, b->body, NULL, &file);
        g_autofree char *prefix = b->key ? g_strdup_printf("%s:%d: [inst] %s: ", file, b->line, b->key)
                                         : g_strdup_printf("%s:%d: [inst] ", file, b->line);
        g_test_message("%s", e ? e : "(accepted)");
        assert_contains(e, prefix);
        assert_contains(e, b->message);
    }
}

static void test_all_errors_reported(Tmp *t, gconstpointer data)
{
    g_autofree char *file = NULL;
    g_autofree char *e = validate(t, "count = 99\nmode = x\n", NULL, &file);
    /* one line per problem, all of them */
    g_auto(GStrv) lines = g_strsplit(e, "\n", -1);
    g_assert_cmpuint(g_strv_length(lines), ==, 3);
}

static void test_good_values(Tmp *t, gconstpointer data)
{
    WbConfig *config = NULL;
    g_autofree char *file = NULL;
    g_autofree char *e = validate(t,
                                  "name = text with spaces\ncount = 0x0A\nratio = 0.25\nflag = yes\n"
                                  "interval = 250ms\nmode = slow\nitems = a; b ;;c\nwatch = pv/+/power\n"
                                  "point.l1/power = -5.5\npoint.power = 2\n",
                                  &config, &file);
    g_assert_null(e);
    g_assert_cmpstr(wb_config_get_string(config, "name"), ==, "text with spaces");
    g_assert_cmpint(wb_config_get_int(config, "count"), ==, 10);
    g_assert_cmpfloat(wb_config_get_double(config, "ratio"), ==, 0.25);
    g_assert_true(wb_config_get_bool(config, "flag"));
    g_assert_cmpint(wb_config_get_duration(config, "interval"), ==, 250000);
    g_assert_cmpint(wb_config_get_enum(config, "mode"), ==, 1);
    const char *const *items = wb_config_get_list(config, "items");
    g_assert_cmpuint(g_strv_length((char **)items), ==, 3);
    g_assert_cmpstr(items[0], ==, "a");
    g_assert_cmpstr(items[1], ==, "b");
    g_assert_cmpstr(items[2], ==, "c");
    g_assert_cmpstr(wb_config_get_string(config, "watch"), ==, "pv/+/power");
    /* family members in file order */
    const char *const *fam = wb_config_get_family(config, "point.");
    g_assert_cmpuint(g_strv_length((char **)fam), ==, 2);
    g_assert_cmpstr(fam[0], ==, "point.l1/power");
    g_assert_cmpstr(fam[1], ==, "point.power");
    g_assert_cmpfloat(wb_config_get_double(config, "point.l1/power"), ==, -5.5);
    g_assert_true(wb_config_has_key(config, "count"));
    g_assert_false(wb_config_has_key(config, "password"));

    g_autoptr(GError) error = NULL;
    wb_config_set_error(config, &error, "count", "does not suit %s", "this");
    g_autofree char *expect = g_strdup_printf("%s:4: [inst] count: does not suit this", file);
    g_assert_cmpstr(error->message, ==, expect);
    wb_config_free(config);
}

static void test_defaults(Tmp *t, gconstpointer data)
{
    WbConfig *config = NULL;
    g_autofree char *file = NULL;
    g_autofree char *e = validate(t, "name = n\n", &config, &file);
    g_assert_null(e);
    g_assert_cmpint(wb_config_get_int(config, "count"), ==, 3);
    g_assert_cmpint(wb_config_get_duration(config, "interval"), ==, G_USEC_PER_SEC);
    g_assert_cmpint(wb_config_get_enum(config, "mode"), ==, 0);
    g_assert_false(wb_config_has_key(config, "count"));
    g_assert_null(wb_config_get_string(config, "password"));
    g_assert_cmpuint(g_strv_length((char **)wb_config_get_list(config, "items")), ==, 0);
    g_assert_cmpuint(g_strv_length((char **)wb_config_get_family(config, "point.")), ==, 0);
    wb_config_free(config);
}

static void test_durations(void)
{
    gint64 us;
    g_assert_true(wb_parse_duration("1.5", &us));
    g_assert_cmpint(us, ==, 1500000);
    g_assert_true(wb_parse_duration("20ms", &us));
    g_assert_cmpint(us, ==, 20000);
    g_assert_true(wb_parse_duration("2min", &us));
    g_assert_cmpint(us, ==, 120000000);
    g_assert_true(wb_parse_duration("1 h", &us));
    g_assert_cmpint(us, ==, 3600000000);
    g_assert_false(wb_parse_duration("-1", &us));
    g_assert_false(wb_parse_duration("1 fortnight", &us));
    g_assert_false(wb_parse_duration("", &us));
}

/* --check-config through the real executable: a broken instance is
 * reported with its place, the good one would run, the disabled one is
 * validated too, and the exit status is 1. */
static void test_check_config(Tmp *t, gconstpointer data)
{
    g_autofree char *ok = write_conf(t, "c", "10-ok.conf", "[ok]\nplugin = good\nname = fine\n");
    g_autofree char *off = write_conf(t, "c", "20-off.conf", "[off]\nplugin = good\nname = x\nenabled = false\n");
    g_autofree char *bad = write_conf(t, "c", "30-bad.conf", "[bad]\nplugin = good\nname = x\ncount = 99\n");
    g_autofree char *nop = write_conf(t, "c", "40-nop.conf", "[nop]\nplugin = absent\n");
    g_autofree char *dir = dir_path(t, "c");
    const char *args[] = {"--check-config", "--config-dir", dir, "--plugin-dir", plugin_dir, NULL};
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    /* fails the test unless it exits normally without a sanitizer report */
    int code = wbt_run_daemon(args, &out, &err);
    g_test_message("stdout:\n%s\nstderr:\n%s", out, err);
    g_assert_cmpint(code, ==, 1);
    g_autofree char *l1 = g_strdup_printf("[ok] %s: plugin good 1.0, would run", ok);
    g_autofree char *l2 = g_strdup_printf("[off] %s: plugin good 1.0, valid but disabled (enabled = false)", off);
    g_autofree char *l3 = g_strdup_printf("error: %s:4: [bad] count: expected an integer from 1 to 10, got \"99\"", bad);
    g_autofree char *l4 = g_strdup_printf("error: %s:2: [nop] plugin: no plugin 'absent'", nop);
    assert_contains(out, l1);
    assert_contains(out, l2);
    assert_contains(out, l3);
    assert_contains(out, l4);
    assert_contains(out, "configuration has errors");

    /* the same without the broken files: exit 0 */
    g_unlink(bad);
    g_unlink(nop);
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);
    code = wbt_run_daemon(args, &out, &err);
    g_test_message("stdout:\n%s\nstderr:\n%s", out, err);
    g_assert_cmpint(code, ==, 0);
    assert_contains(out, "configuration OK");
}

/* Runs the daemon with @args; returns the exit code (failing the test on a
 * sanitizer report or an abnormal exit). */
static int run_cli(const char *const *args, char **out, char **err)
{
    int code = wbt_run_daemon(args, out, err);
    g_test_message("stdout:\n%s\nstderr:\n%s", *out, *err);
    return code;
}

static void test_cli(void)
{
    g_autofree char *out = NULL, *err = NULL;
    const char *plugins = g_getenv("WB_PLUGIN_DIR");

    /* --list-plugins: every plugin found, the broken ones with the reason */
    const char *list[] = {"--list-plugins", "--plugin-dir", plugins, "--plugin-dir", plugin_dir, NULL};
    g_assert_cmpint(run_cli(list, &out, &err), ==, 0);
    assert_contains(out, "dtsu666");
    assert_contains(out, "Emulated CHINT DTSU666 three-phase meter");
    assert_contains(out, "mqtt");
    assert_contains(out, "replay");
    assert_contains(out, "source");
    assert_contains(out, "(broken)");
    g_autofree char *abi_new = g_strdup_printf("built for plugin ABI %d.%d", WB_ABI_MAJOR + 1, WB_ABI_MINOR);
    assert_contains(out, abi_new);
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);

    /* the same through WATTBRIDGE_PLUGIN_PATH */
    g_setenv("WATTBRIDGE_PLUGIN_PATH", plugins, TRUE);
    const char *list_env[] = {"--list-plugins", NULL};
    g_assert_cmpint(run_cli(list_env, &out, &err), ==, 0);
    assert_contains(out, "dtsu666");
    g_unsetenv("WATTBRIDGE_PLUGIN_PATH");
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);

    /* --describe: the declaration, families, defaults, the exception code */
    const char *describe[] = {"--describe", "dtsu666", "--plugin-dir", plugins, NULL};
    g_assert_cmpint(run_cli(describe, &out, &err), ==, 0);
    assert_contains(out, "dtsu666 ");
    assert_contains(out, "point.<name> = <point>");
    assert_contains(out, "on-stale = <enum> (default: silent)");
    assert_contains(out, "Modbus exception 04");
    assert_contains(out, "unit-id = <integer>");
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);

    /* secrets are not shown */
    const char *mqtt[] = {"--describe", "mqtt", "--plugin-dir", plugins, NULL};
    g_assert_cmpint(run_cli(mqtt, &out, &err), ==, 0);
    assert_contains(out, "password = <string> (secret)");
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);

    const char *absent[] = {"--describe", "nonesuch", "--plugin-dir", plugins, NULL};
    g_assert_cmpint(run_cli(absent, &out, &err), ==, 1);
    assert_contains(err, "no plugin 'nonesuch'");
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);

    const char *help[] = {"--help", NULL};
    g_assert_cmpint(run_cli(help, &out, &err), ==, 0);
    assert_contains(out, "--config-dir=DIR");
    assert_contains(out, "--check-config");
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);

    const char *bad[] = {"--frobnicate", NULL};
    g_assert_cmpint(run_cli(bad, &out, &err), ==, 2);
    assert_contains(err, "Unknown option --frobnicate");
}

/* The shipped example installations are valid as they stand (no device
 * is opened). */
static void test_examples(void)
{
    g_autofree char *examples = g_build_filename(g_getenv("WB_TEST_SRCDIR"), "conf.d", "examples", NULL);
    g_autofree char *data = g_build_filename(g_getenv("WB_TEST_SRCDIR"), "data", NULL);
    const char *args[] = {"--check-config", "--config-dir", examples, "--plugin-dir", g_getenv("WB_PLUGIN_DIR"),
                          "--data-dir", data, NULL};
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    int code = wbt_run_daemon(args, &out, &err);
    g_test_message("%s%s", out, err);
    if (code != 0)
        g_error("the examples do not pass --check-config (exit %d):\n%s\n%s", code, out, err);
    assert_contains(out, "[growatt] ");
    assert_contains(out, "plugin mqtt");
    assert_contains(out, "[pv-meter] ");
    assert_contains(out, "[grid-meter]");
    assert_contains(out, "[pv-inverter]");
    assert_contains(out, "configuration OK");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    plugin_dir = g_getenv("WB_TEST_PLUGIN_DIR");
    g_assert_nonnull(plugin_dir);
    g_autofree char *path = g_build_filename(plugin_dir, "good.so", NULL);
    g_autoptr(GError) error = NULL;
    good = wb_plugin_load(path, &error);
    g_assert_no_error(error);

#define ADD(name, fn) g_test_add(name, Tmp, NULL, tmp_setup, fn, tmp_teardown)
    ADD("/config/confd/precedence", test_precedence);
    ADD("/config/confd/masking", test_masking);
    ADD("/config/confd/order", test_order);
    ADD("/config/confd/duplicate-section-in-file", test_duplicate_section_in_file);
    ADD("/config/confd/duplicate-section-across-files", test_duplicate_section_across_files);
    ADD("/config/confd/repeated-key", test_repeated_key);
    ADD("/config/confd/syntax", test_syntax);
    ADD("/config/options/bad-values", test_bad_values);
    ADD("/config/options/all-errors-reported", test_all_errors_reported);
    ADD("/config/options/good-values", test_good_values);
    ADD("/config/options/defaults", test_defaults);
    ADD("/config/check-config", test_check_config);
    g_test_add_func("/config/options/durations", test_durations);
    g_test_add_func("/config/examples", test_examples);
    g_test_add_func("/config/cli", test_cli);
    int rc = g_test_run();
    wb_plugin_free(good);
    return rc;
}
