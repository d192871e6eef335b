/* replay: publishes points from a CSV trace (source).
 *
 * The trace's first column is the time of day (HH:MM:SS or seconds since
 * midnight); every other column is a point, named by its header relative to
 * the instance ("pv/l1/voltage").  One row is one batch.  An empty cell
 * publishes the point as invalid (an inverter asleep at night).  The trace
 * plays at "speed" times real time from "start-at" and loops; columns
 * declared "cumulative" (energy counters) continue across loops: each loop
 * adds the trace's increase (its last value minus its first, which is the
 * last value for a trace that starts at 0).
 *
 * The file (plain or .gz) is read on a thread of the plugin's own, so
 * starting never blocks the main loop; the thread hands the parsed trace to
 * the main context with wb_instance_invoke(). */
#include <wattbridge/plugin.h>

#include <gio/gio.h>
#include <math.h>

typedef struct {
    GPtrArray *columns;  /* char*: point names */
    GArray *times;       /* double: seconds since midnight, increasing */
    GArray *values;      /* double: rows x columns, NaN = empty */
    double step;         /* smallest time between rows */
} Trace;

typedef struct {
    WbInstance *inst;
    char *path;
    char **cumulative;
    double speed;
    double start_at;
    gboolean loop;

    GThread *loader;
    gint cancel;
    Trace *trace;
    double *first;       /* per column: first and last non-empty value */
    double *last;
    gboolean *is_cumulative;
    gint64 t0;
    gint64 last_loop;
    gssize last_row;
    gboolean ended;
    WbTimer *timer;
} Replay;

static const WbOptionSpec options[] = {
    {.name = "trace", .type = WB_OPTION_STRING, .default_value = "traces/pv-3phase-day.csv.gz",
     .help = "The CSV trace (plain or gzip), relative to the data directories or absolute"},
    {.name = "speed", .type = WB_OPTION_DOUBLE, .default_value = "1", .min = 0.001, .max = 100000,
     .help = "Playback speed: 10 plays ten trace seconds per second"},
    {.name = "start-at", .type = WB_OPTION_STRING, .default_value = "00:00",
     .help = "Time of day in the trace to start from, HH:MM[:SS], or \"now\" for the current local time"},
    {.name = "loop", .type = WB_OPTION_BOOL, .default_value = "true",
     .help = "Start again at the trace's first row after its last; false stops publishing"},
    {.name = "cumulative", .type = WB_OPTION_LIST,
     .help = "Columns that are counters (e.g. pv/energy-import); they continue across loops"},
    {NULL},
};

static void trace_free(gpointer data)
{
    Trace *t = data;
    if (!t)
        return;
    g_ptr_array_unref(t->columns);
    g_array_unref(t->times);
    g_array_unref(t->values);
    g_free(t);
}

/* "HH:MM[:SS[.fff]]" or plain seconds. */
static gboolean parse_time_of_day(const char *text, double *out)
{
    char *end = NULL;
    if (!strchr(text, ':')) {
        double v = g_ascii_strtod(text, &end);
        if (end == text || *end || !isfinite(v) || v < 0)
            return FALSE;
        *out = v;
        return TRUE;
    }
    g_auto(GStrv) parts = g_strsplit(text, ":", 3);
    guint n = g_strv_length(parts);
    if (n < 2)
        return FALSE;
    double v[3] = {0, 0, 0};
    for (guint i = 0; i < n; i++) {
        v[i] = g_ascii_strtod(parts[i], &end);
        if (end == parts[i] || *end || v[i] < 0)
            return FALSE;
    }
    if (v[0] > 24 || v[1] >= 60 || v[2] >= 60)
        return FALSE;
    *out = v[0] * 3600 + v[1] * 60 + v[2];
    return TRUE;
}

