/* A plugin that blocks the main loop on purpose: after "after", it sleeps
 * for "block" inside a timer callback.  For the test that an emulated
 * meter stops presenting its data when the main loop cannot refresh it. */
#include <wattbridge/plugin.h>

typedef struct {
    WbInstance *instance;
    gint64 after;
    gint64 block;
    WbTimer *timer;
} Stall;

static const WbOptionSpec options[] = {
    {.name = "after", .type = WB_OPTION_DURATION, .default_value = "1s", .min = 0.001, .max = 60, .unit = "s",
     .help = "When to block"},
    {.name = "block", .type = WB_OPTION_DURATION, .default_value = "3s", .min = 0.001, .max = 60, .unit = "s",
     .help = "How long to block the main loop"},
    {NULL},
};

static void stall(gpointer user_data)
{
    Stall *s = user_data;
    wb_log(s->instance, WB_LOG_NOTICE, "stalling the main loop for %.3g s", (double)s->block / 1e6);
    g_usleep((gulong)s->block);
    wb_log(s->instance, WB_LOG_NOTICE, "stall over");
}

static gboolean stall_create(WbInstance *instance, const WbConfig *config, gpointer *state, GError **error)
{
    Stall *s = g_new0(Stall, 1);
    s->instance = instance;
    s->after = wb_config_get_duration(config, "after");
    s->block = wb_config_get_duration(config, "block");
    *state = s;
    return TRUE;
}

static gboolean stall_start(gpointer state, GError **error)
{
    Stall *s = state;
    s->timer = wb_timer_new(s->instance, stall, s);
    wb_timer_start(s->timer, (guint)(s->after / 1000), FALSE);
    return TRUE;
}

static void stall_stop(gpointer state)
{
}

static void stall_destroy(gpointer state)
{
    g_free(state);
}

static const WbPluginOps ops = {
    .struct_size = sizeof(WbPluginOps),
    .create = stall_create,
    .start = stall_start,
    .stop = stall_stop,
    .destroy = stall_destroy,
};

WB_PLUGIN_DEFINE("stall", "1.0", "Blocks the main loop once (test plugin)", "GPL-3.0-or-later", WB_ROLE_SOURCE,
                 options, &ops)
