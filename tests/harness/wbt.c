/* Test harness for integration tests; see wbt.h. */
#include "wbt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <glib/gstdio.h>
#include <netinet/in.h>
#include <signal.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <sys/prctl.h>
#include <termios.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

const char *wbt_env(const char *name)
{
    const char *v = g_getenv(name);
    if (!v)
        g_error("%s is not set (run the tests and benchmarks with meson test)", name);
    return v;
}
#define env wbt_env

/* ---- temporary directories ------------------------------------------- */

char *wbt_tmpdir_new(void)
{
    GError *error = NULL;
    char *dir = g_dir_make_tmp("wbt-XXXXXX", &error);
    g_assert_no_error(error);
    return dir;
}

static void rm_rf(const char *path)
{
    if (g_file_test(path, G_FILE_TEST_IS_DIR) && !g_file_test(path, G_FILE_TEST_IS_SYMLINK)) {
        GDir *dir = g_dir_open(path, 0, NULL);
        const char *name;
        while (dir && (name = g_dir_read_name(dir))) {
            g_autofree char *child = g_build_filename(path, name, NULL);
            rm_rf(child);
        }
        if (dir)
            g_dir_close(dir);
        g_rmdir(path);
    } else {
        g_unlink(path);
    }
}

void wbt_tmpdir_free(char *dir)
{
    if (!dir)
        return;
    rm_rf(dir);
    g_free(dir);
}

char *wbt_write(const char *dir, const char *name, const char *text)
{
    char *path = g_build_filename(dir, name, NULL);
    g_autofree char *parent = g_path_get_dirname(path);
    g_mkdir_with_parents(parent, 0755);
    GError *error = NULL;
    g_file_set_contents(path, text, -1, &error);
    g_assert_no_error(error);
    return path;
}

WbtScratch *wbt_scratch_new(void)
{
    WbtScratch *s = g_new0(WbtScratch, 1);
    s->dir = wbt_tmpdir_new();
    s->confdir = g_build_filename(s->dir, "conf.d", NULL);
    s->statedir = g_build_filename(s->dir, "state", NULL);
    g_mkdir_with_parents(s->confdir, 0755);
    return s;
}

void wbt_scratch_free(WbtScratch *s)
{
    if (!s)
        return;
    wbt_tmpdir_free(s->dir);
    g_free(s->confdir);
    g_free(s->statedir);
    g_free(s);
}

static char *write_va(const char *dir, const char *name, const char *format, va_list args)
{
    g_autofree char *text = g_strdup_vprintf(format, args);
    return wbt_write(dir, name, text);
}

char *wbt_scratch_write(WbtScratch *s, const char *name, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    char *path = write_va(s->dir, name, format, args);
    va_end(args);
    return path;
}

char *wbt_scratch_conf(WbtScratch *s, const char *name, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    char *path = write_va(s->confdir, name, format, args);
    va_end(args);
    return path;
}

/* ---- processes ---------------------------------------------------------- */

/* Every child dies with the test: a test that aborts must not leave a
 * daemon, broker or socat running (nor holding meson's output pipe). */
static void die_with_parent(gpointer data)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static GSubprocessLauncher *launcher_new(GSubprocessFlags flags)
{
    GSubprocessLauncher *l = g_subprocess_launcher_new(flags);
    g_subprocess_launcher_set_child_setup(l, die_with_parent, NULL, NULL);
    return l;
}

GSubprocess *wbt_spawn(const char *const *argv, GSubprocessFlags flags)
{
    g_autoptr(GSubprocessLauncher) l = launcher_new(flags);
    GError *error = NULL;
    GSubprocess *p = g_subprocess_launcher_spawnv(l, argv, &error);
    g_assert_no_error(error);
    return p;
}

void wbt_sleep(guint ms)
{
    gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;
    while (g_get_monotonic_time() < end) {
        if (!g_main_context_iteration(NULL, FALSE))
            g_usleep(MIN(5000, MAX(0, end - g_get_monotonic_time())));
    }
}

static void on_waited(GObject *source, GAsyncResult *res, gpointer user_data)
{
    gboolean *done = user_data;
    g_subprocess_wait_finish(G_SUBPROCESS(source), res, NULL);
    *done = TRUE;
}

/* Waits for @proc up to @timeout_ms; TRUE when it exited. */
static gboolean wait_for(GSubprocess *proc, guint timeout_ms)
{
    gboolean done = FALSE;
    g_subprocess_wait_async(proc, NULL, on_waited, &done);
    gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    while (!done && g_get_monotonic_time() < end) {
        if (!g_main_context_iteration(NULL, FALSE))
            g_usleep(2000);
    }
    if (!done) {
        g_subprocess_force_exit(proc);
        while (!done)
            g_main_context_iteration(NULL, TRUE);
        return FALSE;
    }
    return TRUE;
}

typedef struct {
    gboolean done;
    char *out;
    char *err;
    GError *error;
} Communicated;

static void on_communicated(GObject *source, GAsyncResult *res, gpointer user_data)
{
    Communicated *c = user_data;
    g_subprocess_communicate_utf8_finish(G_SUBPROCESS(source), res, &c->out, &c->err, &c->error);
    c->done = TRUE;
}

