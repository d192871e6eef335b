/* Integration: a third party's plugin.
 *
 * Installs this build into a scratch tree (meson install --destdir), builds
 * api/examples/hello/hello.c (the SDK example) against that tree with nothing but
 * "pkg-config wattbridge-plugin" (PKG_CONFIG_SYSROOT_DIR pointing at the
 * tree), starts the installed daemon with the plugin's directory as
 * --plugin-dir, and reads the point the plugin publishes through the
 * installed dtsu666 plugin with mbpoll. */
#include "wbt.h"

#include <glib/gstdio.h>
#include <unistd.h>

/* The libdir under @tree that holds wattbridge-plugin.pc's pkgconfig/. */
static char *find_libdir(const char *tree)
{
    /* meson installs into <prefix>/<libdir>; prefix /usr/local, libdir
     * lib/<multiarch> on Debian */
    g_autofree char *out = NULL;
    g_autofree char *pattern = g_strdup_printf("%s/usr/local", tree);
    const char *argv[] = {"find", pattern, "-name", "wattbridge-plugin.pc", NULL};
    g_assert_cmpint(wbt_run(argv, 10000, &out, NULL), ==, 0);
    g_strstrip(out);
    g_assert_true(g_str_has_suffix(out, "/pkgconfig/wattbridge-plugin.pc"));
    g_autofree char *pcdir = g_path_get_dirname(out);
    return g_path_get_dirname(pcdir);
}

static char *pkg_config(const char *pcdir, const char *tree, const char *const *args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, "env");
    g_autofree char *path = g_strdup_printf("PKG_CONFIG_PATH=%s", pcdir);
    g_autofree char *sysroot = g_strdup_printf("PKG_CONFIG_SYSROOT_DIR=%s", tree);
    g_ptr_array_add(argv, path);
    g_ptr_array_add(argv, sysroot);
    g_ptr_array_add(argv, "pkg-config");
    for (guint i = 0; args[i]; i++)
        g_ptr_array_add(argv, (char *)args[i]);
    g_ptr_array_add(argv, NULL);
    g_autofree char *out = NULL, *err = NULL;
    int status = wbt_run((const char *const *)argv->pdata, 10000, &out, &err);
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("pkg-config failed: %s", err);
    return g_strstrip(g_steal_pointer(&out));
}

/* The sysroot also needs what the SDK depends on (glib's headers), as a
 * real cross-building sysroot would: link them from this machine. */
static void provide_glib(const char *tree)
{
    const char *dirs[] = {"/usr/include/glib-2.0", NULL};
    for (int i = 0; dirs[i]; i++) {
        g_autofree char *dst = g_build_filename(tree, dirs[i], NULL);
        g_autofree char *parent = g_path_get_dirname(dst);
        g_mkdir_with_parents(parent, 0755);
        g_assert_cmpint(symlink(dirs[i], dst), ==, 0);
    }
    g_autofree char *out = NULL;
    const char *argv[] = {"pkg-config", "--variable=libdir", "glib-2.0", NULL};
    g_assert_cmpint(wbt_run(argv, 10000, &out, NULL), ==, 0);
    g_strstrip(out);
    g_autofree char *src = g_build_filename(out, "glib-2.0", NULL);
    g_autofree char *dst = g_build_filename(tree, src, NULL);
    g_autofree char *parent = g_path_get_dirname(dst);
    g_mkdir_with_parents(parent, 0755);
    g_assert_cmpint(symlink(src, dst), ==, 0);
}

