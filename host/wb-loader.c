/* The plugin loader: file checks, dlopen, descriptor and option checks. */
#include "wb-private.h"

#include <stddef.h>
#include <sys/stat.h>
#include <unistd.h>

/* The descriptor, ops and option spec as ABI 1.0 defined them: the least a
 * plugin must provide. */
#define DESCRIPTOR_V1_SIZE (offsetof(WbPluginDescriptor, ops) + sizeof(gpointer))
#define OPS_V1_SIZE (offsetof(WbPluginOps, destroy) + sizeof(gpointer))
#define OPTION_V1_SIZE (offsetof(WbOptionSpec, help) + sizeof(gpointer))

typedef const WbPluginDescriptor *(*EntryFunc)(const WbHostInfo *host);

void wb_plugin_free(WbPlugin *plugin)
{
    if (!plugin)
        return;
    /* The module stays resident: GLib types and function pointers handed
     * out cannot be taken back safely. */
    g_free(plugin->name);
    g_free(plugin->path);
    g_free(plugin->options);
    g_free(plugin);
}

static gboolean name_ok(const char *name, gboolean family)
{
    if (!name || !g_ascii_isalnum(name[0]))
        return FALSE;
    gsize n = strlen(name);
    for (gsize i = 0; i < n; i++) {
        char c = name[i];
        if (family && i == n - 1)
            return c == '.';
        if (!(g_ascii_islower(c) || g_ascii_isdigit(c) || c == '-' || (family && c == '.')))
            return FALSE;
    }
    return !family;
}

static gboolean check_options(WbPlugin *plugin, const WbPluginDescriptor *d, GError **error)
{
    static const guint32 known_flags = WB_OPTION_REQUIRED | WB_OPTION_SECRET | WB_OPTION_FAMILY | WB_OPTION_ONE_POINT;
    guint n = 0;

    if (!d->options) {
        plugin->options = g_new0(WbOptionSpec, 1);
        return TRUE;
    }
    if (d->option_size < OPTION_V1_SIZE) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_ABI,
                    "%s: option_size %u is smaller than ABI %d.0's WbOptionSpec (%zu bytes)", plugin->path,
                    d->option_size, WB_ABI_MAJOR, (size_t)OPTION_V1_SIZE);
        return FALSE;
    }
    const guint8 *base = (const guint8 *)d->options;
    while (((const WbOptionSpec *)(base + (gsize)n * d->option_size))->name)
        n++;
    plugin->options = g_new0(WbOptionSpec, n + 1);
    for (guint i = 0; i < n; i++)
        memcpy(&plugin->options[i], base + (gsize)i * d->option_size, MIN(d->option_size, sizeof(WbOptionSpec)));

    for (guint i = 0; i < n; i++) {
        const WbOptionSpec *s = &plugin->options[i];
        gboolean family = (s->flags & WB_OPTION_FAMILY) != 0;
        const char *why = NULL;
        if (!name_ok(s->name, family))
            why = family ? "a family name is [a-z0-9-]+ followed by '.'" : "an option name is [a-z0-9-]+";
        else if (strcmp(s->name, WB_KEY_PLUGIN) == 0 || strcmp(s->name, WB_KEY_ENABLED) == 0)
            why = "the host owns this key";
        else if (s->type < WB_OPTION_STRING || s->type > WB_OPTION_POINT)
            why = "unknown type";
        else if (s->flags & ~known_flags)
            why = "unknown flags";
        else if (s->type == WB_OPTION_ENUM && (!s->values || !s->values[0]))
            why = "an enum option needs its values";
        else if ((s->flags & WB_OPTION_REQUIRED) && s->default_value)
            why = "a required option cannot have a default";
        else if (!s->help || !*s->help)
            why = "missing help text";
        for (guint j = 0; j < i && !why; j++)
            if (strcmp(plugin->options[j].name, s->name) == 0)
                why = "declared twice";
        if (why) {
            g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_ABI, "%s: option '%s': %s", plugin->path,
                        s->name ? s->name : "(null)", why);
            return FALSE;
        }
        g_autoptr(GError) derr = NULL;
        if (s->default_value && !wb_option_check_value(s, s->default_value, &derr)) {
            g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_ABI, "%s: option '%s': default value: %s",
                        plugin->path, s->name, derr->message);
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean check_file(const char *path, GError **error)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        int err = errno;
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(err), "%s: %s", path, g_strerror(err));
        return FALSE;
    }
    if (!S_ISREG(st.st_mode)) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_FAILED, "%s: not a regular file", path);
        return FALSE;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_FAILED,
                    "%s: refusing a plugin file that is group- or world-writable (mode %04o); "
                    "anyone who can write it could run code in the daemon",
                    path, (unsigned)(st.st_mode & 07777));
        return FALSE;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_FAILED,
                    "%s: refusing a plugin file owned by uid %u (must be root or the daemon's user)", path,
                    (unsigned)st.st_uid);
        return FALSE;
    }
    return TRUE;
}