int wbt_run(const char *const *argv, guint timeout_ms, char **out, char **err)
{
    GError *error = NULL;
    g_autoptr(GSubprocessLauncher) launcher = launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
    GSubprocess *proc = g_subprocess_launcher_spawnv(launcher, argv, &error);
    g_assert_no_error(error);
    Communicated c = {0};
    g_subprocess_communicate_utf8_async(proc, NULL, NULL, on_communicated, &c);
    gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    while (!c.done) {
        if (g_get_monotonic_time() > end) {
            g_printerr("%s: killed after %u ms\n", argv[0], timeout_ms);
            g_subprocess_force_exit(proc);
            end = G_MAXINT64;
        }
        if (!g_main_context_iteration(NULL, FALSE))
            g_usleep(1000);
    }
    g_assert_no_error(c.error);
    wait_for(proc, 5000);
    int status = g_subprocess_get_status(proc);
    if (out)
        *out = c.out;
    else
        g_free(c.out);
    if (err)
        *err = c.err;
    else
        g_free(c.err);
    g_object_unref(proc);
    return status;
}

int wbt_run_daemon(const char *const *args, char **out, char **err)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, (char *)env("WB_TEST_DAEMON"));
    for (int i = 0; args[i]; i++)
        g_ptr_array_add(argv, (char *)args[i]);
    g_ptr_array_add(argv, NULL);
    char *o = NULL, *e = NULL;
    int status = wbt_run((const char *const *)argv->pdata, 20000, &o, &e);
    g_autofree char *cmd = g_strjoinv(" ", (char **)argv->pdata);
    if (wbt_has_sanitizer_report(e))
        g_error("sanitizer report from %s:\n%s", cmd, e);
    if (WIFSIGNALED(status))
        g_error("%s died of signal %d:\n%s\n%s", cmd, WTERMSIG(status), o, e);
    if (!WIFEXITED(status))
        g_error("%s did not exit normally (wait status 0x%x):\n%s\n%s", cmd, (unsigned)status, o, e);
    if (out)
        *out = o;
    else
        g_free(o);
    if (err)
        *err = e;
    else
        g_free(e);
    return WEXITSTATUS(status);
}

guint wbt_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    g_assert_cmpint(bind(fd, (struct sockaddr *)&addr, sizeof addr), ==, 0);
    g_assert_cmpint(getsockname(fd, (struct sockaddr *)&addr, &len), ==, 0);
    close(fd);
    return ntohs(addr.sin_port);
}

/* ---- the daemon --------------------------------------------------------- */

WbtDaemon *wbt_daemon_spawn(const char *const *argv, const char *const *env)
{
    return wbt_daemon_spawn_flags(argv, env, G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
}

WbtDaemon *wbt_daemon_spawn_flags(const char *const *argv, const char *const *env, GSubprocessFlags flags)
{
    WbtDaemon *d = g_new0(WbtDaemon, 1);
    d->dir = wbt_tmpdir_new();
    d->stderr_path = g_build_filename(d->dir, "stderr.log", NULL);
    g_autoptr(GSubprocessLauncher) launcher = launcher_new(flags);
    g_subprocess_launcher_set_stderr_file_path(launcher, d->stderr_path);
    for (guint i = 0; env && env[i]; i++) {
        g_auto(GStrv) kv = g_strsplit(env[i], "=", 2);
        g_subprocess_launcher_setenv(launcher, kv[0], kv[1] ? kv[1] : "", TRUE);
    }
    GError *error = NULL;
    d->proc = g_subprocess_launcher_spawnv(launcher, argv, &error);
    g_assert_no_error(error);
    return d;
}

WbtDaemon *wbt_daemon_start(const char *confdir, const char *statedir, const char *const *extra_args)
{
    g_autofree char *data = g_build_filename(env("WB_TEST_SRCDIR"), "data", NULL);
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, (char *)env("WB_TEST_DAEMON"));
    g_ptr_array_add(argv, "--verbose");
    g_ptr_array_add(argv, "--config-dir");
    g_ptr_array_add(argv, (char *)confdir);
    g_ptr_array_add(argv, "--plugin-dir");
    g_ptr_array_add(argv, (char *)env("WB_TEST_PLUGIN_DIR"));
    g_ptr_array_add(argv, "--plugin-dir");
    g_ptr_array_add(argv, (char *)env("WB_PLUGIN_DIR"));
    g_ptr_array_add(argv, "--data-dir");
    g_ptr_array_add(argv, data);
    g_ptr_array_add(argv, "--state-dir");
    g_ptr_array_add(argv, (char *)statedir);
    for (guint i = 0; extra_args && extra_args[i]; i++)
        g_ptr_array_add(argv, (char *)extra_args[i]);
    g_ptr_array_add(argv, NULL);
    return wbt_daemon_spawn((const char *const *)argv->pdata, NULL);
}

WbtDaemon *wbt_scratch_daemon(WbtScratch *s)
{
    return wbt_daemon_start(s->confdir, s->statedir, NULL);
}

char *wbt_daemon_log(WbtDaemon *d)
{
    char *text = NULL;
    if (!g_file_get_contents(d->stderr_path, &text, NULL, NULL))
        return g_strdup("");
    return text;
}

char *wbt_daemon_wait_log(WbtDaemon *d, const char *regex, guint timeout_ms)
{
    g_autoptr(GRegex) re = g_regex_new(regex, G_REGEX_MULTILINE, 0, NULL);
    g_assert_nonnull(re);
    gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    do {
        g_autofree char *log = wbt_daemon_log(d);
        g_autoptr(GMatchInfo) info = NULL;
        if (g_regex_match(re, log, 0, &info)) {
            char *group = g_match_info_fetch(info, 1);
            if (group && *group)
                return group;
            g_free(group);
            return g_match_info_fetch(info, 0);
        }
        wbt_sleep(20);
    } while (g_get_monotonic_time() < end);
    return NULL;
}