static GInputStream *open_trace(const char *path, GError **error)
{
    g_autoptr(GFile) file = g_file_new_for_path(path);
    GInputStream *in = G_INPUT_STREAM(g_file_read(file, NULL, error));
    if (!in || !g_str_has_suffix(path, ".gz"))
        return in;
    g_autoptr(GZlibDecompressor) gz = g_zlib_decompressor_new(G_ZLIB_COMPRESSOR_FORMAT_GZIP);
    GInputStream *conv = g_converter_input_stream_new(in, G_CONVERTER(gz));
    g_object_unref(in);
    return conv;
}

/* Parses the trace; runs on the loader thread (touches nothing shared). */
static Trace *trace_load(const char *path, gint *cancel, GError **error)
{
    g_autoptr(GInputStream) raw = open_trace(path, error);
    if (!raw)
        return NULL;
    g_autoptr(GDataInputStream) in = g_data_input_stream_new(raw);
    g_data_input_stream_set_newline_type(in, G_DATA_STREAM_NEWLINE_TYPE_ANY);
    Trace *t = g_new0(Trace, 1);
    t->columns = g_ptr_array_new_with_free_func(g_free);
    t->times = g_array_new(FALSE, FALSE, sizeof(double));
    t->values = g_array_new(FALSE, FALSE, sizeof(double));
    t->step = G_MAXDOUBLE;

    guint lineno = 0;
    gboolean header = FALSE;
    for (;;) {
        if (g_atomic_int_get(cancel)) {
            g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "cancelled");
            trace_free(t);
            return NULL;
        }
        gsize len = 0;
        g_autoptr(GError) rerr = NULL;
        g_autofree char *line = g_data_input_stream_read_line_utf8(in, &len, NULL, &rerr);
        if (rerr) {
            g_set_error(error, G_IO_ERROR, rerr->code, "%s:%u: %s", path, lineno + 1, rerr->message);
            trace_free(t);
            return NULL;
        }
        if (!line)
            break;
        lineno++;
        g_strstrip(line);
        if (!*line || *line == '#')
            continue;
        g_auto(GStrv) cells = g_strsplit(line, ",", -1);
        guint n = g_strv_length(cells);
        if (!header) {
            if (n < 2 || strcmp(g_strstrip(cells[0]), "time") != 0) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "%s:%u: expected a header \"time,<point>,...\"", path, lineno);
                trace_free(t);
                return NULL;
            }
            for (guint i = 1; i < n; i++) {
                g_strstrip(cells[i]);
                if (!wb_point_name_is_valid(cells[i], FALSE)) {
                    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                "%s:%u: column %u: \"%s\" is not a point name", path, lineno, i + 1, cells[i]);
                    trace_free(t);
                    return NULL;
                }
                g_ptr_array_add(t->columns, g_strdup(cells[i]));
            }
            header = TRUE;
            continue;
        }
        double time;
        if (n != t->columns->len + 1 || !parse_time_of_day(g_strstrip(cells[0]), &time)) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "%s:%u: expected a time and %u values", path, lineno, t->columns->len);
            trace_free(t);
            return NULL;
        }
        if (t->times->len) {
            double prev = g_array_index(t->times, double, t->times->len - 1);
            if (time <= prev) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s:%u: times must increase", path,
                            lineno);
                trace_free(t);
                return NULL;
            }
            t->step = MIN(t->step, time - prev);
        }
        g_array_append_val(t->times, time);
        for (guint i = 1; i < n; i++) {
            char *cell = g_strstrip(cells[i]);
            double v = NAN;
            if (*cell) {
                char *end = NULL;
                double d = g_ascii_strtod(cell, &end);
                if (end == cell || *end || !isfinite(d)) {
                    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s:%u: column %u: \"%s\" is not a number",
                                path, lineno, i + 1, cell);
                    trace_free(t);
                    return NULL;
                }
                v = d;
            }
            g_array_append_val(t->values, v);
        }
    }
    if (!t->times->len) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: no rows", path);
        trace_free(t);
        return NULL;
    }
    if (t->step == G_MAXDOUBLE)
        t->step = 1;
    return t;
}

