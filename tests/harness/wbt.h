/* Test harness for integration tests: temporary directories, the real
 * daemon, and the independent programs the tests talk to it with (mbpoll,
 * mosquitto, mosquitto_pub, socat).
 *
 * Every daemon a test starts is stopped with SIGTERM by wbt_daemon_stop(),
 * which fails the test on a non-zero exit, a timeout, or a sanitizer report
 * on the daemon's stderr. */
#pragma once

#include <glib.h>
#include <gio/gio.h>

G_BEGIN_DECLS

/* ---- temporary directories ------------------------------------------- */

/* A fresh directory, removed recursively by wbt_tmpdir_free(). */
/* The environment variable meson test sets (WB_TEST_DAEMON, ...); fails
 * the test when it is not set. */
const char *wbt_env(const char *name);
char *wbt_tmpdir_new(void);
void wbt_tmpdir_free(char *dir);
/* Writes @text to @dir/@name (creating parent directories); returns the path. */
char *wbt_write(const char *dir, const char *name, const char *text);

/* A scratch tree for one test: @dir (removed with it), its conf.d and its
 * state directory. */
typedef struct {
    char *dir;
    char *confdir;
    char *statedir;
} WbtScratch;

WbtScratch *wbt_scratch_new(void);
void wbt_scratch_free(WbtScratch *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(WbtScratch, wbt_scratch_free)
/* Writes a file (printf-style) into the scratch dir; returns its path. */
char *wbt_scratch_write(WbtScratch *s, const char *name, const char *format, ...) G_GNUC_PRINTF(3, 4);
/* Writes a drop-in (printf-style) into the scratch conf.d; returns its path. */
char *wbt_scratch_conf(WbtScratch *s, const char *name, const char *format, ...) G_GNUC_PRINTF(3, 4);

/* ---- the daemon --------------------------------------------------------- */

typedef struct {
    GSubprocess *proc;
    char *stderr_path;
    char *dir;
} WbtDaemon;

/* Starts build/host/wattbridge --verbose with @confdir, the build's plugin
 * directory, the source data directory and @statedir, plus @extra_args
 * (NULL-terminated, may be NULL). */
WbtDaemon *wbt_daemon_start(const char *confdir, const char *statedir, const char *const *extra_args);
/* Starts @argv (a wattbridge binary and its arguments) with @env (NAME=VALUE
 * strings added to the environment, NULL-terminated, may be NULL), stderr
 * to a file; stop it with wbt_daemon_stop() like any other. */
WbtDaemon *wbt_daemon_spawn(const char *const *argv, const char *const *env);
/* The same with the subprocess flags for its stdin and stdout. */
WbtDaemon *wbt_daemon_spawn_flags(const char *const *argv, const char *const *env, GSubprocessFlags flags);
/* Waits up to @timeout_ms for a stderr line matching @regex (from the start
 * of the log); returns the first capture group (or the whole match), or
 * NULL after the timeout. */
char *wbt_daemon_wait_log(WbtDaemon *d, const char *regex, guint timeout_ms);
/* Asserts that a line matching @regex appears within @timeout_ms.  It
 * searches the whole log: when an earlier line may match already, use
 * wbt_daemon_expect_log_count() with the count before the action plus one. */
void wbt_daemon_expect_log(WbtDaemon *d, const char *regex, guint timeout_ms);
/* Like wbt_daemon_wait_log() but counts the matches so far. */
guint wbt_daemon_count_log(WbtDaemon *d, const char *regex);
/* Waits up to @timeout_ms until the log holds at least @count matches of
 * @regex; fails the test with the log otherwise. */
void wbt_daemon_expect_log_count(WbtDaemon *d, const char *regex, guint count, guint timeout_ms);
/* The daemon's stderr so far. */
char *wbt_daemon_log(WbtDaemon *d);
/* wbt_daemon_start() on the scratch tree's conf.d and state directory. */
WbtDaemon *wbt_scratch_daemon(WbtScratch *s);
/* Points logged by the test plugin "recorder" ("point NAME = VALUE ..."):
 * the last value logged for the full point name @name (text values keep
 * their quotes), or NULL; how many were logged; and waits of up to
 * @timeout_ms for the last one to be @expected (within @tolerance), or the
 * text @expected, failing the test otherwise. */
char *wbt_daemon_last_point(WbtDaemon *d, const char *name);
guint wbt_daemon_count_point(WbtDaemon *d, const char *name);
/* Waits up to @timeout_ms until the recorder logged @name at least @count
 * times; fails the test otherwise. */
void wbt_daemon_expect_point_count(WbtDaemon *d, const char *name, guint count, guint timeout_ms);
void wbt_daemon_expect_point(WbtDaemon *d, const char *name, double expected, double tolerance, guint timeout_ms);
/* Waits until the recorder's last line for @name says @state ("valid",
 * "invalid", "stale"). */
void wbt_daemon_expect_point_state(WbtDaemon *d, const char *name, const char *state, guint timeout_ms);
void wbt_daemon_expect_point_text(WbtDaemon *d, const char *name, const char *expected, guint timeout_ms);
/* SIGTERM, wait up to 15 s; asserts exit status 0 and no sanitizer report. */
void wbt_daemon_stop(WbtDaemon *d);
/* The same, returning the daemon's whole stderr (what it logged while
 * stopping included). */
char *wbt_daemon_stop_log(WbtDaemon *d);
/* For a test that expects the daemon to fail: SIGTERM and return its wait
 * status (-1 when it did not exit within 15 s and was killed). */
int wbt_daemon_stop_status(WbtDaemon *d);
/* The same, also returning the daemon's whole stderr in @log (sanitizer
 * reports included); asserts nothing. */
int wbt_daemon_stop_status_log(WbtDaemon *d, char **log);
/* TRUE when @log contains an AddressSanitizer/LeakSanitizer/UBSan report. */
gboolean wbt_has_sanitizer_report(const char *log);

/* ---- processes ---------------------------------------------------------- */

/* Runs @argv to completion (at most @timeout_ms, then killed); returns its
 * exit status and stdout/stderr. */
int wbt_run(const char *const *argv, guint timeout_ms, char **out, char **err);
/* Runs the daemon binary (WB_TEST_DAEMON) with @args (NULL-terminated, not
 * counting the binary) to completion, at most 20 s; fails the test on a
 * sanitizer report in its stderr or when it did not exit normally (a
 * signal, an abort); returns its exit code and stdout/stderr. */
int wbt_run_daemon(const char *const *args, char **out, char **err);
/* Spawns @argv like the harness's other children: it dies with the test. */
GSubprocess *wbt_spawn(const char *const *argv, GSubprocessFlags flags);
/* Iterates the default main context for @ms milliseconds. */
void wbt_sleep(guint ms);
/* The daemon's process id. */
pid_t wbt_daemon_pid(WbtDaemon *d);
/* The daemon on @s without --verbose (for benchmarks: logging costs too). */
WbtDaemon *wbt_daemon_start_quiet(WbtScratch *s);
/* A "VmRSS:"-style field of /proc/@pid/status, in KiB. */
double wbt_proc_status_kib(pid_t pid, const char *field);
/* CPU time of every thread of @pid so far, microseconds (the scheduler's
 * nanosecond count in /proc/PID/task/TID/schedstat, not the 10 ms clock
 * ticks of /proc/PID/stat). */
double wbt_cpu_us(pid_t pid);
/* The @p-th percentile (0..100, nearest rank) of @v's doubles; sorts @v. */
double wbt_percentile(GArray *v, double p);
/* A TCP port that was free on 127.0.0.1 a moment ago. */
guint wbt_free_port(void);

/* ---- mbpoll ------------------------------------------------------------- */

typedef struct {
    gboolean ok;
    char *error;       /* mbpoll's failure message ("Illegal data address") */
    GArray *words;     /* guint16: the registers read */
} WbtRead;

void wbt_read_free(WbtRead *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(WbtRead, wbt_read_free)

/* mbpoll -1 -0 -t 4:hex (or 3:hex with @fc == 4) -r @addr -c @count -a @unit
 * against @target: "tcp:PORT" (127.0.0.1) or "rtu:/dev/..." (9600 8N1). */
WbtRead *wbt_mbpoll_read(const char *target, guint unit, guint fc, guint addr, guint count);
/* mbpoll write of @value (a 16-bit register) at @addr; returns NULL on
 * success or mbpoll's failure message. */
char *wbt_mbpoll_write(const char *target, guint unit, guint addr, int value);
/* Asserts that @r holds exactly @n words equal to @expected. */
void wbt_assert_words(const WbtRead *r, const guint16 *expected, guint n, const char *what);
/* Reads (unit @unit, function @fc: 3 or 4) until the words equal
 * @expected, for up to 5 s: a value takes a moment to travel from a source
 * to the image. */
void wbt_expect_words(const char *target, guint unit, guint fc, guint addr, const guint16 *expected, guint n,
                      const char *what);
/* Reads until mbpoll fails with @message ("Connection timed out",
 * "Slave device or server failure"), for up to 5 s. */
void wbt_expect_failure(const char *target, guint unit, guint addr, const char *message, const char *what);
/* "tcp:PORT" of the Modbus TCP server @instance logged it listens on. */
char *wbt_daemon_tcp_target(WbtDaemon *d, const char *instance);

/* ---- MQTT --------------------------------------------------------------- */

typedef struct {
    GSubprocess *proc;
    guint port;
    char *dir;
    char *cafile;      /* TLS: clients trust this CA and connect to "localhost" */
} WbtBroker;

/* A mosquitto broker on 127.0.0.1 at a free port, anonymous access. */
WbtBroker *wbt_broker_start(void);
/* The same on @port; NULL when the port cannot be had. */
WbtBroker *wbt_broker_start_on(guint port);
/* A broker whose listener speaks TLS with @certfile/@keyfile (for the name
 * localhost); wbt_publish() then trusts @cafile. */
WbtBroker *wbt_broker_start_tls(const char *cafile, const char *certfile, const char *keyfile);
void wbt_broker_stop(WbtBroker *b);
/* mosquitto_pub -h 127.0.0.1 -p PORT -t @topic -m @payload [-r] */
void wbt_publish(WbtBroker *b, const char *topic, const char *payload, gboolean retain);

/* Publishes @payload to @topic every @interval_ms, as a device would, while
 * the test iterates the default main context (wbt_sleep, mbpoll reads). */
typedef struct _WbtRepeater WbtRepeater;
WbtRepeater *wbt_repeat(WbtBroker *b, const char *topic, const char *payload, guint interval_ms);
void wbt_repeater_set_payload(WbtRepeater *r, const char *payload);
void wbt_repeater_stop(WbtRepeater *r);

/* ---- D-Bus ------------------------------------------------------------------ */

/* A private bus: dbus-daemon --session on a socket of its own. */
typedef struct {
    GSubprocess *proc;
    char *address;
    char *dir; /* the configuration of a TCP bus */
} WbtDbus;

WbtDbus *wbt_dbus_start(void);
/* A bus on TCP 127.0.0.1 (a free port) with ANONYMOUS authentication, as
 * Venus OS offers its system bus on port 78 (system-insecure.conf). */
WbtDbus *wbt_dbus_start_tcp(void);
void wbt_dbus_stop(WbtDbus *bus);
/* gdbus call --address ... --dest @dest --object-path @path --method
 * @method [@args...]: its output (GVariant text, e.g. "(<1500.0>,)"), or
 * NULL when it fails (the error in @error_out when given). */
char *wbt_gdbus_call(WbtDbus *bus, const char *dest, const char *path, const char *method, const char *const *args,
                     char **error_out);

/* ---- serial lines --------------------------------------------------------- */

typedef struct {
    GSubprocess *proc;
    char *a;           /* one end, for the daemon */
    char *b;           /* the other, for the master */
} WbtPty;

/* Sends the raw RTU frame @request (CRC included) on the serial device
 * @path and returns the bytes that come back within @timeout_ms (empty when
 * nothing answers).  No Modbus library is involved. */
GBytes *wbt_rtu_exchange(const char *path, const guint8 *request, gsize len, guint timeout_ms);
/* Writes @len raw bytes to @path (line noise). */
void wbt_rtu_send(const char *path, const guint8 *bytes, gsize len);

/* socat pty,raw,echo=0,link=@dir/NAME-a pty,raw,echo=0,link=@dir/NAME-b */
WbtPty *wbt_pty_start(const char *dir, const char *name);
void wbt_pty_stop(WbtPty *p);

/* ---- the HTTP device simulator (tests/tools/http-device.c) ---------------- */

typedef struct {
    WbtDaemon *proc;       /* its stderr is the request log: wbt_daemon_wait_log() */
    GDataInputStream *out;
    guint port;
    char *url;             /* "http://127.0.0.1:<port>" */
} WbtHttpDevice;

/* Starts http-device with the given arguments (NULL-terminated) and waits
 * until it listens. */
WbtHttpDevice *wbt_http_device_start(const char *first_arg, ...) G_GNUC_NULL_TERMINATED;
/* The same with the arguments as a NULL-terminated array. */
WbtHttpDevice *wbt_http_device_startv(const char *const *args);
/* Sends one stdin command (printf-style) and fails the test unless it
 * answers "ok". */
void wbt_http_device_command(WbtHttpDevice *h, const char *format, ...) G_GNUC_PRINTF(2, 3);
/* SIGTERM; fails the test on a non-zero exit or a sanitizer report. */
void wbt_http_device_stop(WbtHttpDevice *h);
/* The HTTP plugins' failure rules, for one failure: puts @h in @mode
 * ("garbage", "stall 1500", ...), then expects "[@instance] <url>: @reason"
 * (a regex) logged, @instance/connected 0 and @point stale; after 1.2 s
 * of failed polls the reason is still logged once; "mode ok" brings @point
 * back valid and connected to 1. */
void wbt_http_expect_failure(WbtDaemon *d, WbtHttpDevice *h, const char *instance, const char *mode,
                             const char *reason, const char *point);

G_END_DECLS