void wbt_daemon_expect_log(WbtDaemon *d, const char *regex, guint timeout_ms)
{
    g_autofree char *found = wbt_daemon_wait_log(d, regex, timeout_ms);
    if (!found) {
        g_autofree char *log = wbt_daemon_log(d);
        g_error("no line matching \"%s\" within %u ms in the daemon's stderr:\n%s", regex, timeout_ms, log);
    }
}

guint wbt_daemon_count_log(WbtDaemon *d, const char *regex)
{
    g_autoptr(GRegex) re = g_regex_new(regex, G_REGEX_MULTILINE, 0, NULL);
    g_autofree char *log = wbt_daemon_log(d);
    g_autoptr(GMatchInfo) info = NULL;
    guint n = 0;
    g_regex_match(re, log, 0, &info);
    while (g_match_info_matches(info)) {
        n++;
        g_match_info_next(info, NULL);
    }
    return n;
}

void wbt_daemon_expect_log_count(WbtDaemon *d, const char *regex, guint count, guint timeout_ms)
{
    gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    guint n;
    for (;;) {
        n = wbt_daemon_count_log(d, regex);
        if (n >= count)
            return;
        if (g_get_monotonic_time() >= end)
            break;
        wbt_sleep(20);
    }
    g_autofree char *log = wbt_daemon_log(d);
    g_error("%u lines matching \"%s\" within %u ms, expected at least %u, in the daemon's stderr:\n%s", n, regex,
            timeout_ms, count, log);
}

/* The values the recorder plugin logged for @name, oldest first. */
static GPtrArray *point_values(WbtDaemon *d, const char *name)
{
    g_autofree char *escaped = g_regex_escape_string(name, -1);
    g_autofree char *pattern = g_strdup_printf("\\] point %s = (\"[^\"]*\"|\\S+)", escaped);
    g_autoptr(GRegex) re = g_regex_new(pattern, G_REGEX_MULTILINE, 0, NULL);
    g_autofree char *log = wbt_daemon_log(d);
    g_autoptr(GMatchInfo) info = NULL;
    GPtrArray *values = g_ptr_array_new_with_free_func(g_free);
    g_regex_match(re, log, 0, &info);
    while (g_match_info_matches(info)) {
        g_ptr_array_add(values, g_match_info_fetch(info, 1));
        g_match_info_next(info, NULL);
    }
    return values;
}

void wbt_daemon_expect_point_state(WbtDaemon *d, const char *name, const char *state, guint timeout_ms)
{
    g_autofree char *escaped = g_regex_escape_string(name, -1);
    g_autofree char *pattern = g_strdup_printf("\\] point %s = .*\\((\\w+)\\)$", escaped);
    g_autoptr(GRegex) re = g_regex_new(pattern, G_REGEX_MULTILINE, 0, NULL);
    gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    g_autofree char *last = NULL;
    do {
        g_autofree char *log = wbt_daemon_log(d);
        g_autoptr(GMatchInfo) info = NULL;
        g_regex_match(re, log, 0, &info);
        while (g_match_info_matches(info)) {
            g_free(last);
            last = g_match_info_fetch(info, 1);
            g_match_info_next(info, NULL);
        }
        if (last && strcmp(last, state) == 0)
            return;
        wbt_sleep(20);
    } while (g_get_monotonic_time() < end);
    g_error("point %s: expected %s, last seen %s", name, state, last ? last : "never");
}

char *wbt_daemon_last_point(WbtDaemon *d, const char *name)
{
    g_autoptr(GPtrArray) values = point_values(d, name);
    return values->len ? g_strdup(g_ptr_array_index(values, values->len - 1)) : NULL;
}

guint wbt_daemon_count_point(WbtDaemon *d, const char *name)
{
    g_autoptr(GPtrArray) values = point_values(d, name);
    return values->len;
}

void wbt_daemon_expect_point_count(WbtDaemon *d, const char *name, guint count, guint timeout_ms)
{
    gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    guint n;
    for (;;) {
        n = wbt_daemon_count_point(d, name);
        if (n >= count)
            return;
        if (g_get_monotonic_time() >= end)
            break;
        wbt_sleep(20);
    }
    g_error("point %s: logged %u times within %u ms, expected at least %u", name, n, timeout_ms, count);
}

void wbt_daemon_expect_point(WbtDaemon *d, const char *name, double expected, double tolerance, guint timeout_ms)
{
    gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    g_autofree char *last = NULL;
    do {
        g_free(last);
        last = wbt_daemon_last_point(d, name);
        if (last && *last != '"' && fabs(g_ascii_strtod(last, NULL) - expected) <= tolerance)
            return;
        wbt_sleep(20);
    } while (g_get_monotonic_time() < end);
    g_error("point %s: expected %.10g (+-%g), last seen %s", name, expected, tolerance, last ? last : "never");
}

void wbt_daemon_expect_point_text(WbtDaemon *d, const char *name, const char *expected, guint timeout_ms)
{
    g_autofree char *quoted = g_strdup_printf("\"%s\"", expected);
    gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    g_autofree char *last = NULL;
    do {
        g_free(last);
        last = wbt_daemon_last_point(d, name);
        if (last && strcmp(last, quoted) == 0)
            return;
        wbt_sleep(20);
    } while (g_get_monotonic_time() < end);
    g_error("point %s: expected %s, last seen %s", name, quoted, last ? last : "never");
}