/* ---- playback (main context) ------------------------------------------- */

static double duration(const Replay *r)
{
    const Trace *t = r->trace;
    return g_array_index(t->times, double, t->times->len - 1) - g_array_index(t->times, double, 0) + t->step;
}

static void publish_row(Replay *r, gsize row, gint64 loop)
{
    const Trace *t = r->trace;
    guint ncol = t->columns->len;
    WbBatch *batch = wb_batch_new(r->inst);
    for (guint c = 0; c < ncol; c++) {
        const char *name = g_ptr_array_index(t->columns, c);
        double v = g_array_index(t->values, double, row * ncol + c);
        if (isnan(v)) {
            wb_batch_add_invalid(batch, name);
            continue;
        }
        double value = v;
        if (r->is_cumulative[c])
            value += (double)loop * (r->last[c] - r->first[c]);
        wb_batch_add_double(batch, name, value, NULL);
    }
    wb_batch_commit(batch);
}

static void tick(gpointer user_data)
{
    Replay *r = user_data;
    const Trace *t = r->trace;
    double first = g_array_index(t->times, double, 0);
    double elapsed = (double)(g_get_monotonic_time() - r->t0) / 1e6 * r->speed;
    /* a start-at before the trace's first row starts at that row */
    double pos = MAX(r->start_at - first, 0.0) + elapsed;
    double len = duration(r);
    gint64 loop = (gint64)floor(pos / len);
    pos = first + (pos - (double)loop * len);
    if (loop > 0 && !r->loop) {
        if (!r->ended)
            wb_log(r->inst, WB_LOG_NOTICE, "end of the trace reached (loop = false); no more points");
        r->ended = TRUE;
        wb_timer_stop(r->timer);
        return;
    }
    /* the last row at or before pos */
    gsize lo = 0, hi = t->times->len;
    while (hi - lo > 1) {
        gsize mid = (lo + hi) / 2;
        if (g_array_index(t->times, double, mid) <= pos)
            lo = mid;
        else
            hi = mid;
    }
    if ((gssize)lo == r->last_row && loop == r->last_loop)
        return;
    r->last_row = (gssize)lo;
    r->last_loop = loop;
    publish_row(r, lo, loop);
}

static gboolean trace_ready(gpointer data)
{
    Replay *r = data;
    const Trace *t = r->trace;
    guint ncol = t->columns->len;
    r->first = g_new(double, ncol);
    r->last = g_new(double, ncol);
    r->is_cumulative = g_new0(gboolean, ncol);
    for (guint c = 0; c < ncol; c++) {
        const char *name = g_ptr_array_index(t->columns, c);
        r->is_cumulative[c] = g_strv_contains((const char *const *)r->cumulative, name);
        r->first[c] = r->last[c] = 0;
        gboolean found = FALSE;
        for (guint row = 0; row < t->times->len; row++) {
            double v = g_array_index(t->values, double, row * ncol + c);
            if (isnan(v))
                continue;
            if (!found)
                r->first[c] = v;
            r->last[c] = v;
            found = TRUE;
        }
    }
    for (char **name = r->cumulative; *name; name++) {
        gboolean known = FALSE;
        for (guint c = 0; c < ncol; c++)
            known |= strcmp(g_ptr_array_index(t->columns, c), *name) == 0;
        if (!known)
            wb_log(r->inst, WB_LOG_WARNING, "cumulative: the trace has no column \"%s\"", *name);
    }
    wb_log(r->inst, WB_LOG_NOTICE, "replaying %s: %u rows of %u points from %02d:%02d:%02d at x%g%s", r->path,
           t->times->len, ncol, (int)(r->start_at / 3600), (int)fmod(r->start_at / 60, 60), (int)fmod(r->start_at, 60),
           r->speed, r->loop ? ", looping" : "");
    r->t0 = g_get_monotonic_time();
    r->last_row = -1;
    r->last_loop = -1;
    tick(r);
    double interval_ms = t->step / r->speed * 1000.0;
    wb_timer_start(r->timer, (guint)CLAMP(interval_ms, 10.0, 1000.0), TRUE);
    return G_SOURCE_REMOVE;
}

