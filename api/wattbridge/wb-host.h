/* wattbridge plugin ABI: host services exported by libwattbridge.
 *
 * Thread rules:
 *  1. The host calls every op and every callback on its main context (the
 *     GLib default main context).
 *  2. Nothing a plugin runs there may block: use GIO or libsoup asynchronous
 *     APIs, fd watches (wb_watch_new()), or the host-owned Modbus engine.
 *  3. A plugin may start its own threads; from them it may call only
 *     wb_log(), wb_log_ratelimited() and wb_instance_invoke().  Everything
 *     else is main-context only.
 *  4. No global mutable state in a plugin: one plugin serves several
 *     instances, so everything hangs off the instance's state.
 *  5. Host-owned threads (Modbus ports and servers) never call plugin code;
 *     they hand results to the main context.
 *
 * Ownership: strings a getter returns belong to the host and stay valid as
 * long as the object they came from; handles the host hands out (timers,
 * watches, subscriptions, servers) belong to the instance and are freed by
 * the host when the instance stops, if the plugin has not freed them first.
 */
#pragma once

#include <glib.h>

#include <wattbridge/wb-types.h>

G_BEGIN_DECLS

/* ---- ABI ------------------------------------------------------------- */

/**
 * wb_abi_version:
 * @minor: (out) (optional): the host's ABI minor
 *
 * Returns: the ABI major of the running libwattbridge.  Any thread.
 */
guint wb_abi_version(guint *minor);

/* ---- Logging --------------------------------------------------------- */

/**
 * wb_log:
 * @instance: (nullable): the instance the message is about, or %NULL
 * @level: a WbLogLevel
 * @format: printf-style format
 *
 * Logs through GLib's structured logging with the instance name as the
 * field WATTBRIDGE_INSTANCE (the journal shows it; on a terminal the message
 * is prefixed with "[instance]").  Never pass a secret option's value.
 * Any thread.
 */
void wb_log(WbInstance *instance, WbLogLevel level, const char *format, ...)
    G_GNUC_PRINTF(3, 4);

/**
 * wb_log_ratelimited:
 * @instance: (nullable): the instance the message is about
 * @level: a WbLogLevel
 * @key: what makes two messages "the same", e.g. "parse:energy/solar"
 * @format: printf-style format
 *
 * Like wb_log(), but a message with the same @instance and @key is logged
 * at most once per 60 seconds; the next one logged says how many were
 * suppressed in between.  For bad input that may repeat every second.
 * Any thread.
 */
void wb_log_ratelimited(WbInstance *instance, WbLogLevel level, const char *key,
                        const char *format, ...) G_GNUC_PRINTF(4, 5);

/* ---- Instances -------------------------------------------------------- */

/**
 * wb_instance_get_name:
 * @instance: an instance
 *
 * Returns: (transfer none): the instance name (its conf.d section), which
 * prefixes every point the instance publishes.  Main context or any thread.
 */
const char *wb_instance_get_name(WbInstance *instance);

/**
 * wb_instance_get_config:
 * @instance: an instance
 *
 * Returns: (transfer none): the instance's validated options.
 */
const WbConfig *wb_instance_get_config(WbInstance *instance);

/**
 * wb_instance_state_dir:
 * @instance: an instance
 * @error: return location for an error
 *
 * The directory for the instance's small persistent state (counters kept
 * across restarts), <state-dir>/<instance>, created with mode 0750 on first
 * use.  Write files there atomically (g_file_set_contents()).
 *
 * Returns: (transfer none) (nullable): the path, or %NULL with @error set
 * (WB_PLUGIN_ERROR_IO) when it cannot be created.  Main context.
 */
const char *wb_instance_state_dir(WbInstance *instance, GError **error);

/**
 * wb_instance_find_data_file:
 * @instance: an instance
 * @name: a path relative to the data directories ("traces/pv-day.csv"), or
 *   an absolute path
 * @error: return location for an error
 *
 * Looks @name up in the data directories (--data-dir, WATTBRIDGE_DATA_PATH,
 * then the installed data directory), first match wins.
 *
 * Returns: (transfer full) (nullable): the path of an existing file, or
 * %NULL with @error set (G_FILE_ERROR_NOENT) naming the places searched.
 * Main context.
 */
