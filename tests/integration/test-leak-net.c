/* The sanitizer net's self-test: start the daemon with a plugin that leaks
 * 4 KiB on purpose and stop it like every other test.  In a plain build
 * this passes; in the sanitizer setup LeakSanitizer reports the leak, the
 * harness turns the report into a failure, and meson expects exactly that
 * (should_fail).  If this test ever passes under the sanitizer setup, the
 * leak checks of every other test are not armed. */
#include "wbt.h"

static void test_leak(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_free(wbt_scratch_conf(s, "10-leaky.conf", "%s", "[leaky]\nplugin = leaky\n"));
    WbtDaemon *d = wbt_scratch_daemon(s);
    wbt_daemon_expect_log(d, "running 1 instance", 10000);
    wbt_daemon_stop(d);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/sanitizer/leak-net", test_leak);
    return g_test_run();
}
