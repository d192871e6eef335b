/* The broken-plugin corpus: one source, one variant per build (-DVARIANT_x),
 * each refused by the loader with its own message. */
#include <wattbridge/plugin.h>

#ifndef PLUGIN_NAME
#error PLUGIN_NAME must be defined
#endif

static gboolean b_create(WbInstance *instance, const WbConfig *config, gpointer *state, GError **error)
{
    *state = NULL;
    return TRUE;
}

static gboolean b_start(gpointer state, GError **error)
{
    return TRUE;
}

static void b_stop(gpointer state)
{
}

G_GNUC_UNUSED static void b_destroy(gpointer state)
{
}

G_GNUC_UNUSED static const WbPluginOps ops = {
    .struct_size = sizeof(WbPluginOps),
    .create = b_create,
    .start = b_start,
    .stop = b_stop,
#ifndef VARIANT_MISSING_OP
    .destroy = b_destroy,
#endif
};

#if defined(VARIANT_DUPLICATE_OPTION)
G_GNUC_UNUSED static const WbOptionSpec options[] = {
    {.name = "port", .type = WB_OPTION_INT, .default_value = "1", .help = "A port."},
    {.name = "port", .type = WB_OPTION_INT, .default_value = "2", .help = "The same again."},
    {NULL},
};
#elif defined(VARIANT_BAD_DEFAULT)
G_GNUC_UNUSED static const WbOptionSpec options[] = {
    {.name = "port", .type = WB_OPTION_INT, .default_value = "abc", .help = "A port."},
    {NULL},
};
#elif defined(VARIANT_DEFAULT_OUT_OF_RANGE)
G_GNUC_UNUSED static const WbOptionSpec options[] = {
    {.name = "port", .type = WB_OPTION_INT, .default_value = "70000", .min = 1, .max = 65535, .help = "A port."},
    {NULL},
};
#elif defined(VARIANT_RESERVED_OPTION)
G_GNUC_UNUSED static const WbOptionSpec options[] = {
    {.name = "enabled", .type = WB_OPTION_BOOL, .default_value = "true", .help = "The host's key."},
    {NULL},
};
#else
G_GNUC_UNUSED static const WbOptionSpec options[] = {
    {.name = "port", .type = WB_OPTION_INT, .default_value = "1", .help = "A port."},
    {NULL},
};
#endif

#ifdef VARIANT_MISSING_SYMBOL
/* Resolved at load time (the corpus is linked without -z defs), so the load
 * itself fails. */
extern void wb_no_such_function(void);
#endif

#if defined(VARIANT_NO_ENTRY)
/* exports nothing */
G_MODULE_EXPORT int wb_not_the_entry_point(void);
G_MODULE_EXPORT int wb_not_the_entry_point(void)
{
    return 0;
}
#else
G_GNUC_UNUSED static const WbPluginDescriptor descriptor = {
#if defined(VARIANT_SMALL_STRUCT)
    .struct_size = 16,
#else
    .struct_size = sizeof(WbPluginDescriptor),
#endif
#if defined(VARIANT_MAJOR_OLD)
    .abi_major = WB_ABI_MAJOR - 1,
#elif defined(VARIANT_MAJOR_NEW)
    .abi_major = WB_ABI_MAJOR + 1,
#else
    .abi_major = WB_ABI_MAJOR,
#endif
#if defined(VARIANT_MINOR_NEW)
    .abi_minor = WB_ABI_MINOR + 1,
#else
    .abi_minor = WB_ABI_MINOR,
#endif
#if defined(VARIANT_WRONG_NAME)
    .name = "another-name",
#else
    .name = PLUGIN_NAME,
#endif
    .version = "1.0",
    .description = "A broken test plugin",
#if !defined(VARIANT_NO_LICENSE)
    .license = "GPL-3.0-or-later",
#endif
    .roles = WB_ROLE_SOURCE,
    .option_size = sizeof(WbOptionSpec),
    .options = options,
#if !defined(VARIANT_NO_OPS)
    .ops = &ops,
#endif
};

WB_PLUGIN_EXPORT const WbPluginDescriptor *wb_plugin_get_descriptor(const WbHostInfo *host);
WB_PLUGIN_EXPORT const WbPluginDescriptor *wb_plugin_get_descriptor(const WbHostInfo *host)
{
#if defined(VARIANT_MISSING_SYMBOL)
    wb_no_such_function();
#endif
#if defined(VARIANT_NULL_DESCRIPTOR)
    return NULL;
#else
    (void)host;
    return &descriptor;
#endif
}
#endif