gboolean wbt_has_sanitizer_report(const char *log)
{
    return strstr(log, "ERROR: AddressSanitizer") || strstr(log, "ERROR: LeakSanitizer") ||
           strstr(log, "runtime error:") || strstr(log, "SUMMARY: UndefinedBehaviorSanitizer");
}

int wbt_daemon_stop_status(WbtDaemon *d)
{
    return wbt_daemon_stop_status_log(d, NULL);
}

int wbt_daemon_stop_status_log(WbtDaemon *d, char **log)
{
    g_subprocess_send_signal(d->proc, SIGTERM);
    gboolean exited = wait_for(d->proc, 15000);
    int status = exited ? g_subprocess_get_status(d->proc) : -1;
    if (log)
        *log = wbt_daemon_log(d);
    g_object_unref(d->proc);
    wbt_tmpdir_free(d->dir);
    g_free(d->stderr_path);
    g_free(d);
    return status;
}

WbtDaemon *wbt_daemon_start_quiet(WbtScratch *s)
{
    g_autofree char *data = g_build_filename(env("WB_TEST_SRCDIR"), "data", NULL);
    const char *argv[] = {env("WB_TEST_DAEMON"), "--config-dir", s->confdir, "--plugin-dir", env("WB_TEST_PLUGIN_DIR"),
                          "--plugin-dir", env("WB_PLUGIN_DIR"), "--data-dir", data, "--state-dir", s->statedir, NULL};
    return wbt_daemon_spawn(argv, NULL);
}

double wbt_proc_status_kib(pid_t pid, const char *field)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/status", pid);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    const char *at = strstr(text, field);
    g_assert_nonnull(at);
    return g_ascii_strtod(at + strlen(field) + 1, NULL);
}

pid_t wbt_daemon_pid(WbtDaemon *d)
{
    return (pid_t)atoi(g_subprocess_get_identifier(d->proc));
}

double wbt_cpu_us(pid_t pid)
{
    g_autofree char *dir = g_strdup_printf("/proc/%d/task", pid);
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(d);
    double total = 0;
    const char *tid;
    while ((tid = g_dir_read_name(d))) {
        g_autofree char *path = g_strdup_printf("%s/%s/schedstat", dir, tid);
        g_autofree char *text = NULL;
        if (g_file_get_contents(path, &text, NULL, NULL))
            total += g_ascii_strtod(text, NULL) / 1000.0;
    }
    return total;
}

static int compare_doubles(gconstpointer a, gconstpointer b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double wbt_percentile(GArray *v, double p)
{
    g_assert_cmpuint(v->len, >, 0);
    g_array_sort(v, compare_doubles);
    guint i = (guint)ceil(p / 100.0 * v->len);
    return g_array_index(v, double, MIN(MAX(i, 1), v->len) - 1);
}

void wbt_daemon_stop(WbtDaemon *d)
{
    g_free(wbt_daemon_stop_log(d));
}

char *wbt_daemon_stop_log(WbtDaemon *d)
{
    g_subprocess_send_signal(d->proc, SIGTERM);
    gboolean exited = wait_for(d->proc, 15000);
    char *log = wbt_daemon_log(d);
    int status = exited ? g_subprocess_get_status(d->proc) : -1;
    gboolean failed = !exited || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || wbt_has_sanitizer_report(log);
    if (failed || g_getenv("WBT_SHOW_LOG"))
        g_printerr("---- daemon stderr ----\n%s\n----\n", log);
    if (failed) {
        if (!exited)
            g_error("the daemon did not stop within 15 s of SIGTERM");
        if (wbt_has_sanitizer_report(log))
            g_error("sanitizer report in the daemon's stderr");
        if (WIFSIGNALED(status))
            g_error("the daemon died of signal %d", WTERMSIG(status));
        g_error("the daemon exited with status %d", WEXITSTATUS(status));
    }
    g_object_unref(d->proc);
    wbt_tmpdir_free(d->dir);
    g_free(d->stderr_path);
    g_free(d);
    return log;
}

/* ---- D-Bus ------------------------------------------------------------------ */

static WbtDbus *dbus_spawn(const char *const *argv, char *dir)
{
    WbtDbus *bus = g_new0(WbtDbus, 1);
    bus->dir = dir;
    bus->proc = wbt_spawn(argv, G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_SILENCE);
    g_autoptr(GDataInputStream) in = g_data_input_stream_new(g_subprocess_get_stdout_pipe(bus->proc));
    GError *error = NULL;
    bus->address = g_data_input_stream_read_line(in, NULL, NULL, &error);
    g_assert_no_error(error);
    g_assert_nonnull(bus->address);
    g_strstrip(bus->address);
    return bus;
}

WbtDbus *wbt_dbus_start(void)
{
    const char *argv[] = {"dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1", NULL};
    return dbus_spawn(argv, NULL);
}

WbtDbus *wbt_dbus_start_tcp(void)
{
    char *dir = wbt_tmpdir_new();
    g_autofree char *conf = wbt_write(dir, "bus.conf",
        "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
        " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
        "<busconfig><type>session</type>\n"
        "<listen>tcp:host=127.0.0.1,bind=127.0.0.1,port=0</listen>\n"
        "<auth>ANONYMOUS</auth><allow_anonymous/>\n"
        "<policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/>"
        "<allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/></policy>\n"
        "</busconfig>\n");
    g_autofree char *config = g_strdup_printf("--config-file=%s", conf);
    const char *argv[] = {"dbus-daemon", config, "--nofork", "--nopidfile", "--print-address=1", NULL};
    return dbus_spawn(argv, dir);
}

void wbt_dbus_stop(WbtDbus *bus)
{
    if (!bus)
        return;
    g_subprocess_send_signal(bus->proc, SIGTERM);
    wait_for(bus->proc, 5000);
    g_object_unref(bus->proc);
    g_free(bus->address);
    if (bus->dir)
        wbt_tmpdir_free(bus->dir);
    g_free(bus);
}

char *wbt_gdbus_call(WbtDbus *bus, const char *dest, const char *path, const char *method, const char *const *args,
                     char **error_out)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    const char *fixed[] = {"gdbus", "call", "--address", bus->address, "--dest", dest, "--object-path", path,
                           "--method", method, "--timeout", "5", NULL};
    for (int i = 0; fixed[i]; i++)
        g_ptr_array_add(argv, (char *)fixed[i]);
    for (int i = 0; args && args[i]; i++)
        g_ptr_array_add(argv, (char *)args[i]);
    g_ptr_array_add(argv, NULL);
    char *out = NULL, *err = NULL;
    int status = wbt_run((const char *const *)argv->pdata, 10000, &out, &err);
    if (status != 0) {
        if (error_out)
            *error_out = g_strstrip(err);
        else
            g_free(err);
        g_free(out);
        return NULL;
    }
    g_free(err);
    return g_strstrip(out);
}

