/* Unit tests: the plugin loader against the broken-plugin corpus. */
#include "wb-private.h"

#include <glib/gstdio.h>
#include <sys/stat.h>

static const char *plugin_dir;

static char *plugin_path(const char *name)
{
    return g_strdup_printf("%s/%s.so", plugin_dir, name);
}

typedef struct {
    const char *plugin;
    const char *expect[3]; /* substrings the message must contain */
} Case;

static const Case refused[] = {
    {"no-entry", {"does not export wb_plugin_get_descriptor()"}},
    {"null-descriptor", {"declined to load", "returned NULL"}},
    /* $M, $m: this host's ABI major and minor; $M-1, $M+1, $m+1 */
    {"abi-major-old", {"built for plugin ABI $M-1.$m", "this host provides ABI $M.$m", "major version must match"}},
    {"abi-major-new", {"built for plugin ABI $M+1.$m", "this host provides ABI $M.$m"}},
    {"abi-minor-new", {"built for plugin ABI $M.$m+1", "newer than this host's ABI $M.$m"}},
    {"small-struct", {"struct_size 16 is smaller"}},
    {"no-license", {"no license"}},
    {"wrong-name", {"calls itself 'another-name'", "'wrong-name.so'"}},
    {"no-ops", {"no ops table"}},
    {"missing-op", {"create, start, stop and destroy are all required"}},
    {"duplicate-option", {"option 'port': declared twice"}},
    {"bad-default", {"option 'port': default value", "expected an integer, got \"abc\""}},
    {"default-out-of-range", {"option 'port': default value", "from 1 to 65535", "\"70000\""}},
    {"reserved-option", {"option 'enabled': the host owns this key"}},
    {"missing-symbol", {"cannot load", "wb_no_such_function"}},
};

/* The ABI numbers in an expected message, from the headers in use. */
static char *expand_abi(const char *pattern)
{
    GString *s = g_string_new(pattern);
    const struct {
        const char *token;
        int value;
    } tokens[] = {{"$M-1", WB_ABI_MAJOR - 1}, {"$M+1", WB_ABI_MAJOR + 1}, {"$m+1", WB_ABI_MINOR + 1},
                  {"$M", WB_ABI_MAJOR},       {"$m", WB_ABI_MINOR}};
    for (gsize i = 0; i < G_N_ELEMENTS(tokens); i++) {
        g_autofree char *v = g_strdup_printf("%d", tokens[i].value);
        g_string_replace(s, tokens[i].token, v, 0);
    }
    return g_string_free(s, FALSE);
}

static void test_refused(gconstpointer data)
{
    const Case *c = data;
    g_autofree char *path = plugin_path(c->plugin);
    g_autoptr(GError) error = NULL;
    WbPlugin *plugin = wb_plugin_load(path, &error);
    g_assert_null(plugin);
    g_assert_nonnull(error);
    g_test_message("%s: %s", c->plugin, error->message);
    /* every message names the file */
    g_assert_nonnull(strstr(error->message, path));
    for (int i = 0; i < 3 && c->expect[i]; i++) {
        g_autofree char *expect = expand_abi(c->expect[i]);
        if (!strstr(error->message, expect))
            g_error("message for %s lacks \"%s\": %s", c->plugin, expect, error->message);
    }
}

static void test_good(void)
{
    g_autofree char *path = plugin_path("good");
    g_autoptr(GError) error = NULL;
    g_autoptr(WbPlugin) plugin = wb_plugin_load(path, &error);
    g_assert_no_error(error);
    g_assert_nonnull(plugin);
    g_assert_cmpstr(plugin->name, ==, "good");
    g_assert_cmpuint(plugin->desc.abi_major, ==, WB_ABI_MAJOR);
    g_assert_true(plugin->desc.roles & WB_ROLE_SOURCE);
    guint n = 0;
    while (plugin->options[n].name)
        n++;
    g_assert_cmpuint(n, ==, 10);

    g_autofree char *text = wb_plugin_describe(plugin);
    g_assert_nonnull(strstr(text, "good 1.0: A well-formed test plugin"));
    g_assert_nonnull(strstr(text, "count = <integer> (default: 3)"));
    g_assert_nonnull(strstr(text, "Expects an integer from 1 to 10."));
    g_assert_nonnull(strstr(text, "point.<name> = <number>"));
    g_assert_nonnull(strstr(text, "mode = <enum> (default: fast)"));
    g_assert_nonnull(strstr(text, "one of: fast, slow"));
    g_assert_nonnull(strstr(text, "name = <string> (required)"));
    g_assert_nonnull(strstr(text, "password = <string> (secret)"));
}

static void test_writable_file(gconstpointer data)
{
    mode_t mode = GPOINTER_TO_UINT(data);
    g_autoptr(GError) error = NULL;
    g_autofree char *dir = g_dir_make_tmp("wb-loader-XXXXXX", &error);
    g_assert_no_error(error);
    g_autofree char *src = plugin_path("good");
    g_autofree char *dst = g_build_filename(dir, "good.so", NULL);
    g_autofree char *contents = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(src, &contents, &len, NULL));
    g_assert_true(g_file_set_contents(dst, contents, (gssize)len, NULL));
    g_assert_cmpint(chmod(dst, mode), ==, 0);

    WbPlugin *plugin = wb_plugin_load(dst, &error);
    g_assert_null(plugin);
    g_assert_nonnull(strstr(error->message, "group- or world-writable"));
    g_assert_nonnull(strstr(error->message, dst));
    g_unlink(dst);
    g_rmdir(dir);
}

static void test_find(void)
{
    const char *dirs[] = {"/nonexistent", plugin_dir, NULL};
    g_autoptr(GError) error = NULL;
    g_autofree char *found = wb_plugin_find(dirs, "good", &error);
    g_assert_no_error(error);
    g_autofree char *expected = plugin_path("good");
    g_assert_cmpstr(found, ==, expected);

    g_autofree char *missing = wb_plugin_find(dirs, "absent", &error);
    g_assert_null(missing);
    g_assert_nonnull(strstr(error->message, "no plugin 'absent'"));
    g_assert_nonnull(strstr(error->message, "/nonexistent"));
    g_clear_error(&error);

    g_autofree char *bad = wb_plugin_find(dirs, "../good", &error);
    g_assert_null(bad);
    g_assert_nonnull(strstr(error->message, "not a plugin name"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    plugin_dir = g_getenv("WB_TEST_PLUGIN_DIR");
    g_assert_nonnull(plugin_dir);
    for (gsize i = 0; i < G_N_ELEMENTS(refused); i++) {
        g_autofree char *path = g_strdup_printf("/loader/refused/%s", refused[i].plugin);
        g_test_add_data_func(path, &refused[i], test_refused);
    }
    g_test_add_func("/loader/good", test_good);
    g_test_add_data_func("/loader/refused/group-writable", GUINT_TO_POINTER(0775), test_writable_file);
    g_test_add_data_func("/loader/refused/world-writable", GUINT_TO_POINTER(0757), test_writable_file);
    g_test_add_func("/loader/find", test_find);
    return g_test_run();
}
