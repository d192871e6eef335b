/* The sanitizer net's self-test: start the daemon with a plugin that leaks
 * 4 KiB on purpose (tests/plugins/leaky.c, in leaky_start()) and stop it
 * with SIGTERM like every other test.
 *
 * - Built with the address sanitizer (WB_TEST_SANITIZE, set by meson from
 *   b_sanitize): LeakSanitizer must report exactly that leak on the
 *   daemon's stderr, the allocation's stack naming the leaky plugin, and
 *   the daemon must not exit 0; and the harness must call that log a
 *   sanitizer report, as wbt_daemon_stop() does for every other test.  If
 *   this fails, the leak checks of every other test are not armed.
 * - Without it: the daemon stops cleanly, exit 0, no report. */
#include "wbt.h"

#include <string.h>
#include <sys/wait.h>

static void test_leak(void)
{
    const char *sanitize = wbt_env("WB_TEST_SANITIZE");
    gboolean asan = strstr(sanitize, "address") != NULL;
    g_test_message("b_sanitize = %s: %s", sanitize, asan ? "a leak report is expected" : "no report is expected");

    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_free(wbt_scratch_conf(s, "10-leaky.conf", "%s", "[leaky]\nplugin = leaky\n"));
    /* the daemon as wbt_scratch_daemon() starts it, but with the slow
     * unwinder for malloc stacks: the fast one follows frame pointers,
     * which an optimised plugin does not keep, and would skip leaky_start */
    g_autofree char *data = g_build_filename(wbt_env("WB_TEST_SRCDIR"), "data", NULL);
    const char *argv[] = {wbt_env("WB_TEST_DAEMON"), "--verbose", "--config-dir", s->confdir, "--plugin-dir",
                          wbt_env("WB_TEST_PLUGIN_DIR"), "--data-dir", data, "--state-dir", s->statedir, NULL};
    const char *asan_options = g_getenv("ASAN_OPTIONS");
    g_autofree char *asan_env = g_strdup_printf("ASAN_OPTIONS=%s%sfast_unwind_on_malloc=0",
                                                asan_options ? asan_options : "", asan_options ? ":" : "");
    const char *env[] = {asan_env, NULL};
    WbtDaemon *d = wbt_daemon_spawn(argv, env);
    wbt_daemon_expect_log(d, "running 1 instance", 10000);
    g_autofree char *log = NULL;
    int status = wbt_daemon_stop_status_log(d, &log);
    g_test_message("wait status 0x%x; the daemon's stderr:\n%s", (unsigned)status, log);
    g_assert_cmpint(status, !=, -1); /* it stopped within 15 s of SIGTERM */
    g_assert_nonnull(strstr(log, "running 1 instance"));
    g_assert_nonnull(strstr(log, "leaky"));

    if (!asan) {
        if (wbt_has_sanitizer_report(log))
            g_error("sanitizer report without the address sanitizer:\n%s", log);
        g_assert_true(WIFEXITED(status));
        g_assert_cmpint(WEXITSTATUS(status), ==, 0);
        return;
    }

    /* the report, and the harness sees it */
    const char *report = strstr(log, "ERROR: LeakSanitizer");
    if (!report)
        g_error("no LeakSanitizer report for the planted leak:\n%s", log);
    g_assert_true(wbt_has_sanitizer_report(log));
    /* the planted leak, with the plugin's function in its stack */
    const char *leak = strstr(report, "Direct leak of 4096 byte(s) in 1 object(s) allocated from:");
    if (!leak)
        g_error("the report does not name the 4096-byte leak:\n%s", report);
    g_autofree char *stack = g_strndup(leak, strstr(leak, "\n\n") ? (gsize)(strstr(leak, "\n\n") - leak) : strlen(leak));
    if (!strstr(stack, " in leaky_start "))
        g_error("the leak's stack does not name leaky_start:\n%s", stack);
    g_assert_nonnull(strstr(report, "SUMMARY: AddressSanitizer: 4096 byte(s) leaked in 1 allocation(s)."));
    /* and the daemon does not exit 0 with it */
    g_assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/sanitizer/leak-net", test_leak);
    return g_test_run();
}