/* ---- mbpoll ------------------------------------------------------------- */

void wbt_read_free(WbtRead *r)
{
    if (!r)
        return;
    g_free(r->error);
    if (r->words)
        g_array_unref(r->words);
    g_free(r);
}

static void target_args(GPtrArray *argv, const char *target, char **owned)
{
    if (g_str_has_prefix(target, "tcp:")) {
        g_ptr_array_add(argv, "-m");
        g_ptr_array_add(argv, "tcp");
        g_ptr_array_add(argv, "-p");
        g_ptr_array_add(argv, (char *)target + 4);
        *owned = g_strdup("127.0.0.1");
    } else {
        g_assert_true(g_str_has_prefix(target, "rtu:"));
        const char *args[] = {"-m", "rtu", "-b", "9600", "-P", "none", "-d", "8", "-s", "1"};
        for (gsize i = 0; i < G_N_ELEMENTS(args); i++)
            g_ptr_array_add(argv, (char *)args[i]);
        *owned = g_strdup(target + 4);
    }
}

static char *failure_message(const char *out, const char *err)
{
    const char *text = strstr(err, "failed: ") ? err : strstr(out, "failed: ") ? out : NULL;
    if (!text)
        return NULL;
    const char *msg = strstr(text, "failed: ") + strlen("failed: ");
    const char *end = strchr(msg, '\n');
    return end ? g_strndup(msg, (gsize)(end - msg)) : g_strdup(msg);
}

WbtRead *wbt_mbpoll_read(const char *target, guint unit, guint fc, guint addr, guint count)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(NULL);
    g_autofree char *host = NULL;
    g_autofree char *a = g_strdup_printf("%u", unit);
    g_autofree char *r = g_strdup_printf("%u", addr);
    g_autofree char *c = g_strdup_printf("%u", count);
    g_ptr_array_add(argv, "mbpoll");
    target_args(argv, target, &host);
    g_ptr_array_add(argv, "-a");
    g_ptr_array_add(argv, a);
    g_ptr_array_add(argv, "-t");
    g_ptr_array_add(argv, fc == 4 ? "3:hex" : "4:hex");
    g_ptr_array_add(argv, "-0");
    g_ptr_array_add(argv, "-r");
    g_ptr_array_add(argv, r);
    g_ptr_array_add(argv, "-c");
    g_ptr_array_add(argv, c);
    g_ptr_array_add(argv, "-o");
    g_ptr_array_add(argv, "0.5");
    g_ptr_array_add(argv, "-1");
    g_ptr_array_add(argv, host);
    g_ptr_array_add(argv, NULL);

    g_autofree char *out = NULL, *err = NULL;
    wbt_run((const char *const *)argv->pdata, 10000, &out, &err);
    WbtRead *res = g_new0(WbtRead, 1);
    res->words = g_array_new(FALSE, FALSE, sizeof(guint16));
    res->error = failure_message(out, err);
    g_autoptr(GRegex) re = g_regex_new("^\\[(\\d+)\\]:\\s+0x([0-9A-Fa-f]{4})$", G_REGEX_MULTILINE, 0, NULL);
    g_autoptr(GMatchInfo) info = NULL;
    g_regex_match(re, out, 0, &info);
    while (g_match_info_matches(info)) {
        g_autofree char *hex = g_match_info_fetch(info, 2);
        guint16 w = (guint16)g_ascii_strtoull(hex, NULL, 16);
        g_array_append_val(res->words, w);
        g_match_info_next(info, NULL);
    }
    res->ok = !res->error && res->words->len == count;
    if (!res->ok && !res->error)
        res->error = g_strdup_printf("mbpoll read %u of %u registers:\n%s\n%s", res->words->len, count, out, err);
    return res;
}

