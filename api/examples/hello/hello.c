/* An out-of-tree plugin, the SDK example: built by the out-of-tree test
 * and by CI against an installed wattbridge, with nothing but
 *   pkg-config --cflags --libs wattbridge-plugin
 * (meson.build next to this file does the same with meson).
 * It publishes "<instance>/power" (the "power" option, in W) when it
 * starts and then every "interval". */
#include <wattbridge/plugin.h>

typedef struct {
    WbInstance *instance;
    double power;
    WbTimer *timer;
} Hello;

static const WbOptionSpec options[] = {
    {.name = "power", .type = WB_OPTION_DOUBLE, .default_value = "0", .unit = "W",
     .help = "The active power to publish"},
    {.name = "interval", .type = WB_OPTION_DURATION, .default_value = "1s", .min = 0.01, .max = 3600,
     .unit = "s", .help = "How often to publish it"},
    {NULL},
};

static void publish(gpointer user_data)
{
    Hello *h = user_data;
    WbBatch *batch = wb_batch_new(h->instance);
    wb_batch_add_double(batch, "power", h->power, NULL);
    wb_batch_commit(batch);
}

static gboolean hello_create(WbInstance *instance, const WbConfig *config, gpointer *state, GError **error)
{
    Hello *h = g_new0(Hello, 1);
    h->instance = instance;
    h->power = wb_config_get_double(config, "power");
    *state = h;
    return TRUE;
}

static gboolean hello_start(gpointer state, GError **error)
{
    Hello *h = state;
    const WbConfig *config = wb_instance_get_config(h->instance);
    h->timer = wb_timer_new(h->instance, publish, h);
    wb_timer_start(h->timer, (guint)(wb_config_get_duration(config, "interval") / 1000), TRUE);
    publish(h);
    wb_log(h->instance, WB_LOG_NOTICE, "hello from outside the tree: publishing %g W", h->power);
    return TRUE;
}

static void hello_stop(gpointer state)
{
    Hello *h = state;
    wb_timer_free(h->timer);
    h->timer = NULL;
}

static void hello_destroy(gpointer state)
{
    g_free(state);
}

static const WbPluginOps ops = {
    .struct_size = sizeof(WbPluginOps),
    .create = hello_create,
    .start = hello_start,
    .stop = hello_stop,
    .destroy = hello_destroy,
};

WB_PLUGIN_DEFINE("hello", "1.0", "Publishes a constant active power (out-of-tree example)", "MIT",
                 WB_ROLE_SOURCE, options, &ops)