WbPlugin *wb_plugin_load(const char *path, GError **error)
{
    g_return_val_if_fail(path != NULL, NULL);
    if (!check_file(path, error))
        return NULL;

    GModule *module = g_module_open(path, G_MODULE_BIND_LOCAL);
    if (!module) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_FAILED, "%s: cannot load: %s", path, g_module_error());
        return NULL;
    }
    g_autoptr(WbPlugin) plugin = g_new0(WbPlugin, 1);
    plugin->path = g_strdup(path);
    g_autofree char *base = g_path_get_basename(path);
    if (g_str_has_suffix(base, ".so"))
        base[strlen(base) - 3] = '\0';

    gpointer sym = NULL;
    if (!g_module_symbol(module, WB_PLUGIN_ENTRY_SYMBOL, &sym) || !sym) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_ABI,
                    "%s: not a wattbridge plugin: it does not export %s()", path, WB_PLUGIN_ENTRY_SYMBOL);
        g_module_close(module);
        return NULL;
    }
    WbHostInfo host = {sizeof(WbHostInfo), WB_ABI_MAJOR, WB_ABI_MINOR, WB_VERSION};
    const WbPluginDescriptor *d = ((EntryFunc)sym)(&host);
    const char *why = NULL;
    if (!d) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_ABI,
                    "%s: the plugin declined to load (%s() returned NULL for host %s, ABI %d.%d)", path,
                    WB_PLUGIN_ENTRY_SYMBOL, WB_VERSION, WB_ABI_MAJOR, WB_ABI_MINOR);
        g_module_close(module);
        return NULL;
    }
    /* The ABI version fields sit at the same offsets in every major. */
    if (d->struct_size >= offsetof(WbPluginDescriptor, name) && d->abi_major != WB_ABI_MAJOR) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_ABI,
                    "%s: built for plugin ABI %u.%u, but this host provides ABI %d.%d: the major "
                    "version must match; rebuild the plugin against this host's headers",
                    path, d->abi_major, d->abi_minor, WB_ABI_MAJOR, WB_ABI_MINOR);
        g_module_close(module);
        return NULL;
    }
    if (d->struct_size >= offsetof(WbPluginDescriptor, name) && d->abi_minor > WB_ABI_MINOR) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_ABI,
                    "%s: built for plugin ABI %u.%u, newer than this host's ABI %d.%d: it may need "
                    "host functions this host lacks; update wattbridge",
                    path, d->abi_major, d->abi_minor, WB_ABI_MAJOR, WB_ABI_MINOR);
        g_module_close(module);
        return NULL;
    }
    if (d->struct_size < DESCRIPTOR_V1_SIZE) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_ABI,
                    "%s: descriptor struct_size %u is smaller than ABI %d.0's (%zu bytes)", path,
                    d->struct_size, WB_ABI_MAJOR, (size_t)DESCRIPTOR_V1_SIZE);
        g_module_close(module);
        return NULL;
    }
    memcpy(&plugin->desc, d, MIN(d->struct_size, sizeof(WbPluginDescriptor)));
    d = &plugin->desc;

    if (!name_ok(d->name, FALSE))
        why = "its name must be [a-z0-9-]+";
    else if (strcmp(d->name, base) != 0)
        why = NULL; /* reported below with both names */
    else if (!d->version || !*d->version)
        why = "its descriptor has no version";
    else if (!d->description || !*d->description)
        why = "its descriptor has no description";
    else if (!d->license || !*d->license)
        why = "its descriptor has no license";
    else if (!d->roles || (d->roles & ~(guint32)(WB_ROLE_SOURCE | WB_ROLE_SINK | WB_ROLE_CONTROLLER | WB_ROLE_ACTUATOR)))
        why = "its roles are empty or unknown";
    else if (!d->ops)
        why = "its descriptor has no ops table";
    if (why) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_ABI, "%s: refusing the plugin: %s", path, why);
        g_module_close(module);
        return NULL;
    }
    if (strcmp(d->name, base) != 0) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_ABI,
                    "%s: the plugin calls itself '%s' but its file is named '%s.so'; the names must match",
                    path, d->name, base);
        g_module_close(module);
        return NULL;
    }
    if (d->ops->struct_size < OPS_V1_SIZE) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_ABI,
                    "%s: ops struct_size %u is smaller than ABI %d.0's (%zu bytes)", path, d->ops->struct_size,
                    WB_ABI_MAJOR, (size_t)OPS_V1_SIZE);
        g_module_close(module);
        return NULL;
    }
    memcpy(&plugin->ops, d->ops, MIN(d->ops->struct_size, sizeof(WbPluginOps)));
    if (!plugin->ops.create || !plugin->ops.start || !plugin->ops.stop || !plugin->ops.destroy) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_ABI,
                    "%s: refusing the plugin: create, start, stop and destroy are all required", path);
        g_module_close(module);
        return NULL;
    }
    if (!check_options(plugin, d, error)) {
        g_module_close(module);
        return NULL;
    }
    plugin->name = g_strdup(d->name);
    /* Strings in the descriptor point into the module, which stays loaded. */
    g_module_make_resident(module);
    plugin->module = module;
    return g_steal_pointer(&plugin);
}