char *wbt_mbpoll_write(const char *target, guint unit, guint addr, int value)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autofree char *host = NULL;
    g_autofree char *a = g_strdup_printf("%u", unit);
    g_autofree char *r = g_strdup_printf("%u", addr);
    g_autofree char *v = g_strdup_printf("%d", value);
    g_ptr_array_add(argv, "mbpoll");
    target_args(argv, target, &host);
    const char *args[] = {"-a", a, "-t", "4", "-0", "-r", r, "-o", "0.5", "-1", host, "--", v};
    for (gsize i = 0; i < G_N_ELEMENTS(args); i++)
        g_ptr_array_add(argv, (char *)args[i]);
    g_ptr_array_add(argv, NULL);
    g_autofree char *out = NULL, *err = NULL;
    wbt_run((const char *const *)argv->pdata, 10000, &out, &err);
    char *msg = failure_message(out, err);
    if (!msg && !strstr(out, "Written 1 references"))
        msg = g_strdup_printf("unexpected mbpoll output:\n%s\n%s", out, err);
    return msg;
}

void wbt_assert_words(const WbtRead *r, const guint16 *expected, guint n, const char *what)
{
    if (!r->ok)
        g_error("%s: read failed: %s", what, r->error);
    g_assert_cmpuint(r->words->len, ==, n);
    for (guint i = 0; i < n; i++) {
        guint16 got = g_array_index(r->words, guint16, i);
        if (got != expected[i]) {
            GString *s = g_string_new(NULL);
            for (guint j = 0; j < n; j++)
                g_string_append_printf(s, " %04X/%04X", g_array_index(r->words, guint16, j), expected[j]);
            g_error("%s: word %u is 0x%04X, expected 0x%04X (got/expected:%s)", what, i, got, expected[i], s->str);
        }
    }
}

void wbt_expect_words(const char *target, guint unit, guint fc, guint addr, const guint16 *expected, guint n,
                      const char *what)
{
    gint64 end = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    for (;;) {
        g_autoptr(WbtRead) r = wbt_mbpoll_read(target, unit, fc, addr, n);
        gboolean same = r->ok && r->words->len == n;
        for (guint i = 0; same && i < n; i++)
            same = g_array_index(r->words, guint16, i) == expected[i];
        if (same)
            return;
        if (g_get_monotonic_time() > end) {
            wbt_assert_words(r, expected, n, what);
            return;
        }
        wbt_sleep(50);
    }
}

void wbt_expect_failure(const char *target, guint unit, guint addr, const char *message, const char *what)
{
    gint64 end = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    for (;;) {
        g_autoptr(WbtRead) r = wbt_mbpoll_read(target, unit, 3, addr, 2);
        if (!r->ok && g_strcmp0(r->error, message) == 0)
            return;
        if (g_get_monotonic_time() > end)
            g_error("%s: expected \"%s\", got %s", what, message, r->ok ? "an answer" : r->error);
        wbt_sleep(50);
    }
}

char *wbt_daemon_tcp_target(WbtDaemon *d, const char *instance)
{
    g_autofree char *re = g_strdup_printf("\\[%s\\] serving Modbus TCP on 127\\.0\\.0\\.1:(\\d+)", instance);
    g_autofree char *port = wbt_daemon_wait_log(d, re, 15000);
    if (!port) {
        g_autofree char *log = wbt_daemon_log(d);
        g_error("[%s] never said it serves Modbus TCP:\n%s", instance, log);
    }
    return g_strdup_printf("tcp:%s", port);
}

/* ---- MQTT --------------------------------------------------------------- */

