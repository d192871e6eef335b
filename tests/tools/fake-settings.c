/* A stand-in for Venus OS's com.victronenergy.settings (localsettings) for
 * the tests, on the session bus: the part a device driver uses, as
 * shared/reference/victron-dbus.md section 3 describes it.
 *
 *   AddSettings (aa{sv}) -> aa{sv}  on "/": {path, default, [min], [max]};
 *     an existing setting keeps its value; ClassAndVrmInstance "class:N"
 *     gets the first instance of that class from N up that no other
 *     device holds (localsettings' assureFreeInstance)
 *   GetValue, GetText, SetValue (0, or -1 outside min/max or of another
 *     type) on each setting's path, and PropertiesChanged {Value, Text}
 *     when one changes
 *
 * Prints "ready" when it owns the name, and one line per call. */
#include <gio/gio.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char *path;
    GVariant *value;
    GVariant *min, *max;
    guint registration;
} Setting;

static GDBusConnection *bus;
static GHashTable *settings; /* path -> Setting* */

static const char leaf_xml[] =
    "<node><interface name='com.victronenergy.BusItem'>"
    " <method name='GetValue'><arg type='v' direction='out'/></method>"
    " <method name='GetText'><arg type='s' direction='out'/></method>"
    " <method name='SetValue'><arg type='v' direction='in'/><arg type='i' direction='out'/></method>"
    " <signal name='PropertiesChanged'><arg type='a{sv}'/></signal>"
    "</interface></node>";
static const char root_xml[] =
    "<node><interface name='com.victronenergy.Settings'>"
    " <method name='AddSettings'><arg type='aa{sv}' direction='in'/><arg type='aa{sv}' direction='out'/></method>"
    "</interface></node>";
static GDBusNodeInfo *leaf_info, *root_info;

static char *text_of(GVariant *v)
{
    if (g_variant_is_of_type(v, G_VARIANT_TYPE_STRING))
        return g_variant_dup_string(v, NULL);
    return g_variant_print(v, FALSE);
}

static double number(GVariant *v)
{
    if (g_variant_is_of_type(v, G_VARIANT_TYPE_INT32))
        return g_variant_get_int32(v);
    if (g_variant_is_of_type(v, G_VARIANT_TYPE_DOUBLE))
        return g_variant_get_double(v);
    return 0;
}

static void changed(Setting *s)
{
    g_autofree char *text = text_of(s->value);
    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE("a{sv}"));
    g_variant_builder_add(&b, "{sv}", "Value", s->value);
    g_variant_builder_add(&b, "{sv}", "Text", g_variant_new_string(text));
    g_dbus_connection_emit_signal(bus, NULL, s->path, "com.victronenergy.BusItem", "PropertiesChanged",
                                  g_variant_new("(a{sv})", &b), NULL);
}

static void on_leaf(GDBusConnection *c, const char *sender, const char *path, const char *iface, const char *method,
                    GVariant *params, GDBusMethodInvocation *inv, gpointer user_data)
{
    Setting *s = g_hash_table_lookup(settings, path);
    printf("%s %s\n", method, path);
    fflush(stdout);
    if (strcmp(method, "GetValue") == 0) {
        g_dbus_method_invocation_return_value(inv, g_variant_new("(v)", s->value));
    } else if (strcmp(method, "GetText") == 0) {
        g_autofree char *text = text_of(s->value);
        g_dbus_method_invocation_return_value(inv, g_variant_new("(s)", text));
    } else {
        g_autoptr(GVariant) v = NULL;
        g_variant_get(params, "(v)", &v);
        if (!g_variant_type_equal(g_variant_get_type(v), g_variant_get_type(s->value)) ||
            (s->min && (number(v) < number(s->min) || number(v) > number(s->max)))) {
            g_dbus_method_invocation_return_value(inv, g_variant_new("(i)", -1));
            return;
        }
        g_variant_unref(s->value);
        s->value = g_variant_ref(v);
        changed(s);
        g_dbus_method_invocation_return_value(inv, g_variant_new("(i)", 0));
    }
}

static const GDBusInterfaceVTable leaf_vtable = {on_leaf, NULL, NULL, {0}};