char *wb_plugin_find(const char *const *dirs, const char *name, GError **error)
{
    if (!name_ok(name, FALSE)) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG,
                    "'%s' is not a plugin name ([a-z0-9-]+)", name);
        return NULL;
    }
    g_autofree char *file = g_strconcat(name, ".so", NULL);
    for (guint i = 0; dirs && dirs[i]; i++) {
        char *path = g_build_filename(dirs[i], file, NULL);
        if (g_file_test(path, G_FILE_TEST_EXISTS))
            return path;
        g_free(path);
    }
    g_autofree char *searched = dirs ? g_strjoinv(", ", (char **)dirs) : g_strdup("(none)");
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "no plugin '%s' (%s) in %s", name, file, searched);
    return NULL;
}

char *wb_plugin_describe(const WbPlugin *plugin)
{
    const WbPluginDescriptor *d = &plugin->desc;
    GString *out = g_string_new(NULL);
    static const char *const role_names[] = {"source", "sink", "controller", "actuator"};

    g_string_append_printf(out, "%s %s: %s\n", d->name, d->version, d->description);
    g_string_append(out, "roles:");
    for (guint i = 0; i < G_N_ELEMENTS(role_names); i++)
        if (d->roles & (1u << i))
            g_string_append_printf(out, " %s", role_names[i]);
    g_string_append_printf(out, "\nlicense: %s\nfile: %s\nABI: %u.%u\n\noptions:\n", d->license, plugin->path,
                           d->abi_major, d->abi_minor);
    g_string_append_printf(out, "  %s = %s (required)\n      Selects this plugin.\n", WB_KEY_PLUGIN, d->name);
    g_string_append_printf(out, "  %s = <boolean> (default: true)\n      false skips the instance.\n",
                           WB_KEY_ENABLED);
    for (const WbOptionSpec *s = plugin->options; s->name; s++)
        wb_option_describe(s, out);
    return g_string_free(out, FALSE);
}
