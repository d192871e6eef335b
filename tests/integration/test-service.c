/* Integration: the daemon as a service.
 *
 * - SIGHUP reloads conf.d: only the instance whose file changed restarts,
 *   while mbpoll keeps reading another without a single failure; an
 *   invalid new configuration leaves the old one running; removed and
 *   added files stop and start their instances.
 * - systemd's notify protocol, on a socket of our own as NOTIFY_SOCKET:
 *   READY=1 with a status, WATCHDOG=1 from a main-loop timer (and none
 *   while the main loop is blocked), RELOADING=1 then READY=1 around a
 *   reload, STOPPING=1.
 * - A secret in a file everyone may read is warned about. */
#include "wbt.h"

#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>
#include <signal.h>

static void write_meter(WbtScratch *s, const char *file, const char *name, guint port, const char *extra)
{
    g_free(wbt_scratch_conf(s, file,
                            "[%s]\nplugin = dtsu666\ntransport = tcp\nport = %u\nmax-age = 5s\n"
                            "point.power = trace/pv/power\n%s", name, port, extra));
}

static void read_ok(const char *target, const char *what)
{
    static const guint16 pt[] = {0x466A, 0x6000}; /* 1500 W as 15000.0 */
    g_autoptr(WbtRead) r = wbt_mbpoll_read(target, 1, 3, 0x2012, 2);
    if (!r->ok)
        g_error("%s: %s", what, r->error);
    wbt_assert_words(r, pt, 2, what);
}

static void test_reload(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_free(wbt_scratch_conf(s, "10-trace.conf",
                            "[trace]\nplugin = good\nname = x\ninterval = 100ms\npoint.pv/power = 1500\n"));
    guint port_a = wbt_free_port(), port_b = wbt_free_port();
    write_meter(s, "20-a.conf", "meter-a", port_a, "");
    write_meter(s, "30-b.conf", "meter-b", port_b, "");
    WbtDaemon *d = wbt_scratch_daemon(s);
    g_autofree char *a = g_strdup_printf("tcp:%u", port_a);
    g_autofree char *b = g_strdup_printf("tcp:%u", port_b);
    static const guint16 pt[] = {0x466A, 0x6000};
    wbt_expect_words(a, 1, 3, 0x2012, pt, 2, "meter-a serves");
    wbt_expect_words(b, 1, 3, 0x2012, pt, 2, "meter-b serves");

    /* meter-b changes; meter-a must not miss a read */
    write_meter(s, "30-b.conf", "meter-b", port_b, "nominal-voltage = 240\n");
    g_subprocess_send_signal(d->proc, SIGHUP);
    for (int i = 0; i < 30; i++)
        read_ok(a, "meter-a during the reload");
    wbt_daemon_expect_log(d, "reloaded: 2 instances unchanged, 1 stopped, 1 started", 5000);
    g_assert_cmpuint(wbt_daemon_count_log(d, "\\[meter-b\\] stopped \\(its configuration changed\\)"), ==, 1);
    g_assert_cmpuint(wbt_daemon_count_log(d, "\\[meter-a\\] stopped"), ==, 0);
    g_assert_cmpuint(wbt_daemon_count_log(d, "\\[meter-a\\] serving Modbus TCP"), ==, 1);
    g_assert_cmpuint(wbt_daemon_count_log(d, "\\[meter-a\\] started"), ==, 1);
    wbt_expect_words(b, 1, 3, 0x2012, pt, 2, "meter-b serves again");

    /* a typo: the old configuration keeps running */
    write_meter(s, "20-a.conf", "meter-a", port_a, "nominal-votlage = 240\n");
    g_subprocess_send_signal(d->proc, SIGHUP);
    wbt_daemon_expect_log(d, "20-a.conf:7: \\[meter-a\\] nominal-votlage: unknown key", 5000);
    wbt_daemon_expect_log(d, "the new configuration has 1 error \\(above\\); still running the old one", 5000);
    for (int i = 0; i < 10; i++)
        read_ok(a, "meter-a after a refused reload");
    g_assert_cmpuint(wbt_daemon_count_log(d, "\\[meter-a\\] stopped"), ==, 0);

    /* fixed, b removed, c added */
    write_meter(s, "20-a.conf", "meter-a", port_a, "");
    g_autofree char *b_file = g_build_filename(s->confdir, "30-b.conf", NULL);
    g_assert_cmpint(g_unlink(b_file), ==, 0);
    guint port_c = wbt_free_port();
    write_meter(s, "40-c.conf", "meter-c", port_c, "");
    /* the first reload logged the same line: wait for a second one */
    const char *reloaded = "reloaded: 2 instances unchanged, 1 stopped, 1 started";
    guint reloads = wbt_daemon_count_log(d, reloaded);
    g_assert_cmpuint(reloads, ==, 1);
    g_subprocess_send_signal(d->proc, SIGHUP);
    wbt_daemon_expect_log_count(d, reloaded, reloads + 1, 5000);
    wbt_daemon_expect_log(d, "\\[meter-b\\] stopped \\(removed\\)", 1000);
    g_autofree char *c = g_strdup_printf("tcp:%u", port_c);
    wbt_expect_words(c, 1, 3, 0x2012, pt, 2, "meter-c serves");
    read_ok(a, "meter-a at the end");
    wbt_daemon_stop(d);
}

/* ---- systemd notify ---------------------------------------------------------------- */

typedef struct {
    GSocket *socket;
    GPtrArray *messages; /* char* */
} Notify;

static void notify_drain(Notify *n)
{
    char buf[4096];
    for (;;) {
        gssize len = g_socket_receive(n->socket, buf, sizeof buf - 1, NULL, NULL);
        if (len <= 0)
            return;
        buf[len] = '\0';
        g_ptr_array_add(n->messages, g_strdup(buf));
    }
}