typedef struct {
    Replay *r;
    Trace *trace;
    char *error;
} Loaded;

static gboolean loaded_dispatch(gpointer data)
{
    Loaded *l = data;
    if (l->error) {
        wb_log(l->r->inst, WB_LOG_ERROR, "%s; nothing will be published", l->error);
        return G_SOURCE_REMOVE;
    }
    l->r->trace = g_steal_pointer(&l->trace);
    return trace_ready(l->r);
}

static void loaded_free(gpointer data)
{
    Loaded *l = data;
    trace_free(l->trace);
    g_free(l->error);
    g_free(l);
}

static gpointer loader_thread(gpointer data)
{
    Replay *r = data;
    g_autoptr(GError) error = NULL;
    Loaded *l = g_new0(Loaded, 1);
    l->r = r;
    l->trace = trace_load(r->path, &r->cancel, &error);
    if (!l->trace)
        l->error = g_strdup(error->message);
    /* the only host calls allowed from a plugin thread: log and invoke */
    wb_instance_invoke(r->inst, loaded_dispatch, l, loaded_free);
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

static gboolean replay_create(WbInstance *instance, const WbConfig *config, gpointer *state, GError **error)
{
    const char *start = wb_config_get_string(config, "start-at");
    double start_at = 0;
    if (strcmp(start, "now") == 0) {
        g_autoptr(GDateTime) now = g_date_time_new_now_local();
        start_at = g_date_time_get_hour(now) * 3600 + g_date_time_get_minute(now) * 60 + g_date_time_get_second(now);
    } else if (!parse_time_of_day(start, &start_at) || !strchr(start, ':')) {
        wb_config_set_error(config, error, "start-at", "expected HH:MM, HH:MM:SS or now, got \"%s\"", start);
        return FALSE;
    }
    g_autofree char *path = wb_instance_find_data_file(instance, wb_config_get_string(config, "trace"), error);
    if (!path) {
        g_autoptr(GError) inner = g_steal_pointer(error);
        wb_config_set_error(config, error, "trace", "%s", inner->message);
        return FALSE;
    }
    Replay *r = g_new0(Replay, 1);
    r->inst = instance;
    r->path = g_steal_pointer(&path);
    r->cumulative = g_strdupv((char **)wb_config_get_list(config, "cumulative"));
    r->speed = wb_config_get_double(config, "speed");
    r->start_at = start_at;
    r->loop = wb_config_get_bool(config, "loop");
    *state = r;
    return TRUE;
}

static gboolean replay_start(gpointer state, GError **error)
{
    Replay *r = state;
    r->timer = wb_timer_new(r->inst, tick, r);
    g_atomic_int_set(&r->cancel, 0);
    r->loader = g_thread_new("wb-replay-load", loader_thread, r);
    return TRUE;
}

static void replay_stop(gpointer state)
{
    Replay *r = state;
    if (r->loader) {
        g_atomic_int_set(&r->cancel, 1);
        g_thread_join(r->loader);
        r->loader = NULL;
    }
    wb_timer_free(r->timer);
    r->timer = NULL;
}

static void replay_destroy(gpointer state)
{
    Replay *r = state;
    trace_free(r->trace);
    g_free(r->first);
    g_free(r->last);
    g_free(r->is_cumulative);
    g_strfreev(r->cumulative);
    g_free(r->path);
    g_free(r);
}

static const WbPluginOps ops = {
    .struct_size = sizeof(WbPluginOps),
    .create = replay_create,
    .start = replay_start,
    .stop = replay_stop,
    .destroy = replay_destroy,
};

WB_PLUGIN_DEFINE("replay", WB_VERSION, "Publishes points from a CSV trace at a chosen speed, looping",
                 "GPL-3.0-or-later", WB_ROLE_SOURCE, options, &ops)