char *wb_instance_find_data_file(WbInstance *instance, const char *name, GError **error);

/**
 * wb_instance_invoke:
 * @instance: an instance
 * @func: the function to run on the main context
 * @data: its argument
 * @destroy: (nullable): frees @data afterwards, also when @func never runs
 *
 * Hands work from a plugin thread to the main context.  @func runs once, on
 * the main context, only while the instance is started (between start()
 * and stop()); otherwise it is dropped.  @destroy runs in every case, and
 * may run after the instance's stop() and destroy(), so it must free only
 * @data, never touch the plugin's state.  Any thread.
 */
void wb_instance_invoke(WbInstance *instance, GSourceFunc func, gpointer data,
                        GDestroyNotify destroy);

/* ---- Options ---------------------------------------------------------- */

/**
 * wb_config_get_string:
 * @config: validated options
 * @key: a declared STRING, ENUM, POINT or DURATION key, or a family member
 *
 * Returns: (transfer none) (nullable): the value as written (or the
 * default), %NULL when the key is absent and has no default.
 */
const char *wb_config_get_string(const WbConfig *config, const char *key);

/**
 * wb_config_get_int:
 * Returns: the value of an INT key (range-checked by the host), or 0 when
 * absent without a default.
 */
gint64 wb_config_get_int(const WbConfig *config, const char *key);

/**
 * wb_config_get_double:
 * Returns: the value of a DOUBLE key, or 0.0 when absent without a default.
 */
double wb_config_get_double(const WbConfig *config, const char *key);

/**
 * wb_config_get_bool:
 * Returns: the value of a BOOL key, or %FALSE when absent without a default.
 */
gboolean wb_config_get_bool(const WbConfig *config, const char *key);

/**
 * wb_config_get_duration:
 * Returns: the value of a DURATION key in microseconds (GLib's time unit),
 * or 0 when absent without a default.
 */
gint64 wb_config_get_duration(const WbConfig *config, const char *key);

/**
 * wb_config_get_enum:
 * Returns: the index in the spec's values of an ENUM key's value, or -1
 * when absent without a default.
 */
int wb_config_get_enum(const WbConfig *config, const char *key);

/**
 * wb_config_get_list:
 * Returns: (transfer none) (array zero-terminated=1): the items of a LIST
 * key, trimmed, empty ones dropped; an empty array when absent.
 */
const char *const *wb_config_get_list(const WbConfig *config, const char *key);

/**
 * wb_config_has_key:
 * Returns: %TRUE when @key was written in the configuration file (not
 * merely defaulted).
 */
gboolean wb_config_has_key(const WbConfig *config, const char *key);

/**
 * wb_config_get_family:
 * @config: validated options
 * @prefix: a declared family prefix, e.g. "point."
 *
 * Returns: (transfer none) (array zero-terminated=1): the full keys of the
 * family's members in the order they appear in the file, e.g.
 * {"point.power", "point.voltage-l1", NULL}; read each with the getter of
 * the family's type.
 */
const char *const *wb_config_get_family(const WbConfig *config, const char *prefix);

/**
 * wb_config_set_error:
 * @config: validated options
 * @error: return location for an error, or %NULL
 * @key: (nullable): the key the problem is about, or %NULL for the section
 * @format: printf-style description of what was expected
 *
 * Sets @error (WB_PLUGIN_ERROR_INVALID_CONFIG) to a message naming the
 * file, the line, the section and the key, for checks a plugin makes in
 * create() ("either device or port is required").
 */
void wb_config_set_error(const WbConfig *config, GError **error, const char *key,
                         const char *format, ...) G_GNUC_PRINTF(4, 5);

/* ---- Points ----------------------------------------------------------- */

/**
 * wb_batch_new:
 * @instance: the publishing instance
 *
 * Starts a batch: the points of one device message or one poll cycle.
 * Subscribers receive a batch's points, then one batch-end call, so a sink
 * commits a consistent image once.  The measurement time is "now" unless
 * set with wb_batch_set_time().
 *
 * Returns: (transfer full): a batch; pass it to wb_batch_commit() or
 * wb_batch_discard().  Main context.
 */
