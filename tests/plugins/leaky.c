/* A plugin that leaks on purpose.  Under the address sanitizer, leak-net
 * starts the daemon with it and passes only when LeakSanitizer reports this
 * leak (4096 bytes from leaky_start) and the harness sees the report:
 * proof that the net is armed. */
#include <wattbridge/plugin.h>

static gboolean leaky_create(WbInstance *instance, const WbConfig *config, gpointer *state, GError **error)
{
    *state = instance;
    return TRUE;
}

static volatile gpointer sink;

static gboolean leaky_start(gpointer state, GError **error)
{
    sink = g_malloc(4096); /* the pointer is overwritten below: a real leak */
    sink = NULL;
    WbBatch *batch = wb_batch_new(state);
    wb_batch_add_double(batch, "power", 1.0, NULL);
    wb_batch_commit(batch);
    return TRUE;
}

static void leaky_stop(gpointer state)
{
}

static void leaky_destroy(gpointer state)
{
}

static const WbPluginOps ops = {
    .struct_size = sizeof(WbPluginOps),
    .create = leaky_create,
    .start = leaky_start,
    .stop = leaky_stop,
    .destroy = leaky_destroy,
};

WB_PLUGIN_DEFINE("leaky", "1.0", "Leaks 4 KiB on start (sanitizer self-test)", "GPL-3.0-or-later",
                 WB_ROLE_SOURCE, NULL, &ops)