static void test_out_of_tree(void)
{
    g_autofree char *dir = wbt_tmpdir_new();
    g_autofree char *tree = g_build_filename(dir, "root", NULL);

    /* 1. install this build */
    const char *install[] = {g_getenv("WB_TEST_MESON"), "install", "-C", g_getenv("WB_TEST_BUILDDIR"),
                             "--no-rebuild", "--quiet", "--destdir", tree, NULL};
    g_autofree char *ierr = NULL;
    int status = wbt_run(install, 120000, NULL, &ierr);
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("meson install failed: %s", ierr);
    provide_glib(tree);
    g_autofree char *libdir = find_libdir(tree);
    g_autofree char *pcdir = g_build_filename(libdir, "pkgconfig", NULL);

    /* 2. build the plugin with pkg-config only */
    const char *flags_args[] = {"--cflags", "--libs", "wattbridge-plugin", NULL};
    g_autofree char *flags = pkg_config(pcdir, tree, flags_args);
    const char *map_args[] = {"--variable=plugin_map", "wattbridge-plugin", NULL};
    g_autofree char *map = pkg_config(pcdir, tree, map_args);
    const char *dir_args[] = {"--variable=pluginsdir", "wattbridge-plugin", NULL};
    g_autofree char *pluginsdir = pkg_config(pcdir, tree, dir_args);
    g_test_message("cflags/libs: %s\nplugin_map: %s\npluginsdir: %s", flags, map, pluginsdir);
    g_assert_true(g_file_test(map, G_FILE_TEST_IS_REGULAR));
    g_assert_true(g_file_test(pluginsdir, G_FILE_TEST_IS_DIR));

    g_autofree char *outdir = g_build_filename(dir, "plugins", NULL);
    g_mkdir_with_parents(outdir, 0755);
    g_autofree char *source = g_build_filename(g_getenv("WB_TEST_SRCDIR"), "api", "examples", "hello", "hello.c", NULL);
    g_autofree char *cmd = g_strdup_printf("cc -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -fPIC -shared "
                                           "-fvisibility=hidden -o %s/hello.so %s %s -Wl,-z,defs "
                                           "-Wl,--version-script=%s",
                                           outdir, source, flags, map);
    const char *cc[] = {"sh", "-c", cmd, NULL};
    g_autofree char *cerr = NULL;
    status = wbt_run(cc, 60000, NULL, &cerr);
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("building the plugin failed:\n%s\n%s", cmd, cerr);

    /* only the entry point is exported */
    g_autofree char *so = g_build_filename(outdir, "hello.so", NULL);
    const char *nm[] = {"nm", "-D", "--defined-only", so, NULL};
    g_autofree char *syms = NULL;
    g_assert_cmpint(wbt_run(nm, 10000, &syms, NULL), ==, 0);
    g_assert_nonnull(strstr(syms, " T wb_plugin_get_descriptor"));
    g_auto(GStrv) lines = g_strsplit(g_strstrip(syms), "\n", -1);
    for (int i = 0; lines[i]; i++)
        if (strstr(lines[i], " T ") && !strstr(lines[i], "wb_plugin_get_descriptor"))
            g_error("hello.so exports more than its entry point: %s", lines[i]);

    /* 3. the installed daemon loads it and serves its point */
    g_autofree char *confdir = g_build_filename(dir, "conf.d", NULL);
    g_free(wbt_write(confdir, "10-hello.conf", "[hello]\nplugin = hello\npower = 2850\ninterval = 200ms\n"));
    g_free(wbt_write(confdir, "20-meter.conf",
                     "[meter]\nplugin = dtsu666\ntransport = tcp\nport = 0\nphases = 1\nmax-age = 1s\n"
                     "point.power = hello/power\n"));
    g_autofree char *daemon = g_build_filename(tree, "usr", "local", "bin", "wattbridge", NULL);
    g_autofree char *datadir = g_build_filename(tree, "usr", "local", "share", "wattbridge", NULL);
    g_autofree char *statedir = g_build_filename(dir, "state", NULL);
    const char *argv[] = {daemon, "--verbose", "--config-dir", confdir, "--plugin-dir", outdir, "--plugin-dir",
                          pluginsdir, "--data-dir", datadir, "--state-dir", statedir, NULL};
    g_autofree char *ld = g_strdup_printf("LD_LIBRARY_PATH=%s", libdir);
    const char *env[] = {ld, NULL};
    WbtDaemon *d = wbt_daemon_spawn(argv, env);
    wbt_daemon_expect_log(d, "\\[hello\\] hello from outside the tree: publishing 2850 W", 10000);
    g_autofree char *port = wbt_daemon_wait_log(d, "\\[meter\\] serving Modbus TCP on 127\\.0\\.0\\.1:(\\d+)", 10000);
    g_assert_nonnull(port);
    /* the installed dtsu666 came from the installed plugin directory */
    g_autofree char *log = wbt_daemon_log(d);
    g_assert_nonnull(strstr(log, "[meter] started (plugin dtsu666"));
    wbt_daemon_expect_log(d, "\\[meter\\] serving measurements", 10000);
    g_autofree char *target = g_strdup_printf("tcp:%s", port);
    g_autoptr(WbtRead) r = wbt_mbpoll_read(target, 1, 3, 0x2012, 2);
    static const guint16 pt[] = {0x46DE, 0xA800}; /* 2850 W, register-maps.md 1.6 */
    wbt_assert_words(r, pt, 2, "Pt from the out-of-tree plugin");
    wbt_daemon_stop(d);
    wbt_tmpdir_free(g_steal_pointer(&dir));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/sdk/out-of-tree-plugin", test_out_of_tree);
    return g_test_run();
}