/* "grid:40" -> the first free "grid:N", N >= 40 */
static GVariant *free_instance(const char *wanted, const char *own_path)
{
    g_auto(GStrv) parts = g_strsplit(wanted, ":", 2);
    if (!parts[1])
        return g_variant_new_string(wanted);
    for (int n = atoi(parts[1]);; n++) {
        g_autofree char *candidate = g_strdup_printf("%s:%d", parts[0], n);
        gboolean taken = FALSE;
        GHashTableIter it;
        gpointer value;
        g_hash_table_iter_init(&it, settings);
        while (g_hash_table_iter_next(&it, NULL, &value)) {
            Setting *s = value;
            taken |= g_str_has_suffix(s->path, "/ClassAndVrmInstance") && strcmp(s->path, own_path) != 0 &&
                     g_variant_is_of_type(s->value, G_VARIANT_TYPE_STRING) &&
                     strcmp(g_variant_get_string(s->value, NULL), candidate) == 0;
        }
        if (!taken)
            return g_variant_new_string(candidate);
    }
}

static void on_root(GDBusConnection *c, const char *sender, const char *path, const char *iface, const char *method,
                    GVariant *params, GDBusMethodInvocation *inv, gpointer user_data)
{
    g_autoptr(GVariant) list = g_variant_get_child_value(params, 0);
    GVariantBuilder out;
    g_variant_builder_init(&out, G_VARIANT_TYPE("aa{sv}"));
    for (gsize i = 0; i < g_variant_n_children(list); i++) {
        g_autoptr(GVariant) entry = g_variant_get_child_value(list, i);
        const char *p = NULL;
        g_autoptr(GVariant) def = g_variant_lookup_value(entry, "default", NULL);
        g_variant_lookup(entry, "path", "&s", &p);
        printf("AddSettings %s\n", p ? p : "(none)");
        fflush(stdout);
        GVariantBuilder r;
        g_variant_builder_init(&r, G_VARIANT_TYPE("a{sv}"));
        g_variant_builder_add(&r, "{sv}", "path", g_variant_new_string(p ? p : ""));
        if (!p || !def || !g_str_has_prefix(p, "/Settings/")) {
            g_variant_builder_add(&r, "{sv}", "error", g_variant_new_int32(!p || !def ? -4 : -9));
            g_variant_builder_add(&out, "a{sv}", &r);
            continue;
        }
        Setting *s = g_hash_table_lookup(settings, p);
        if (!s) {
            s = g_new0(Setting, 1);
            s->path = g_strdup(p);
            s->min = g_variant_lookup_value(entry, "min", NULL);
            s->max = g_variant_lookup_value(entry, "max", NULL);
            s->value = g_str_has_suffix(p, "/ClassAndVrmInstance") && g_variant_is_of_type(def, G_VARIANT_TYPE_STRING)
                           ? g_variant_ref_sink(free_instance(g_variant_get_string(def, NULL), p))
                           : g_variant_ref(def);
            s->registration = g_dbus_connection_register_object(bus, p, leaf_info->interfaces[0], &leaf_vtable, NULL,
                                                                NULL, NULL);
            g_hash_table_insert(settings, s->path, s);
        }
        g_variant_builder_add(&r, "{sv}", "error", g_variant_new_int32(0));
        g_variant_builder_add(&r, "{sv}", "value", s->value);
        g_variant_builder_add(&out, "a{sv}", &r);
    }
    g_dbus_method_invocation_return_value(inv, g_variant_new("(aa{sv})", &out));
}

static const GDBusInterfaceVTable root_vtable = {on_root, NULL, NULL, {0}};

static void on_name(GDBusConnection *c, const char *name, gpointer user_data)
{
    printf("ready\n");
    fflush(stdout);
}

static void on_lost(GDBusConnection *c, const char *name, gpointer user_data)
{
    fprintf(stderr, "fake-settings: lost %s\n", name);
    g_main_loop_quit(user_data);
}

int main(void)
{
    g_autoptr(GError) error = NULL;
    bus = g_bus_get_sync(G_BUS_TYPE_SESSION, NULL, &error);
    if (!bus) {
        fprintf(stderr, "fake-settings: %s\n", error->message);
        return 1;
    }
    leaf_info = g_dbus_node_info_new_for_xml(leaf_xml, NULL);
    root_info = g_dbus_node_info_new_for_xml(root_xml, NULL);
    settings = g_hash_table_new(g_str_hash, g_str_equal);
    g_dbus_connection_register_object(bus, "/", root_info->interfaces[0], &root_vtable, NULL, NULL, NULL);
    GMainLoop *loop = g_main_loop_new(NULL, FALSE);
    g_bus_own_name_on_connection(bus, "com.victronenergy.settings", G_BUS_NAME_OWNER_FLAGS_DO_NOT_QUEUE, on_name,
                                 on_lost, loop, NULL);
    g_main_loop_run(loop);
    return 0;
}