WbBatch *wb_batch_new(WbInstance *instance);

/**
 * wb_batch_set_time:
 * @batch: a batch
 * @real_time_us: when the values were measured, in g_get_real_time() units
 *
 * Staleness is judged from this time: a sample that is already old arrives
 * closer to its max-age.
 */
void wb_batch_set_time(WbBatch *batch, gint64 real_time_us);

/**
 * wb_batch_add_double:
 * @batch: a batch
 * @name: the point name without the instance prefix ("l1/voltage"), levels
 *   of [A-Za-z0-9_.-] separated by '/'; the last level should be a quantity
 *   from quantities.h
 * @value: the value in the quantity's unit; NaN or infinity publishes the
 *   point as invalid
 * @unit: (nullable): the unit, %NULL for the quantity's unit
 */
void wb_batch_add_double(WbBatch *batch, const char *name, double value, const char *unit);

/**
 * wb_batch_add_string:
 * @batch: a batch
 * @name: the point name without the instance prefix
 * @value: UTF-8 text (a serial, a product name, a status); copied
 */
void wb_batch_add_string(WbBatch *batch, const char *name, const char *value);

/**
 * wb_batch_add_invalid:
 * @batch: a batch
 * @name: the point name without the instance prefix
 *
 * Publishes the point as invalid: the source says there is no value (an
 * inverter asleep, a failure message).  The last value is kept for
 * inspection but must not be presented as a measurement.
 */
void wb_batch_add_invalid(WbBatch *batch, const char *name);

/**
 * wb_batch_commit:
 * @batch: (transfer full): a batch
 *
 * Publishes the batch: stores every point under "<instance>/<name>", calls
 * each matching subscription's point callback, then its batch-end callback.
 * Subscribers run before this returns.  Frees @batch.  Main context.
 */
void wb_batch_commit(WbBatch *batch);

/**
 * wb_batch_discard:
 * @batch: (transfer full): a batch; publishes nothing and frees it
 */
void wb_batch_discard(WbBatch *batch);

/**
 * WbPointFunc:
 * @point: the point; valid only during the call
 * @state: the point's state as this subscription sees it: the publisher's
 *   valid or invalid, or WB_POINT_STALE after the subscription's max-age
 * @user_data: the subscription's user data
 */
typedef void (*WbPointFunc)(const WbPoint *point, WbPointState state, gpointer user_data);

/**
 * WbBatchEndFunc: called once after the points of a batch (or of a
 * staleness check) that matched the subscription.
 */
typedef void (*WbBatchEndFunc)(gpointer user_data);

/**
 * wb_subscribe:
 * @instance: the subscribing instance, which owns the subscription
 * @pattern: a full point name, or a pattern with MQTT-style wildcards: '+'
 *   matches one level, '#' (last level only) any number of levels
 * @max_age_us: how old a point may get before this subscription sees it
 *   as WB_POINT_STALE (judged from its measurement time); 0: never stale
 * @point_func: called for every matching point of a batch, and when a
 *   matching point's state changes to stale
 * @batch_end_func: (nullable): called after each such group of calls
 * @user_data: passed to both
 *
 * Points that already exist are delivered as one batch from an idle
 * callback shortly after this returns, never from inside it.
 *
 * Returns: (transfer none): the subscription; freed with
 * wb_subscription_free() or when the instance stops.  Main context.
 */
WbSubscription *wb_subscribe(WbInstance *instance, const char *pattern, gint64 max_age_us,
                             WbPointFunc point_func, WbBatchEndFunc batch_end_func,
                             gpointer user_data);

/**
 * wb_subscription_add_pattern:
 * @subscription: a subscription
 * @pattern: another point name or pattern
 *
 * Widens the subscription: a point matching any of its patterns is
 * delivered once per batch, and the batch-end call comes once per batch
 * however many patterns matched.  A sink wired to many points uses one
 * subscription so that it commits one consistent image per batch.  Points
 * that already exist are delivered from an idle callback.  Main context.
 */
void wb_subscription_add_pattern(WbSubscription *subscription, const char *pattern);

/** wb_subscription_free: ends a subscription; no callback follows. */
void wb_subscription_free(WbSubscription *subscription);

