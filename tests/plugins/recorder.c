/* A test sink: logs every point matching "pattern" as it arrives, one line
 * each, so a test can wait for values in the daemon's log:
 *   point <name> = <value> [<unit>] (<state>)
 *   point <name> = "<text>" (<state>)
 * and with show-age, after each: age <name> = <seconds since its measurement time> s */
#include <wattbridge/plugin.h>

#include <math.h>

typedef struct {
    WbInstance *instance;
    const WbConfig *config;
} Recorder;

static const WbOptionSpec options[] = {
    {.name = "pattern", .type = WB_OPTION_POINT, .default_value = "#", .help = "What to record."},
    {.name = "max-age", .type = WB_OPTION_DURATION, .default_value = "0", .min = 0, .max = 3600, .unit = "s",
     .help = "Report points older than this as stale (0: never)."},
    {.name = "show-age", .type = WB_OPTION_BOOL, .default_value = "false",
     .help = "Also log each point's age (from its measurement time)."},
    {NULL},
};

static void on_point(const WbPoint *point, WbPointState state, gpointer user_data)
{
    Recorder *r = user_data;
    static const char *const states[] = {"valid", "invalid", "stale"};
    if (wb_point_is_string(point))
        wb_log(r->instance, WB_LOG_NOTICE, "point %s = \"%s\" (%s)", wb_point_get_name(point),
               wb_point_get_string(point) ? wb_point_get_string(point) : "", states[state]);
    else
        wb_log(r->instance, WB_LOG_NOTICE, "point %s = %.10g%s%s (%s)", wb_point_get_name(point),
               wb_point_get_double(point), *wb_point_get_unit(point) ? " " : "", wb_point_get_unit(point),
               states[state]);
    if (wb_config_get_bool(r->config, "show-age"))
        wb_log(r->instance, WB_LOG_NOTICE, "age %s = %.3f s", wb_point_get_name(point),
               (double)wb_point_get_age(point) / G_USEC_PER_SEC);
}

static gboolean recorder_create(WbInstance *instance, const WbConfig *config, gpointer *state, GError **error)
{
    Recorder *r = g_new0(Recorder, 1);
    r->instance = instance;
    r->config = config;
    *state = r;
    return TRUE;
}

static gboolean recorder_start(gpointer state, GError **error)
{
    Recorder *r = state;
    wb_subscribe(r->instance, wb_config_get_string(r->config, "pattern"),
                 wb_config_get_duration(r->config, "max-age"), on_point, NULL, r);
    return TRUE;
}

static void recorder_stop(gpointer state)
{
}

static void recorder_destroy(gpointer state)
{
    g_free(state);
}

static const WbPluginOps ops = {
    .struct_size = sizeof(WbPluginOps),
    .create = recorder_create,
    .start = recorder_start,
    .stop = recorder_stop,
    .destroy = recorder_destroy,
};

WB_PLUGIN_DEFINE("recorder", "1.0", "Logs the points it sees (tests)", "GPL-3.0-or-later", WB_ROLE_SINK, options,
                 &ops)
