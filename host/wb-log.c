/* Logging: GLib structured logging with the instance as a field. */
#include "wb-private.h"

#include <stdio.h>
#include <unistd.h>

#define RATELIMIT_INTERVAL_US (60 * G_USEC_PER_SEC)

static gboolean log_verbose;

typedef struct {
    gint64 last;
    guint suppressed;
} RateState;

static GMutex ratelimit_lock;
static GHashTable *ratelimit_table; /* "instance\x1fkey" -> RateState */

/* syslog priorities, as the journal expects them in PRIORITY. */
static const char *const level_priority[] = {"3", "4", "5", "6", "7"};
static const char *const level_name[] = {"error", "warning", "notice", "info", "debug"};

static GLogLevelFlags glib_level(WbLogLevel level)
{
    /* Operational messages never use GLib's WARNING/CRITICAL levels: those
     * mean programming errors and may be made fatal (G_DEBUG). */
    switch (level) {
    case WB_LOG_INFO:
        return G_LOG_LEVEL_INFO;
    case WB_LOG_DEBUG:
        return G_LOG_LEVEL_DEBUG;
    default:
        return G_LOG_LEVEL_MESSAGE;
    }
}

static const char *field_value(const GLogField *fields, gsize n_fields, const char *key)
{
    for (gsize i = 0; i < n_fields; i++)
        if (g_strcmp0(fields[i].key, key) == 0)
            return fields[i].length < 0 ? fields[i].value : NULL;
    return NULL;
}

static GLogWriterOutput writer(GLogLevelFlags log_level, const GLogField *fields, gsize n_fields,
                               gpointer user_data)
{
    const char *priority = field_value(fields, n_fields, "PRIORITY");
    int prio = priority ? atoi(priority) : 6;

    if (!log_verbose && prio >= 6 && !(log_level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR)))
        return G_LOG_WRITER_HANDLED;

    if (g_log_writer_is_journald(fileno(stderr)))
        if (g_log_writer_journald(log_level, fields, n_fields, user_data) == G_LOG_WRITER_HANDLED)
            return G_LOG_WRITER_HANDLED;

    const char *message = field_value(fields, n_fields, "MESSAGE");
    const char *instance = field_value(fields, n_fields, "WATTBRIDGE_INSTANCE");
    const char *name;
    if (log_level & G_LOG_LEVEL_ERROR)
        name = "fatal";
    else if (log_level & G_LOG_LEVEL_CRITICAL)
        name = "critical";
    else if (log_level & G_LOG_LEVEL_WARNING)
        name = "warning";
    else
        name = prio >= 3 && prio <= 7 ? level_name[prio - 3] : "info";

    g_autoptr(GDateTime) now = g_date_time_new_now_local();
    g_autofree char *stamp = g_date_time_format(now, "%H:%M:%S");
    GString *line = g_string_new(NULL);
    g_string_append_printf(line, "%s.%03d %s: ", stamp, g_date_time_get_microsecond(now) / 1000, name);
    if (instance)
        g_string_append_printf(line, "[%s] ", instance);
    g_string_append(line, message ? message : "(no message)");
    g_string_append_c(line, '\n');
    fputs(line->str, stderr);
    fflush(stderr);
    g_string_free(line, TRUE);
    return G_LOG_WRITER_HANDLED;
}

void wb_log_setup(gboolean verbose)
{
    log_verbose = verbose;
    g_log_set_writer_func(writer, NULL, NULL);
}

static void log_message(WbInstance *instance, WbLogLevel level, const char *message)
{
    if ((guint)level > WB_LOG_DEBUG)
        level = WB_LOG_DEBUG;
    GLogField fields[] = {
        {"GLIB_DOMAIN", "wattbridge", -1},
        {"PRIORITY", level_priority[level], -1},
        {"MESSAGE", message, -1},
        {"WATTBRIDGE_INSTANCE", instance ? wb_instance_get_name(instance) : NULL, -1},
    };
    g_log_structured_array(glib_level(level), fields, instance ? G_N_ELEMENTS(fields) : G_N_ELEMENTS(fields) - 1);
}

/* What the writer drops anyway: skip the formatting. */
static gboolean dropped(WbLogLevel level)
{
    return !log_verbose && (level == WB_LOG_INFO || level == WB_LOG_DEBUG);
}

void wb_log(WbInstance *instance, WbLogLevel level, const char *format, ...)
{
    if (dropped(level))
        return;
    va_list args;
    va_start(args, format);
    g_autofree char *message = g_strdup_vprintf(format, args);
    va_end(args);
    log_message(instance, level, message);
}

void wb_log_ratelimited(WbInstance *instance, WbLogLevel level, const char *key, const char *format,
                        ...)
{
    if (dropped(level))
        return;
    g_autofree char *id = g_strdup_printf("%s\x1f%s", instance ? wb_instance_get_name(instance) : "", key);
    gint64 now = g_get_monotonic_time();
    guint suppressed = 0;
    gboolean emit = FALSE;

    g_mutex_lock(&ratelimit_lock);
    if (!ratelimit_table)
        ratelimit_table = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    RateState *st = g_hash_table_lookup(ratelimit_table, id);
    if (!st && g_hash_table_size(ratelimit_table) >= 256) {
        /* keys can come from outside (MQTT topics): forget quiet ones
         * (a pending count is only ever shown if its key comes back), and
         * all of them if that is not enough: the table stays bounded */
        GHashTableIter iter;
        gpointer value;
        g_hash_table_iter_init(&iter, ratelimit_table);
        while (g_hash_table_iter_next(&iter, NULL, &value))
            if (now - ((RateState *)value)->last >= RATELIMIT_INTERVAL_US)
                g_hash_table_iter_remove(&iter);
        if (g_hash_table_size(ratelimit_table) >= 256)
            g_hash_table_remove_all(ratelimit_table);
    }
    if (!st) {
        st = g_new0(RateState, 1);
        g_hash_table_insert(ratelimit_table, g_strdup(id), st);
        emit = TRUE;
    } else if (now - st->last >= RATELIMIT_INTERVAL_US) {
        emit = TRUE;
    }
    if (emit) {
        suppressed = st->suppressed;
        st->suppressed = 0;
        st->last = now;
    } else {
        st->suppressed++;
    }
    g_mutex_unlock(&ratelimit_lock);

    if (!emit)
        return;
    va_list args;
    va_start(args, format);
    g_autofree char *message = g_strdup_vprintf(format, args);
    va_end(args);
    if (suppressed) {
        g_autofree char *full = g_strdup_printf("%s (%u similar messages suppressed)", message, suppressed);
        log_message(instance, level, full);
    } else {
        log_message(instance, level, message);
    }
}