/**
 * wb_point_name_is_valid:
 * @name: a point name or pattern
 * @allow_wildcards: accept '+' levels and a final '#' level
 *
 * Returns: %TRUE when @name is non-empty levels of [A-Za-z0-9_.-] separated
 * by '/' (with @allow_wildcards, also a subscription pattern).  Any thread.
 */
gboolean wb_point_name_is_valid(const char *name, gboolean allow_wildcards);

/** wb_point_get_name: Returns: (transfer none): the full name, "pv/l1/voltage". */
const char *wb_point_get_name(const WbPoint *point);

/**
 * wb_point_get_state:
 * Returns: the publisher's state: WB_POINT_VALID or WB_POINT_INVALID.
 * Staleness is per subscription; see WbPointFunc.
 */
WbPointState wb_point_get_state(const WbPoint *point);

/** wb_point_is_string: Returns: %TRUE for a text point. */
gboolean wb_point_is_string(const WbPoint *point);

/**
 * wb_point_get_double:
 * Returns: the last value published (also while invalid, for inspection),
 * or NaN for a text point or one that never had a value.
 */
double wb_point_get_double(const WbPoint *point);

/** wb_point_get_string: Returns: (transfer none) (nullable): a text point's value. */
const char *wb_point_get_string(const WbPoint *point);

/** wb_point_get_unit: Returns: (transfer none): the unit, "" when none. */
const char *wb_point_get_unit(const WbPoint *point);

/**
 * wb_point_get_time:
 * Returns: the measurement time in g_get_real_time() units.
 */
gint64 wb_point_get_time(const WbPoint *point);

/**
 * wb_point_get_age:
 * Returns: microseconds since the measurement time (monotonic clock).
 */
gint64 wb_point_get_age(const WbPoint *point);

/* ---- Timers and fd watches ------------------------------------------- */

typedef void (*WbTimerFunc)(gpointer user_data);

/**
 * wb_timer_new:
 * @instance: the owning instance
 * @func: called on the main context when the timer fires
 * @user_data: its argument
 *
 * Returns: (transfer none): a stopped timer; start it with
 * wb_timer_start().  Freed with wb_timer_free() or when the instance stops.
 */
WbTimer *wb_timer_new(WbInstance *instance, WbTimerFunc func, gpointer user_data);

/**
 * wb_timer_start:
 * @timer: a timer
 * @interval_ms: milliseconds until it fires
 * @repeat: fire every @interval_ms until stopped, or only once
 *
 * (Re)starts the timer; a running timer is restarted from now.
 */
void wb_timer_start(WbTimer *timer, guint interval_ms, gboolean repeat);

/** wb_timer_stop: stops the timer; it can be started again. */
void wb_timer_stop(WbTimer *timer);

/** wb_timer_is_running: Returns: %TRUE when the timer will fire. */
gboolean wb_timer_is_running(WbTimer *timer);

/** wb_timer_free: stops and frees the timer (also allowed from its callback). */
void wb_timer_free(WbTimer *timer);

/**
 * WbWatchFunc:
 * @fd: the watched descriptor
 * @condition: what happened (G_IO_IN, G_IO_OUT, G_IO_HUP, G_IO_ERR)
 * @user_data: the watch's user data
 */
typedef void (*WbWatchFunc)(int fd, GIOCondition condition, gpointer user_data);

/**
 * wb_watch_new:
 * @instance: the owning instance
 * @fd: a file descriptor the plugin owns (the watch never closes it)
 * @condition: what to wait for, e.g. G_IO_IN
 * @func: called on the main context when @condition (or HUP/ERR) occurs
 * @user_data: its argument
 *
 * Returns: (transfer none): the watch; freed with wb_watch_free() or when
 * the instance stops.
 */
WbWatch *wb_watch_new(WbInstance *instance, int fd, GIOCondition condition, WbWatchFunc func,
                      gpointer user_data);

/** wb_watch_set_condition: changes what the watch waits for (e.g. adds G_IO_OUT). */
void wb_watch_set_condition(WbWatch *watch, GIOCondition condition);

/** wb_watch_free: removes the watch (also allowed from its callback). */
void wb_watch_free(WbWatch *watch);

G_END_DECLS
