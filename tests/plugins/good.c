/* A well-formed test plugin: declares an option of every type, a family and
 * a required key; publishes its "point.<name> = <value>" options once when
 * started and again every "interval". */
#include <wattbridge/plugin.h>

typedef struct {
    WbInstance *instance;
    const WbConfig *config;
    WbTimer *timer;
} Good;

static const char *const modes[] = {"fast", "slow", NULL};

static const WbOptionSpec options[] = {
    {.name = "name", .type = WB_OPTION_STRING, .flags = WB_OPTION_REQUIRED, .help = "Any text."},
    {.name = "count", .type = WB_OPTION_INT, .default_value = "3", .min = 1, .max = 10, .help = "An integer."},
    {.name = "ratio", .type = WB_OPTION_DOUBLE, .default_value = "0.5", .min = 0, .max = 1, .help = "A number."},
    {.name = "flag", .type = WB_OPTION_BOOL, .default_value = "false", .help = "A boolean."},
    {.name = "interval", .type = WB_OPTION_DURATION, .default_value = "1s", .min = 0.01, .max = 3600,
     .unit = "s", .help = "How often the points are published again."},
    {.name = "mode", .type = WB_OPTION_ENUM, .default_value = "fast", .values = modes, .help = "An enum."},
    {.name = "items", .type = WB_OPTION_LIST, .help = "A list."},
    {.name = "watch", .type = WB_OPTION_POINT, .help = "A point pattern."},
    {.name = "password", .type = WB_OPTION_STRING, .flags = WB_OPTION_SECRET, .help = "A secret."},
    {.name = "point.", .type = WB_OPTION_DOUBLE, .flags = WB_OPTION_FAMILY,
     .help = "Publishes the point <name> with this value."},
    {NULL},
};

static void publish(gpointer user_data)
{
    Good *g = user_data;
    WbBatch *batch = wb_batch_new(g->instance);
    for (const char *const *key = wb_config_get_family(g->config, "point."); *key; key++)
        wb_batch_add_double(batch, *key + strlen("point."), wb_config_get_double(g->config, *key), NULL);
    wb_batch_commit(batch);
}

static gboolean good_create(WbInstance *instance, const WbConfig *config, gpointer *state, GError **error)
{
    if (wb_config_get_bool(config, "flag") && !wb_config_has_key(config, "watch")) {
        wb_config_set_error(config, error, "flag", "flag = true needs 'watch'");
        return FALSE;
    }
    for (const char *const *key = wb_config_get_family(config, "point."); *key; key++) {
        if (!wb_point_name_is_valid(*key + strlen("point."), FALSE)) {
            wb_config_set_error(config, error, *key, "not a point name");
            return FALSE;
        }
    }
    Good *g = g_new0(Good, 1);
    g->instance = instance;
    g->config = config;
    *state = g;
    return TRUE;
}

static gboolean good_start(gpointer state, GError **error)
{
    Good *g = state;
    publish(g);
    g->timer = wb_timer_new(g->instance, publish, g);
    wb_timer_start(g->timer, (guint)(wb_config_get_duration(g->config, "interval") / 1000), TRUE);
    return TRUE;
}

static void good_stop(gpointer state)
{
    Good *g = state;
    wb_timer_free(g->timer);
    g->timer = NULL;
}

static void good_destroy(gpointer state)
{
    g_free(state);
}

static const WbPluginOps ops = {
    .struct_size = sizeof(WbPluginOps),
    .create = good_create,
    .start = good_start,
    .stop = good_stop,
    .destroy = good_destroy,
};

WB_PLUGIN_DEFINE("good", "1.0", "A well-formed test plugin", "GPL-3.0-or-later", WB_ROLE_SOURCE, options, &ops)