/* Drained as the datagrams come, as systemd does: a full queue would block
 * the daemon's sd_notify(). */
static gboolean on_notify(GSocket *socket, GIOCondition condition, gpointer user_data)
{
    notify_drain(user_data);
    return G_SOURCE_CONTINUE;
}

static guint notify_count(Notify *n, const char *what)
{
    notify_drain(n);
    guint count = 0;
    for (guint i = 0; i < n->messages->len; i++)
        count += strstr(g_ptr_array_index(n->messages, i), what) != NULL;
    return count;
}

static void notify_wait(Notify *n, const char *what, guint at_least, guint timeout_ms)
{
    gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    while (notify_count(n, what) < at_least) {
        if (g_get_monotonic_time() > end)
            g_error("no \"%s\" (%u wanted) on the notify socket within %u ms", what, at_least, timeout_ms);
        wbt_sleep(20);
    }
}

static void test_notify(void)
{
    if (!g_getenv("WB_TEST_SYSTEMD")) {
        g_test_skip("built without libsystemd");
        return;
    }
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_autofree char *path = g_build_filename(s->dir, "notify.sock", NULL);
    Notify n = {g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_DATAGRAM, G_SOCKET_PROTOCOL_DEFAULT, NULL),
                g_ptr_array_new_with_free_func(g_free)};
    g_autoptr(GSocketAddress) addr = g_unix_socket_address_new(path);
    g_assert_true(g_socket_bind(n.socket, addr, TRUE, NULL));
    g_socket_set_blocking(n.socket, FALSE);
    GSource *watch = g_socket_create_source(n.socket, G_IO_IN, NULL);
    g_source_set_callback(watch, (GSourceFunc)(void (*)(void))on_notify, &n, NULL);
    g_source_attach(watch, NULL);

    g_free(wbt_scratch_conf(s, "10-good.conf", "[good]\nplugin = good\nname = x\n"));
    /* blocks the main loop for 1.5 s, 2 s after starting */
    g_free(wbt_scratch_conf(s, "20-stall.conf", "[stall]\nplugin = stall\nafter = 2s\nblock = 1500ms\n"));
    g_autofree char *data = g_build_filename(g_getenv("WB_TEST_SRCDIR"), "data", NULL);
    g_autofree char *socket_env = g_strdup_printf("NOTIFY_SOCKET=%s", path);
    const char *env[] = {socket_env, "WATCHDOG_USEC=200000", NULL};
    const char *argv[] = {g_getenv("WB_TEST_DAEMON"), "--verbose", "--config-dir", s->confdir, "--plugin-dir",
                          g_getenv("WB_TEST_PLUGIN_DIR"), "--data-dir", data, "--state-dir", s->statedir, NULL};
    WbtDaemon *d = wbt_daemon_spawn(argv, env);

    notify_wait(&n, "READY=1", 1, 10000);
    notify_wait(&n, "STATUS=running 2 instances", 1, 1000);
    /* every 100 ms */
    guint pings = notify_count(&n, "WATCHDOG=1");
    wbt_sleep(600);
    g_assert_cmpuint(notify_count(&n, "WATCHDOG=1") - pings, >=, 4);

    /* while the main loop is blocked, no ping: systemd would restart us */
    wbt_daemon_expect_log(d, "\\[stall\\] stalling the main loop", 5000);
    pings = notify_count(&n, "WATCHDOG=1");
    wbt_sleep(1000);
    guint during = notify_count(&n, "WATCHDOG=1") - pings;
    wbt_daemon_expect_log(d, "\\[stall\\] stall over", 5000);
    g_assert_cmpuint(during, <=, 1); /* one may have been sent just before */
    pings = notify_count(&n, "WATCHDOG=1");
    wbt_sleep(500);
    g_assert_cmpuint(notify_count(&n, "WATCHDOG=1") - pings, >=, 3);

    g_subprocess_send_signal(d->proc, SIGHUP);
    notify_wait(&n, "RELOADING=1", 1, 5000);
    notify_wait(&n, "READY=1", 2, 5000);
    wbt_daemon_stop(d);
    notify_wait(&n, "STOPPING=1", 1, 1000);
    g_source_destroy(watch);
    g_source_unref(watch);
    g_object_unref(n.socket);
    g_ptr_array_unref(n.messages);
}

/* ---- secrets ------------------------------------------------------------------------- */

static void test_exposed_secret(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_autofree char *file = wbt_scratch_conf(s, "10-good.conf", "[good]\nplugin = good\nname = x\npassword = hunter2\n");
    g_assert_cmpint(g_chmod(file, 0644), ==, 0);
    WbtDaemon *d = wbt_scratch_daemon(s);
    g_autofree char *pattern = g_strdup_printf("%s:4: \\[good\\] password is a secret, but everyone may read this "
                                               "file", file);
    wbt_daemon_expect_log(d, pattern, 5000);
    g_autofree char *log = wbt_daemon_log(d);
    g_assert_null(strstr(log, "hunter2"));
    wbt_daemon_stop(d);

    g_assert_cmpint(g_chmod(file, 0640), ==, 0);
    d = wbt_scratch_daemon(s);
    wbt_daemon_expect_log(d, "running 1 instance", 5000);
    g_assert_cmpuint(wbt_daemon_count_log(d, "is a secret"), ==, 0);
    wbt_daemon_stop(d);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/service/reload", test_reload);
    g_test_add_func("/service/notify", test_notify);
    g_test_add_func("/service/exposed-secret", test_exposed_secret);
    return g_test_run();
}