static gboolean port_open(guint port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((guint16)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    gboolean ok = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
    close(fd);
    return ok;
}

static WbtBroker *broker_start(guint port, const char *tls_conf)
{
    WbtBroker *b = g_new0(WbtBroker, 1);
    b->dir = wbt_tmpdir_new();
    b->port = port;
    /* "user": mosquitto started as root would switch to its own user, and a
     * change of credentials clears PR_SET_PDEATHSIG: the broker of a test
     * that aborts would outlive it */
    g_autofree char *conf = g_strdup_printf("listener %u 127.0.0.1\nallow_anonymous true\npersistence false\n"
                                            "user %s\n%s", port, g_get_user_name(), tls_conf ? tls_conf : "");
    g_autofree char *path = wbt_write(b->dir, "mosquitto.conf", conf);
    g_autofree char *log = g_build_filename(b->dir, "mosquitto.log", NULL);
    g_autoptr(GSubprocessLauncher) launcher = launcher_new(G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
    g_subprocess_launcher_set_stderr_file_path(launcher, log);
    GError *error = NULL;
    const char *argv[] = {"mosquitto", "-c", path, NULL};
    b->proc = g_subprocess_launcher_spawnv(launcher, argv, &error);
    g_assert_no_error(error);
    for (int i = 0; i < 150 && !port_open(b->port); i++)
        wbt_sleep(10);
    if (port_open(b->port))
        return b;
    wbt_broker_stop(b);
    return NULL;
}

WbtBroker *wbt_broker_start_on(guint port)
{
    return broker_start(port, NULL);
}

WbtBroker *wbt_broker_start_tls(const char *cafile, const char *certfile, const char *keyfile)
{
    g_autofree char *tls = g_strdup_printf("cafile %s\ncertfile %s\nkeyfile %s\n", cafile, certfile, keyfile);
    for (int attempt = 0; attempt < 5; attempt++) {
        WbtBroker *b = broker_start(wbt_free_port(), tls);
        if (b) {
            b->cafile = g_strdup(cafile);
            return b;
        }
    }
    g_error("could not start mosquitto with TLS");
    return NULL;
}

WbtBroker *wbt_broker_start(void)
{
    /* a free port may be taken between the check and mosquitto's bind */
    for (int attempt = 0; attempt < 5; attempt++) {
        WbtBroker *b = wbt_broker_start_on(wbt_free_port());
        if (b)
            return b;
    }
    g_error("could not start mosquitto");
    return NULL;
}

void wbt_broker_stop(WbtBroker *b)
{
    if (!b)
        return;
    g_subprocess_send_signal(b->proc, SIGTERM);
    wait_for(b->proc, 5000);
    g_object_unref(b->proc);
    wbt_tmpdir_free(b->dir);
    g_free(b->cafile);
    g_free(b);
}

void wbt_publish(WbtBroker *b, const char *topic, const char *payload, gboolean retain)
{
    g_autofree char *port = g_strdup_printf("%u", b->port);
    const char *plain[] = {"mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-t", topic, "-m", payload,
                           retain ? "-r" : NULL, NULL};
    const char *tls[] = {"mosquitto_pub", "-h", "localhost", "--cafile", b->cafile, "-p", port, "-t", topic,
                         "-m", payload, retain ? "-r" : NULL, NULL};
    const char *const *argv = b->cafile ? tls : plain;
    g_autofree char *err = NULL;
    int status = wbt_run(argv, 10000, NULL, &err);
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("mosquitto_pub failed: %s", err);
}

struct _WbtRepeater {
    WbtBroker *broker;
    char *topic;
    char *payload;
    guint source;
};

static void reaped(GObject *source, GAsyncResult *res, gpointer user_data)
{
    g_subprocess_wait_finish(G_SUBPROCESS(source), res, NULL);
    g_object_unref(source);
}

static gboolean repeat_tick(gpointer data)
{
    WbtRepeater *r = data;
    g_autofree char *port = g_strdup_printf("%u", r->broker->port);
    const char *argv[] = {"mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-t", r->topic, "-m", r->payload, NULL};
    g_autoptr(GSubprocessLauncher) launcher = launcher_new(G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_SILENCE);
    GSubprocess *proc = g_subprocess_launcher_spawnv(launcher, argv, NULL);
    if (proc)
        g_subprocess_wait_async(proc, NULL, reaped, NULL);
    return G_SOURCE_CONTINUE;
}

WbtRepeater *wbt_repeat(WbtBroker *b, const char *topic, const char *payload, guint interval_ms)
{
    WbtRepeater *r = g_new0(WbtRepeater, 1);
    r->broker = b;
    r->topic = g_strdup(topic);
    r->payload = g_strdup(payload);
    wbt_publish(b, topic, payload, FALSE);
    r->source = g_timeout_add(interval_ms, repeat_tick, r);
    return r;
}

void wbt_repeater_set_payload(WbtRepeater *r, const char *payload)
{
    g_free(r->payload);
    r->payload = g_strdup(payload);
    wbt_publish(r->broker, r->topic, payload, FALSE);
}

void wbt_repeater_stop(WbtRepeater *r)
{
    if (!r)
        return;
    g_source_remove(r->source);
    g_free(r->topic);
    g_free(r->payload);
    g_free(r);
    wbt_sleep(100); /* let the last mosquitto_pub be reaped */
}

/* ---- serial lines --------------------------------------------------------- */

WbtPty *wbt_pty_start(const char *dir, const char *name)
{
    WbtPty *p = g_new0(WbtPty, 1);
    p->a = g_strdup_printf("%s/%s-a", dir, name);
    p->b = g_strdup_printf("%s/%s-b", dir, name);
    g_autofree char *ea = g_strdup_printf("pty,raw,echo=0,link=%s", p->a);
    g_autofree char *eb = g_strdup_printf("pty,raw,echo=0,link=%s", p->b);
    const char *argv[] = {"socat", ea, eb, NULL};
    GError *error = NULL;
    g_autoptr(GSubprocessLauncher) launcher = launcher_new(G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_SILENCE);
    p->proc = g_subprocess_launcher_spawnv(launcher, argv, &error);
    g_assert_no_error(error);
    for (int i = 0; i < 300; i++) {
        if (g_file_test(p->a, G_FILE_TEST_EXISTS) && g_file_test(p->b, G_FILE_TEST_EXISTS))
            return p;
        wbt_sleep(10);
    }
    g_error("socat did not create %s and %s", p->a, p->b);
    return NULL;
}

void wbt_pty_stop(WbtPty *p)
{
    if (!p)
        return;
    g_subprocess_send_signal(p->proc, SIGTERM);
    wait_for(p->proc, 5000);
    g_object_unref(p->proc);
    g_free(p->a);
    g_free(p->b);
    g_free(p);
}

static int open_raw(const char *path)
{
    int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        g_error("%s: %s", path, g_strerror(errno));
    struct termios t;
    g_assert_cmpint(tcgetattr(fd, &t), ==, 0);
    cfmakeraw(&t);
    cfsetspeed(&t, B9600);
    g_assert_cmpint(tcsetattr(fd, TCSANOW, &t), ==, 0);
    tcflush(fd, TCIOFLUSH);
    return fd;
}

void wbt_rtu_send(const char *path, const guint8 *bytes, gsize len)
{
    int fd = open_raw(path);
    g_assert_cmpint(write(fd, bytes, len), ==, (gssize)len);
    tcdrain(fd);
    close(fd);
}

GBytes *wbt_rtu_exchange(const char *path, const guint8 *request, gsize len, guint timeout_ms)
{
    int fd = open_raw(path);
    g_assert_cmpint(write(fd, request, len), ==, (gssize)len);
    GByteArray *reply = g_byte_array_new();
    gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    /* a reply ends when the line stays quiet for 50 ms (far more than
     * 3.5 characters at any baud rate) */
    for (;;) {
        gint64 left = end - g_get_monotonic_time();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int wait_ms = reply->len ? 50 : (int)(left / 1000);
        if (poll(&p, 1, wait_ms) <= 0)
            break;
        guint8 buf[256];
        gssize n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        g_byte_array_append(reply, buf, (guint)n);
    }
    close(fd);
    return g_byte_array_free_to_bytes(reply);
}

/* ---- the HTTP device simulator ----------------------------------------------------- */

static char *http_device_read(WbtHttpDevice *h)
{
    GError *error = NULL;
    char *line = g_data_input_stream_read_line(h->out, NULL, NULL, &error);
    g_assert_no_error(error);
    if (!line) {
        g_autofree char *log = wbt_daemon_log(h->proc);
        g_error("http-device ended:\n%s", log);
    }
    return line;
}

WbtHttpDevice *wbt_http_device_start(const char *first_arg, ...)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new();
    va_list ap;
    va_start(ap, first_arg);
    for (const char *a = first_arg; a; a = va_arg(ap, const char *))
        g_ptr_array_add(args, (char *)a);
    va_end(ap);
    g_ptr_array_add(args, NULL);
    return wbt_http_device_startv((const char *const *)args->pdata);
}

WbtHttpDevice *wbt_http_device_startv(const char *const *args)
{
    g_autofree char *tool = g_build_filename(wbt_env("WB_TEST_BUILDDIR"), "tests", "http-device", NULL);
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, tool);
    for (guint i = 0; args[i]; i++)
        g_ptr_array_add(argv, (char *)args[i]);
    g_ptr_array_add(argv, NULL);
    WbtHttpDevice *h = g_new0(WbtHttpDevice, 1);
    /* The simulator is not under test, and libsoup 3.2's server leaks the
     * sockets of connections its clients closed (fixed upstream in commit
     * d20c6601, "Don't leak idle connections closed by the client", after
     * 3.2.2; see wingtk/gvsbuild#849): AddressSanitizer stays on for it,
     * LeakSanitizer off.  The daemon keeps the full set. */
    const char *asan = g_getenv("ASAN_OPTIONS");
    g_autofree char *env = g_strdup_printf("ASAN_OPTIONS=%s%sdetect_leaks=0", asan ? asan : "", asan ? ":" : "");
    const char *const envv[] = {env, NULL};
    h->proc = wbt_daemon_spawn_flags((const char *const *)argv->pdata, envv,
                                     G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE);
    h->out = g_data_input_stream_new(g_subprocess_get_stdout_pipe(h->proc->proc));
    g_autofree char *ready = http_device_read(h);
    g_assert_true(g_str_has_prefix(ready, "ready "));
    h->port = (guint)atoi(ready + 6);
    h->url = g_strdup_printf("http://127.0.0.1:%u", h->port);
    return h;
}

void wbt_http_device_command(WbtHttpDevice *h, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    g_autofree char *command = g_strdup_vprintf(format, ap);
    va_end(ap);
    g_autofree char *line = g_strdup_printf("%s\n", command);
    GError *error = NULL;
    g_output_stream_write_all(g_subprocess_get_stdin_pipe(h->proc->proc), line, strlen(line), NULL, NULL, &error);
    g_assert_no_error(error);
    g_autofree char *answer = http_device_read(h);
    if (strcmp(answer, "ok") != 0)
        g_error("http-device: \"%s\": %s", command, answer);
}

void wbt_http_device_stop(WbtHttpDevice *h)
{
    g_object_unref(h->out);
    wbt_daemon_stop(h->proc);
    g_free(h->url);
    g_free(h);
}

void wbt_http_expect_failure(WbtDaemon *d, WbtHttpDevice *h, const char *instance, const char *mode,
                             const char *reason, const char *point)
{
    g_autofree char *connected = g_strdup_printf("%s/connected", instance);
    wbt_http_device_command(h, "mode %s", mode);
    g_autofree char *re = g_strdup_printf("\\[%s\\] http://127.0.0.1:%u: %s.*next try in", instance, h->port, reason);
    wbt_daemon_expect_log(d, re, 5000);
    wbt_daemon_expect_point(d, connected, 0, 0, 1000);
    wbt_daemon_expect_point_state(d, point, "stale", 3000);
    /* several failed polls later, still one line for it */
    wbt_sleep(1200);
    if (wbt_daemon_count_log(d, re) != 1) {
        g_autofree char *log = wbt_daemon_log(d);
        g_error("\"%s\" logged %u times, expected once:\n%s", reason, wbt_daemon_count_log(d, re), log);
    }
    wbt_http_device_command(h, "mode ok");
    wbt_daemon_expect_point_state(d, point, "valid", 5000);
    wbt_daemon_expect_point(d, connected, 1, 0, 1000);
}
