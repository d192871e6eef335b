/* victron-dbus: publishes a device as a Victron Venus OS D-Bus service
 * (sink).
 *
 * One instance is one service, com.victronenergy.<type>.<name>, on a
 * private bus connection of its own (object paths belong to a connection,
 * and every Venus service has "/", "/DeviceInstance", ...).  Every value is
 * an object implementing com.victronenergy.BusItem as Venus clients expect
 * (shared/reference/victron-dbus.md, sections 1 and 2, from
 * victronenergy/velib_python vedbus.py): leaves GetValue, GetText, SetValue,
 * GetDescription and PropertiesChanged; intermediate nodes GetValue and
 * GetText of their subtree (keys relative to the node); the root also
 * GetItems and ItemsChanged.  Invalid values travel as an empty int32
 * array with the text "---".
 *
 * The bus name is claimed only once every path exists, /DeviceInstance
 * included, which comes from com.victronenergy.settings (AddSettings on
 * /Settings/Devices/<id>/ClassAndVrmInstance) when that service appears
 * within settings-timeout, else from the configuration.  Values come from
 * points; a point older than max-age makes its path invalid, and the
 * service reports /Connected = 0 when none is fresh.  A short gap never
 * shows 0 W: the last value stays until max-age. */
#include "venus-bus.h"

#include <math.h>

enum { T_GRID, T_PVINVERTER, T_ACLOAD, T_DCLOAD, T_DCSYSTEM, T_BATTERY };
static const char *const type_names[] = {"grid", "pvinverter", "acload", "dcload", "dcsystem", "battery", NULL};

/* The paths each type wires by default, from <source>/<point>: Venus's
 * units and signs are quantities.h's (grid > 0 import, PV > 0 production,
 * battery > 0 charging; wiki dbus, shared/reference/victron-dbus.md 2.2-2.5). */
typedef struct {
    const char *path;
    const char *point;  /* relative to source */
    const char *format; /* GetText */
} DefaultWire;

#define AC_PHASE(n)                                                                                 \
    {"/Ac/L" #n "/Power", "l" #n "/power", "%.0f W"}, {"/Ac/L" #n "/Voltage", "l" #n "/voltage", "%.1f V"}, \
        {"/Ac/L" #n "/Current", "l" #n "/current", "%.2f A"},                                       \
        {"/Ac/L" #n "/Energy/Forward", "l" #n "/energy-import", "%.2f kWh"},                        \
        {"/Ac/L" #n "/Energy/Reverse", "l" #n "/energy-export", "%.2f kWh"}
static const DefaultWire ac_wires[] = {
    {"/Ac/Power", "power", "%.0f W"},
    {"/Ac/Energy/Forward", "energy-import", "%.2f kWh"},
    {"/Ac/Energy/Reverse", "energy-export", "%.2f kWh"},
    {"/Ac/Frequency", "frequency", "%.2f Hz"},
    {"/Ac/PowerFactor", "power-factor", "%.3f"},
    AC_PHASE(1),
    AC_PHASE(2),
    AC_PHASE(3),
    {NULL},
};
static const DefaultWire pv_wires[] = {
    {"/Ac/Power", "power", "%.0f W"},
    {"/Ac/Energy/Forward", "energy-import", "%.2f kWh"},
    {"/Ac/L1/Power", "l1/power", "%.0f W"}, {"/Ac/L1/Voltage", "l1/voltage", "%.1f V"},
    {"/Ac/L1/Current", "l1/current", "%.2f A"}, {"/Ac/L1/Energy/Forward", "l1/energy-import", "%.2f kWh"},
    {"/Ac/L2/Power", "l2/power", "%.0f W"}, {"/Ac/L2/Voltage", "l2/voltage", "%.1f V"},
    {"/Ac/L2/Current", "l2/current", "%.2f A"}, {"/Ac/L2/Energy/Forward", "l2/energy-import", "%.2f kWh"},
    {"/Ac/L3/Power", "l3/power", "%.0f W"}, {"/Ac/L3/Voltage", "l3/voltage", "%.1f V"},
    {"/Ac/L3/Current", "l3/current", "%.2f A"}, {"/Ac/L3/Energy/Forward", "l3/energy-import", "%.2f kWh"},
    {NULL},
};
static const DefaultWire dc_wires[] = {
    {"/Dc/0/Voltage", "voltage", "%.2f V"},
    {"/Dc/0/Current", "current", "%.2f A"},
    {"/Dc/0/Power", "power", "%.0f W"},
    {"/Dc/0/Temperature", "temperature", "%.1f C"},
    {"/History/EnergyIn", "energy-import", "%.2f kWh"},
    {NULL},
};
static const DefaultWire battery_wires[] = {
    {"/Dc/0/Voltage", "voltage", "%.2f V"},
    {"/Dc/0/Current", "current", "%.2f A"},
    {"/Dc/0/Power", "power", "%.0f W"},
    {"/Dc/0/Temperature", "temperature", "%.1f C"},
    {"/Soc", "soc", "%.1f %%"},
    {"/Info/MaxChargeCurrent", "charge-current-limit", "%.1f A"},
    {"/Info/MaxDischargeCurrent", "discharge-current-limit", "%.1f A"},
    {NULL},
};
static const DefaultWire *const type_wires[] = {ac_wires, pv_wires, ac_wires, dc_wires, dc_wires, battery_wires};
static const char *const product_names[] = {"wattbridge grid meter", "wattbridge PV inverter",
                                             "wattbridge AC load", "wattbridge DC load",
                                             "wattbridge DC system", "wattbridge battery"};

typedef enum { ITEM_FIXED, ITEM_WIRED, ITEM_SETTING } ItemKind;

typedef struct {
    char *path;
    ItemKind kind;
    GVariant *value;      /* the wire value (floating refs sunk); NULL: invalid */
    int decimals;         /* GetText of a double: decimals and unit ("2960.1 W"); -1: plain */
    char *unit;
    char *point;          /* ITEM_WIRED: the full point name */
    gboolean writable;
    char vtype;           /* ITEM_SETTING and writable fixed ones: 'i', 'd' or 's' */
    gboolean has_range;
    double min, max;
    char *setting;        /* the localsettings path it is kept in, or NULL */
    char *description;
    gboolean dirty;
    guint registration;
} Item;

typedef struct {
    WbInstance *inst;
    int type;
    char *service;        /* com.victronenergy.<type>.<name> */
    char *unique_id;      /* for /Settings/Devices/<id> */
    int device_instance;  /* from the config until settings answer */
    VenusBus bus;
    gint64 max_age;
    gint64 settings_timeout;
    gint64 reconnect_delay;
    GPtrArray *items;     /* Item*, in path order */
    GHashTable *by_path;  /* path -> Item* (leaves) */
    GPtrArray *nodes;     /* char*: intermediate node paths, and "/" */
    GArray *node_regs;    /* guint */
    WbSubscription *sub;

    GDBusConnection *conn;
    GCancellable *cancel;
    guint settings_watch;
    guint settings_timer;
    guint settings_signal;
    guint reconnect_timer;
    gboolean settings_done;
    gboolean settings_present;
    gboolean registered;  /* the bus name is ours */
    gboolean running;
    gboolean connected;   /* /Connected */
} Svc;

/* The three shapes of com.victronenergy.BusItem: a leaf, an intermediate
 * node, the root.  (Note GetText: a string on leaves, a variant holding
 * a{ss} on nodes.)  Parsed once, never freed: shared by every service. */
static const char leaf_xml[] =
    "<node><interface name='com.victronenergy.BusItem'>"
    " <method name='GetValue'><arg type='v' direction='out'/></method>"
    " <method name='GetText'><arg type='s' direction='out'/></method>"
    " <method name='SetValue'><arg type='v' direction='in'/><arg type='i' direction='out'/></method>"
    " <method name='GetDescription'><arg type='s' direction='in'/><arg type='i' direction='in'/>"
    "  <arg type='s' direction='out'/></method>"
    " <signal name='PropertiesChanged'><arg type='a{sv}'/></signal>"
    "</interface></node>";
static const char node_xml[] =
    "<node><interface name='com.victronenergy.BusItem'>"
    " <method name='GetValue'><arg type='v' direction='out'/></method>"
    " <method name='GetText'><arg type='v' direction='out'/></method>"
    "</interface></node>";
static const char root_xml[] =
    "<node><interface name='com.victronenergy.BusItem'>"
    " <method name='GetValue'><arg type='v' direction='out'/></method>"
    " <method name='GetText'><arg type='v' direction='out'/></method>"
    " <method name='GetItems'><arg type='a{sa{sv}}' direction='out'/></method>"
    " <signal name='ItemsChanged'><arg type='a{sa{sv}}'/></signal>"
    "</interface></node>";

#define BUSITEM "com.victronenergy.BusItem"
#define SETTINGS_NAME "com.victronenergy.settings"

enum { SHAPE_LEAF, SHAPE_NODE, SHAPE_ROOT };

static GDBusInterfaceInfo *interface_info(int shape)
{
    static GDBusNodeInfo *infos[3];
    static const char *const xml[] = {leaf_xml, node_xml, root_xml};
    if (!infos[shape])
        infos[shape] = g_dbus_node_info_new_for_xml(xml[shape], NULL);
    return infos[shape]->interfaces[0];
}

static const WbOptionSpec options[] = {
    {.name = "type", .type = WB_OPTION_ENUM, .flags = WB_OPTION_REQUIRED, .values = type_names,
     .help = "The Venus service type: grid, pvinverter, acload, dcload, dcsystem or battery"},
    {.name = "name", .type = WB_OPTION_STRING,
     .help = "The bus name's last part (com.victronenergy.<type>.<name>); default: the instance name; made "
             "[A-Za-z0-9_]"},
    {.name = "source", .type = WB_OPTION_STRING,
     .help = "The instance whose points fill the type's usual paths: a grid meter's /Ac/Power from "
             "<source>/power, /Ac/L1/Voltage from <source>/l1/voltage, /Ac/Energy/Forward from "
             "<source>/energy-import, ...; path.* adds or overrides"},
    {.name = "path.", .type = WB_OPTION_POINT, .flags = WB_OPTION_FAMILY | WB_OPTION_ONE_POINT,
     .help = "Wires a Venus path to a point, e.g. path./Ac/L1/Power = grid-meter/power (a single-phase meter's "
             "total as L1, which Venus's system totals need)"},
    {.name = "setting.", .type = WB_OPTION_LIST, .flags = WB_OPTION_FAMILY,
     .help = "A writable path with DEFAULT; MIN; MAX (integers for an integer path), e.g. "
             "setting./Settings/MaxFeedIn = 3000; 0; 10000: published as the point <instance>/Settings/MaxFeedIn "
             "and kept in com.victronenergy.settings"},
    VENUS_BUS_OPTIONS,
    {.name = "device-instance", .type = WB_OPTION_INT, .default_value = "40", .min = 0, .max = 1023,
     .help = "The VRM instance asked of com.victronenergy.settings (it gives the first free one from here), and "
             "used as it is when that service is not there"},
    {.name = "unique-id", .type = WB_OPTION_STRING,
     .help = "The device's key under /Settings/Devices in the settings service; default wattbridge_<name>"},
    {.name = "product-name", .type = WB_OPTION_STRING, .help = "/ProductName; default by type"},
    {.name = "product-id", .type = WB_OPTION_INT, .default_value = "0xFFFF", .min = 0, .max = 0xFFFF,
     .help = "/ProductId (0xFFFF: a third-party device)"},
    {.name = "custom-name", .type = WB_OPTION_STRING, .default_value = "",
     .help = "/CustomName until the settings service or a user sets another"},
    {.name = "position", .type = WB_OPTION_INT, .default_value = "0", .min = 0, .max = 2,
     .help = "pvinverter: /Position, 0 AC input 1, 1 AC output, 2 AC input 2"},
    {.name = "max-age", .type = WB_OPTION_DURATION, .default_value = "10s", .min = 0.05, .max = 3600, .unit = "s",
     .help = "How old a point may get before its path is invalid; with none fresh, /Connected is 0"},
    {.name = "settings-timeout", .type = WB_OPTION_DURATION, .default_value = "10s", .min = 0, .max = 600,
     .unit = "s", .help = "How long to wait for com.victronenergy.settings before registering without it"},
    {NULL},
};

/* ---- items ------------------------------------------------------------------- */

static void item_free(gpointer data)
{
    Item *it = data;
    g_free(it->path);
    if (it->value)
        g_variant_unref(it->value);
    g_free(it->unit);
    g_free(it->point);
    g_free(it->setting);
    g_free(it->description);
    g_free(it);
}

static Item *add_item(Svc *s, const char *path, ItemKind kind)
{
    Item *it = g_hash_table_lookup(s->by_path, path);
    if (it)
        return it;
    it = g_new0(Item, 1);
    it->path = g_strdup(path);
    it->kind = kind;
    it->decimals = -1;
    it->unit = g_strdup("");
    g_ptr_array_add(s->items, it);
    g_hash_table_insert(s->by_path, it->path, it);
    return it;
}

/* Takes @value: a floating reference or a full one (NULL: invalid). */
static void set_value(Item *it, GVariant *value)
{
    if (value)
        g_variant_take_ref(value);
    gboolean same = (!value && !it->value) || (value && it->value && g_variant_equal(value, it->value));
    if (it->value)
        g_variant_unref(it->value);
    it->value = value;
    if (!same)
        it->dirty = TRUE;
}

/* Venus's invalid: an empty array of int32 (ve_utils.py VEDBUS_INVALID). */
static GVariant *wire_value(const Item *it)
{
    return it->value ? g_variant_ref(it->value) : g_variant_ref_sink(g_variant_new_array(G_VARIANT_TYPE_INT32, NULL, 0));
}

static char *item_text(const Item *it)
{
    if (!it->value)
        return g_strdup("---");
    if (g_variant_is_of_type(it->value, G_VARIANT_TYPE_STRING))
        return g_variant_dup_string(it->value, NULL);
    if (g_variant_is_of_type(it->value, G_VARIANT_TYPE_DOUBLE)) {
        char buf[G_ASCII_DTOSTR_BUF_SIZE];
        if (it->decimals >= 0)
            return g_strdup_printf("%.*f%s%s", it->decimals, g_variant_get_double(it->value), *it->unit ? " " : "",
                                   it->unit);
        return g_strdup(g_ascii_dtostr(buf, sizeof buf, g_variant_get_double(it->value)));
    }
    if (g_variant_is_of_type(it->value, G_VARIANT_TYPE_INT32)) {
        if (strcmp(it->path, "/ProductId") == 0)
            return g_strdup_printf("0x%X", g_variant_get_int32(it->value));
        return g_strdup_printf("%d", g_variant_get_int32(it->value));
    }
    return g_variant_print(it->value, FALSE);
}

/* {Value, Text} for GetItems and ItemsChanged */
static GVariant *value_and_text(const Item *it)
{
    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE("a{sv}"));
    g_autoptr(GVariant) v = wire_value(it);
    g_autofree char *text = item_text(it);
    g_variant_builder_add(&b, "{sv}", "Value", v);
    g_variant_builder_add(&b, "{sv}", "Text", g_variant_new_string(text));
    return g_variant_builder_end(&b);
}

/* ---- the objects --------------------------------------------------------------------- */

/* Every leaf below @node ("/" or "/Ac"): keys relative, without a slash. */
static GVariant *subtree(Svc *s, const char *node, gboolean text)
{
    GVariantBuilder b;
    g_variant_builder_init(&b, text ? G_VARIANT_TYPE("a{ss}") : G_VARIANT_TYPE("a{sv}"));
    gsize n = strcmp(node, "/") == 0 ? 1 : strlen(node) + 1;
    for (guint i = 0; i < s->items->len; i++) {
        const Item *it = g_ptr_array_index(s->items, i);
        if (strcmp(node, "/") != 0 && !(g_str_has_prefix(it->path, node) && it->path[strlen(node)] == '/'))
            continue;
        if (text) {
            g_autofree char *t = item_text(it);
            g_variant_builder_add(&b, "{ss}", it->path + n, t);
        } else {
            g_autoptr(GVariant) v = wire_value(it);
            g_variant_builder_add(&b, "{sv}", it->path + n, v);
        }
    }
    return g_variant_builder_end(&b);
}

static void persist(Svc *s, Item *it);
static void publish_setting(Svc *s, Item *it);
static void flush(Svc *s);

/* SetValue: 0 accepted (also when unchanged), 1 not writable or not of its
 * type, 2 refused (out of range) -- velib's codes. */
static int set_from_bus(Svc *s, Item *it, GVariant *in)
{
    if (!it->writable)
        return 1;
    GVariant *v = g_variant_is_of_type(in, G_VARIANT_TYPE_VARIANT) ? g_variant_get_variant(in) : g_variant_ref(in);
    g_autoptr(GVariant) value = v;
    GVariant *stored = NULL;
    if (it->vtype == 's') {
        if (!g_variant_is_of_type(value, G_VARIANT_TYPE_STRING))
            return 1;
        stored = g_variant_new_string(g_variant_get_string(value, NULL));
    } else {
        double x;
        if (g_variant_is_of_type(value, G_VARIANT_TYPE_DOUBLE))
            x = g_variant_get_double(value);
        else if (g_variant_is_of_type(value, G_VARIANT_TYPE_INT32))
            x = g_variant_get_int32(value);
        else if (g_variant_is_of_type(value, G_VARIANT_TYPE_INT64))
            x = (double)g_variant_get_int64(value);
        else if (g_variant_is_of_type(value, G_VARIANT_TYPE_UINT32))
            x = g_variant_get_uint32(value);
        else if (g_variant_is_of_type(value, G_VARIANT_TYPE_INT16))
            x = g_variant_get_int16(value);
        else if (g_variant_is_of_type(value, G_VARIANT_TYPE_UINT16))
            x = g_variant_get_uint16(value);
        else if (g_variant_is_of_type(value, G_VARIANT_TYPE_BYTE))
            x = g_variant_get_byte(value);
        else
            return 1;
        if (!isfinite(x) || (it->vtype == 'i' && x != floor(x)))
            return 1;
        if (it->has_range && (x < it->min || x > it->max))
            return 2;
        stored = it->vtype == 'i' ? g_variant_new_int32((gint32)x) : g_variant_new_double(x);
    }
    set_value(it, stored);
    g_autofree char *shown = g_variant_print(it->value, FALSE);
    wb_log(s->inst, WB_LOG_NOTICE, "%s set to %s over D-Bus", it->path, shown);
    persist(s, it);
    if (it->kind == ITEM_SETTING)
        publish_setting(s, it);
    flush(s);
    return 0;
}

static void on_method(GDBusConnection *conn, const char *sender, const char *path, const char *iface,
                      const char *method, GVariant *params, GDBusMethodInvocation *inv, gpointer user_data)
{
    Svc *s = user_data;
    Item *it = g_hash_table_lookup(s->by_path, path);
    if (it) {
        if (strcmp(method, "GetValue") == 0) {
            g_autoptr(GVariant) v = wire_value(it);
            g_dbus_method_invocation_return_value(inv, g_variant_new("(v)", v));
        } else if (strcmp(method, "GetText") == 0) {
            g_autofree char *t = item_text(it);
            g_dbus_method_invocation_return_value(inv, g_variant_new("(s)", t));
        } else if (strcmp(method, "SetValue") == 0) {
            g_autoptr(GVariant) v = NULL;
            g_variant_get(params, "(v)", &v);
            g_dbus_method_invocation_return_value(inv, g_variant_new("(i)", set_from_bus(s, it, v)));
        } else if (strcmp(method, "GetDescription") == 0) {
            g_dbus_method_invocation_return_value(inv, g_variant_new("(s)", it->description ? it->description : ""));
        }
        return;
    }
    if (strcmp(method, "GetValue") == 0) {
        g_dbus_method_invocation_return_value(inv, g_variant_new("(v)", subtree(s, path, FALSE)));
    } else if (strcmp(method, "GetText") == 0) {
        g_dbus_method_invocation_return_value(inv, g_variant_new("(v)", subtree(s, path, TRUE)));
    } else if (strcmp(method, "GetItems") == 0) {
        GVariantBuilder b;
        g_variant_builder_init(&b, G_VARIANT_TYPE("a{sa{sv}}"));
        for (guint i = 0; i < s->items->len; i++) {
            const Item *leaf = g_ptr_array_index(s->items, i);
            g_variant_builder_add(&b, "{s@a{sv}}", leaf->path, value_and_text(leaf));
        }
        g_dbus_method_invocation_return_value(inv, g_variant_new("(a{sa{sv}})", &b));
    }
}

static const GDBusInterfaceVTable vtable = {on_method, NULL, NULL, {0}};

/* Registers every leaf, every intermediate node and the root on the
 * connection.  Called before the bus name is claimed. */
static gboolean register_objects(Svc *s, GError **error)
{
    g_ptr_array_set_size(s->nodes, 0);
    g_ptr_array_add(s->nodes, g_strdup("/"));
    for (guint i = 0; i < s->items->len; i++) {
        Item *it = g_ptr_array_index(s->items, i);
        it->registration = g_dbus_connection_register_object(s->conn, it->path, interface_info(SHAPE_LEAF),
                                                             &vtable, s, NULL, error);
        if (!it->registration)
            return FALSE;
        /* its parents, once each */
        g_autofree char *parent = g_path_get_dirname(it->path);
        while (strcmp(parent, "/") != 0) {
            gboolean known = g_hash_table_contains(s->by_path, parent);
            for (guint k = 0; k < s->nodes->len && !known; k++)
                known = strcmp(g_ptr_array_index(s->nodes, k), parent) == 0;
            if (!known)
                g_ptr_array_add(s->nodes, g_strdup(parent));
            char *up = g_path_get_dirname(parent);
            g_free(parent);
            parent = up;
        }
    }
    g_array_set_size(s->node_regs, 0);
    for (guint k = 0; k < s->nodes->len; k++) {
        const char *node = g_ptr_array_index(s->nodes, k);
        guint id = g_dbus_connection_register_object(s->conn, node,
                                                     interface_info(k == 0 ? SHAPE_ROOT : SHAPE_NODE), &vtable, s,
                                                     NULL, error);
        if (!id)
            return FALSE;
        g_array_append_val(s->node_regs, id);
    }
    return TRUE;
}

static void unregister_objects(Svc *s)
{
    for (guint i = 0; i < s->items->len; i++) {
        Item *it = g_ptr_array_index(s->items, i);
        if (it->registration && s->conn)
            g_dbus_connection_unregister_object(s->conn, it->registration);
        it->registration = 0;
    }
    for (guint k = 0; s->node_regs && k < s->node_regs->len; k++)
        if (s->conn)
            g_dbus_connection_unregister_object(s->conn, g_array_index(s->node_regs, guint, k));
    if (s->node_regs)
        g_array_set_size(s->node_regs, 0);
}

/* Sends what changed: one ItemsChanged on "/" for the batch, and a
 * PropertiesChanged on each changed path. */
static void flush(Svc *s)
{
    GVariantBuilder all;
    g_variant_builder_init(&all, G_VARIANT_TYPE("a{sa{sv}}"));
    guint changed = 0;
    for (guint i = 0; i < s->items->len; i++) {
        Item *it = g_ptr_array_index(s->items, i);
        if (!it->dirty)
            continue;
        it->dirty = FALSE;
        if (!s->registered)
            continue;
        /* built once for both signals */
        g_autoptr(GVariant) props = g_variant_ref_sink(value_and_text(it));
        g_variant_builder_add(&all, "{s@a{sv}}", it->path, props);
        g_dbus_connection_emit_signal(s->conn, NULL, it->path, BUSITEM, "PropertiesChanged",
                                      g_variant_new("(@a{sv})", props), NULL);
        changed++;
    }
    if (changed)
        g_dbus_connection_emit_signal(s->conn, NULL, "/", BUSITEM, "ItemsChanged", g_variant_new("(a{sa{sv}})", &all),
                                      NULL);
    else
        g_variant_builder_clear(&all);
}

/* ---- the settings service -------------------------------------------------------------- */

static char *settings_path(Svc *s, const char *name)
{
    return g_strdup_printf("/Settings/Devices/%s/%s", s->unique_id, name);
}

static void persist(Svc *s, Item *it)
{
    if (!it->setting || !s->settings_present || !s->conn || !it->value)
        return;
    g_dbus_connection_call(s->conn, SETTINGS_NAME, it->setting, BUSITEM, "SetValue",
                           g_variant_new("(v)", it->value), G_VARIANT_TYPE("(i)"), G_DBUS_CALL_FLAGS_NONE, 5000,
                           NULL, NULL, NULL);
}

static void publish_setting(Svc *s, Item *it)
{
    if (!it->value || !s->running)
        return;
    WbBatch *batch = wb_batch_new(s->inst);
    double v = g_variant_is_of_type(it->value, G_VARIANT_TYPE_INT32) ? g_variant_get_int32(it->value)
                                                                      : g_variant_get_double(it->value);
    wb_batch_add_double(batch, it->path + 1, v, "");
    wb_batch_commit(batch);
}

static void set_device_instance(Svc *s, int instance)
{
    s->device_instance = instance;
    set_value(g_hash_table_lookup(s->by_path, "/DeviceInstance"), g_variant_new_int32(instance));
}

static void request_name(Svc *s);

static void on_setting_changed(GDBusConnection *conn, const char *sender, const char *path, const char *iface,
                               const char *signal, GVariant *params, gpointer user_data)
{
    Svc *s = user_data;
    g_autoptr(GVariant) changes = NULL;
    g_variant_get(params, "(@a{sv})", &changes);
    g_autoptr(GVariant) value = g_variant_lookup_value(changes, "Value", NULL);
    if (!value)
        return;
    g_autofree char *cvi = settings_path(s, "ClassAndVrmInstance");
    if (strcmp(path, cvi) == 0 && g_variant_is_of_type(value, G_VARIANT_TYPE_STRING)) {
        const char *colon = strchr(g_variant_get_string(value, NULL), ':');
        if (colon && atoi(colon + 1) != s->device_instance) {
            wb_log(s->inst, WB_LOG_NOTICE, "DeviceInstance changed in the settings to %d", atoi(colon + 1));
            set_device_instance(s, atoi(colon + 1));
            flush(s);
        }
        return;
    }
    for (guint i = 0; i < s->items->len; i++) {
        Item *it = g_ptr_array_index(s->items, i);
        if (it->setting && strcmp(it->setting, path) == 0) {
            set_value(it, g_variant_ref(value));
            if (it->kind == ITEM_SETTING)
                publish_setting(s, it);
            flush(s);
        }
    }
}

static void on_add_settings(GObject *source, GAsyncResult *res, gpointer user_data)
{
    Svc *s = user_data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &error);
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
    if (!reply) {
        wb_log(s->inst, WB_LOG_WARNING, "%s AddSettings failed: %s; DeviceInstance %d from the configuration",
               SETTINGS_NAME, error->message, s->device_instance);
    } else {
        g_autoptr(GVariant) results = g_variant_get_child_value(reply, 0);
        g_autofree char *cvi = settings_path(s, "ClassAndVrmInstance");
        for (gsize i = 0; i < g_variant_n_children(results); i++) {
            g_autoptr(GVariant) entry = g_variant_get_child_value(results, i);
            const char *path = NULL;
            gint32 err = 0;
            g_variant_lookup(entry, "path", "&s", &path);
            g_variant_lookup(entry, "error", "i", &err);
            g_autoptr(GVariant) value = g_variant_lookup_value(entry, "value", NULL);
            if (!path)
                continue;
            if (err || !value) {
                wb_log(s->inst, WB_LOG_WARNING, "%s refused %s (error %d)", SETTINGS_NAME, path, err);
                continue;
            }
            if (strcmp(path, cvi) == 0 && g_variant_is_of_type(value, G_VARIANT_TYPE_STRING)) {
                const char *colon = strchr(g_variant_get_string(value, NULL), ':');
                if (colon)
                    set_device_instance(s, atoi(colon + 1));
                continue;
            }
            for (guint k = 0; k < s->items->len; k++) {
                Item *it = g_ptr_array_index(s->items, k);
                if (it->setting && strcmp(it->setting, path) == 0) {
                    set_value(it, g_variant_ref(value));
                    if (it->kind == ITEM_SETTING)
                        publish_setting(s, it);
                }
            }
        }
        wb_log(s->inst, WB_LOG_INFO, "DeviceInstance %d from %s", s->device_instance, SETTINGS_NAME);
        /* the user may change them in the GUI: one match rule for the lot */
        s->settings_signal = g_dbus_connection_signal_subscribe(s->conn, SETTINGS_NAME, BUSITEM, "PropertiesChanged",
                                                                NULL, NULL, G_DBUS_SIGNAL_FLAGS_NONE,
                                                                on_setting_changed, s, NULL);
    }
    request_name(s);
}

/* One AddSettings call: the VRM instance, and the paths kept there. */
static void add_settings(Svc *s)
{
    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE("aa{sv}"));
    g_autofree char *cvi = settings_path(s, "ClassAndVrmInstance");
    g_autofree char *preferred = g_strdup_printf("%s:%d", type_names[s->type], s->device_instance);
    GVariantBuilder e;
    g_variant_builder_init(&e, G_VARIANT_TYPE("a{sv}"));
    g_variant_builder_add(&e, "{sv}", "path", g_variant_new_string(cvi));
    g_variant_builder_add(&e, "{sv}", "default", g_variant_new_string(preferred));
    g_variant_builder_add(&b, "a{sv}", &e);
    for (guint i = 0; i < s->items->len; i++) {
        Item *it = g_ptr_array_index(s->items, i);
        if (!it->setting)
            continue;
        g_variant_builder_init(&e, G_VARIANT_TYPE("a{sv}"));
        g_variant_builder_add(&e, "{sv}", "path", g_variant_new_string(it->setting));
        g_variant_builder_add(&e, "{sv}", "default", it->value);
        if (it->has_range) {
            g_variant_builder_add(&e, "{sv}", "min",
                                  it->vtype == 'i' ? g_variant_new_int32((gint32)it->min) : g_variant_new_double(it->min));
            g_variant_builder_add(&e, "{sv}", "max",
                                  it->vtype == 'i' ? g_variant_new_int32((gint32)it->max) : g_variant_new_double(it->max));
        }
        g_variant_builder_add(&b, "a{sv}", &e);
    }
    g_dbus_connection_call(s->conn, SETTINGS_NAME, "/", "com.victronenergy.Settings", "AddSettings",
                           g_variant_new("(aa{sv})", &b), G_VARIANT_TYPE("(aa{sv})"), G_DBUS_CALL_FLAGS_NONE, 10000,
                           s->cancel, on_add_settings, s);
}

static void settings_resolved(Svc *s, gboolean present)
{
    if (s->settings_done)
        return;
    s->settings_done = TRUE;
    s->settings_present = present;
    if (s->settings_timer)
        g_source_remove(s->settings_timer);
    s->settings_timer = 0;
    if (present) {
        add_settings(s);
        return;
    }
    wb_log(s->inst, WB_LOG_NOTICE, "%s did not appear within %.3g s; registering with DeviceInstance %d from the "
           "configuration", SETTINGS_NAME, (double)s->settings_timeout / G_USEC_PER_SEC, s->device_instance);
    request_name(s);
}

static void on_settings_appeared(GDBusConnection *conn, const char *name, const char *owner, gpointer user_data)
{
    settings_resolved(user_data, TRUE);
}

static gboolean on_settings_timeout(gpointer user_data)
{
    Svc *s = user_data;
    s->settings_timer = 0;
    settings_resolved(s, FALSE);
    return G_SOURCE_REMOVE;
}

/* ---- the bus ----------------------------------------------------------------------------- */

static void connect_bus(Svc *s);

static void on_name(GObject *source, GAsyncResult *res, gpointer user_data)
{
    Svc *s = user_data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &error);
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
    guint32 code = 0;
    if (reply)
        g_variant_get(reply, "(u)", &code);
    if (code != 1) {
        wb_log(s->inst, WB_LOG_ERROR, "cannot own %s: %s", s->service,
               error ? error->message : code == 3 ? "another program owns it" : "refused");
        return;
    }
    s->registered = TRUE;
    wb_log(s->inst, WB_LOG_NOTICE, "on D-Bus as %s, DeviceInstance %d", s->service, s->device_instance);
    for (guint i = 0; i < s->items->len; i++)
        ((Item *)g_ptr_array_index(s->items, i))->dirty = FALSE; /* GetItems tells a newcomer everything */
}

/* The name, once every path exists (consumers scan a service the moment it
 * appears, and skip one without /DeviceInstance). */
static void request_name(Svc *s)
{
    g_dbus_connection_call(s->conn, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                           "RequestName", g_variant_new("(su)", s->service, 4 /* DO_NOT_QUEUE */),
                           G_VARIANT_TYPE("(u)"), G_DBUS_CALL_FLAGS_NONE, 10000, s->cancel, on_name, s);
}

static gboolean on_reconnect(gpointer user_data)
{
    Svc *s = user_data;
    s->reconnect_timer = 0;
    connect_bus(s);
    return G_SOURCE_REMOVE;
}

static void drop_connection(Svc *s)
{
    if (s->settings_watch)
        g_bus_unwatch_name(s->settings_watch);
    s->settings_watch = 0;
    if (s->settings_timer)
        g_source_remove(s->settings_timer);
    s->settings_timer = 0;
    if (s->settings_signal && s->conn)
        g_dbus_connection_signal_unsubscribe(s->conn, s->settings_signal);
    s->settings_signal = 0;
    unregister_objects(s);
    if (s->conn) {
        g_signal_handlers_disconnect_by_data(s->conn, s);
        g_dbus_connection_close(s->conn, NULL, NULL, NULL);
        g_clear_object(&s->conn);
        venus_bus_renew_cancellable(&s->cancel); /* AddSettings, RequestName */
    }
    s->registered = FALSE;
    s->settings_done = FALSE;
}

static void on_closed(GDBusConnection *conn, gboolean remote_peer_vanished, GError *error, gpointer user_data)
{
    Svc *s = user_data;
    wb_log(s->inst, WB_LOG_WARNING, "the D-Bus connection closed%s%s; connecting again in %.3g s",
           error ? ": " : "", error ? error->message : "", (double)s->reconnect_delay / G_USEC_PER_SEC);
    drop_connection(s);
    if (s->running && !s->reconnect_timer)
        s->reconnect_timer = g_timeout_add((guint)(s->reconnect_delay / 1000), on_reconnect, s);
}

static void on_connected(GObject *source, GAsyncResult *res, gpointer user_data)
{
    Svc *s = user_data;
    g_autoptr(GError) error = NULL;
    GDBusConnection *conn = g_dbus_connection_new_for_address_finish(res, &error);
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
    if (!conn) {
        wb_log_ratelimited(s->inst, WB_LOG_ERROR, "connect", "cannot connect to the %s: %s; trying again every "
                           "%.3g s", s->bus.label, error->message,
                           (double)s->reconnect_delay / G_USEC_PER_SEC);
        s->reconnect_timer = g_timeout_add((guint)(s->reconnect_delay / 1000), on_reconnect, s);
        return;
    }
    s->conn = conn;
    g_dbus_connection_set_exit_on_close(conn, FALSE);
    g_signal_connect(conn, "closed", G_CALLBACK(on_closed), s);
    if (!register_objects(s, &error)) {
        wb_log(s->inst, WB_LOG_ERROR, "cannot register the service's paths: %s", error->message);
        drop_connection(s);
        return;
    }
    /* the settings service first, as Victron's library waits for it */
    s->settings_watch = g_bus_watch_name_on_connection(conn, SETTINGS_NAME, G_BUS_NAME_WATCHER_FLAGS_NONE,
                                                       on_settings_appeared, NULL, s, NULL);
    s->settings_timer = g_timeout_add((guint)(s->settings_timeout / 1000), on_settings_timeout, s);
}

/* A private connection: object paths belong to a connection, and every
 * Venus service has "/", "/DeviceInstance", ... (never g_bus_get()). */
static void connect_bus(Svc *s)
{
    g_autoptr(GError) error = NULL;
    if (!venus_bus_connect(&s->bus, s->cancel, on_connected, s, &error)) {
        wb_log_ratelimited(s->inst, WB_LOG_ERROR, "address", "no %s address: %s", s->bus.label, error->message);
        s->reconnect_timer = g_timeout_add((guint)(s->reconnect_delay / 1000), on_reconnect, s);
    }
}

/* ---- points ------------------------------------------------------------------------------ */

static void update_connected(Svc *s)
{
    gboolean any = FALSE;
    for (guint i = 0; i < s->items->len && !any; i++) {
        const Item *it = g_ptr_array_index(s->items, i);
        any = it->kind == ITEM_WIRED && it->value;
    }
    if (any != s->connected)
        wb_log(s->inst, any ? WB_LOG_NOTICE : WB_LOG_WARNING, "%s", any ? "data: /Connected 1"
                                                                        : "no fresh data: /Connected 0");
    s->connected = any;
    set_value(g_hash_table_lookup(s->by_path, "/Connected"), g_variant_new_int32(any ? 1 : 0));
}

static void on_point(const WbPoint *point, WbPointState state, gpointer user_data)
{
    Svc *s = user_data;
    const char *name = wb_point_get_name(point);
    for (guint i = 0; i < s->items->len; i++) {
        Item *it = g_ptr_array_index(s->items, i);
        if (it->kind != ITEM_WIRED || strcmp(it->point, name) != 0)
            continue;
        if (state != WB_POINT_VALID)
            set_value(it, NULL); /* stale or invalid: never a stale number as fresh */
        else if (wb_point_is_string(point))
            set_value(it, g_variant_new_string(wb_point_get_string(point)));
        else
            set_value(it, g_variant_new_double(wb_point_get_double(point)));
    }
}

static void on_batch_end(gpointer user_data)
{
    Svc *s = user_data;
    update_connected(s);
    flush(s);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void svc_free(Svc *s)
{
    if (s->items)
        g_ptr_array_unref(s->items);
    if (s->by_path)
        g_hash_table_unref(s->by_path);
    if (s->nodes)
        g_ptr_array_unref(s->nodes);
    if (s->node_regs)
        g_array_unref(s->node_regs);
    g_free(s->service);
    g_free(s->unique_id);
    venus_bus_clear(&s->bus);
    g_free(s);
}

static char *sanitise(const char *name)
{
    GString *out = g_string_new(NULL);
    for (const char *p = name; *p; p++)
        g_string_append_c(out, g_ascii_isalnum(*p) || *p == '_' ? *p : '_');
    if (!out->len || g_ascii_isdigit(out->str[0]))
        g_string_prepend_c(out, '_');
    return g_string_free(out, FALSE);
}

static gboolean valid_path(const char *path)
{
    return path[0] == '/' && g_variant_is_object_path(path) && strcmp(path, "/") != 0;
}

static int compare_items(gconstpointer a, gconstpointer b)
{
    return strcmp((*(Item *const *)a)->path, (*(Item *const *)b)->path);
}

static gboolean svc_create(WbInstance *instance, const WbConfig *config, gpointer *state, GError **error)
{
    Svc *s = g_new0(Svc, 1);
    s->inst = instance;
    s->type = wb_config_get_enum(config, "type");
    s->items = g_ptr_array_new_with_free_func(item_free);
    s->by_path = g_hash_table_new(g_str_hash, g_str_equal);
    s->nodes = g_ptr_array_new_with_free_func(g_free);
    s->node_regs = g_array_new(FALSE, FALSE, sizeof(guint));
    s->max_age = wb_config_get_duration(config, "max-age");
    s->settings_timeout = wb_config_get_duration(config, "settings-timeout");
    s->reconnect_delay = wb_config_get_duration(config, "reconnect-delay");
    s->device_instance = (int)wb_config_get_int(config, "device-instance");
    venus_bus_init(&s->bus, config);
    const char *name = wb_config_get_string(config, "name");
    g_autofree char *suffix = sanitise(name ? name : wb_instance_get_name(instance));
    s->service = g_strdup_printf("com.victronenergy.%s.%s", type_names[s->type], suffix);
    const char *uid = wb_config_get_string(config, "unique-id");
    s->unique_id = uid ? sanitise(uid) : g_strdup_printf("wattbridge_%s", suffix);

    /* the mandatory paths (vedbus.py add_mandatory_paths) */
    add_item(s, "/Mgmt/ProcessName", ITEM_FIXED)->value = g_variant_ref_sink(g_variant_new_string("wattbridge"));
    add_item(s, "/Mgmt/ProcessVersion", ITEM_FIXED)->value = g_variant_ref_sink(g_variant_new_string(WB_VERSION));
    const char *source = wb_config_get_string(config, "source");
    g_autofree char *connection = g_strdup_printf("wattbridge %s", source ? source : wb_instance_get_name(instance));
    add_item(s, "/Mgmt/Connection", ITEM_FIXED)->value = g_variant_ref_sink(g_variant_new_string(connection));
    add_item(s, "/DeviceInstance", ITEM_FIXED)->value = g_variant_ref_sink(g_variant_new_int32(s->device_instance));
    add_item(s, "/ProductId", ITEM_FIXED)->value =
        g_variant_ref_sink(g_variant_new_int32((gint32)wb_config_get_int(config, "product-id")));
    const char *product = wb_config_get_string(config, "product-name");
    add_item(s, "/ProductName", ITEM_FIXED)->value =
        g_variant_ref_sink(g_variant_new_string(product ? product : product_names[s->type]));
    add_item(s, "/FirmwareVersion", ITEM_FIXED)->value = g_variant_ref_sink(g_variant_new_string(WB_VERSION));
    add_item(s, "/HardwareVersion", ITEM_FIXED);
    add_item(s, "/Connected", ITEM_FIXED)->value = g_variant_ref_sink(g_variant_new_int32(0));
    Item *custom = add_item(s, "/CustomName", ITEM_FIXED);
    custom->value = g_variant_ref_sink(g_variant_new_string(wb_config_get_string(config, "custom-name")));
    custom->writable = TRUE;
    custom->vtype = 's';
    custom->setting = settings_path(s, "CustomName");
    if (s->type == T_PVINVERTER) {
        Item *pos = add_item(s, "/Position", ITEM_FIXED);
        pos->value = g_variant_ref_sink(g_variant_new_int32((gint32)wb_config_get_int(config, "position")));
        pos->writable = TRUE;
        pos->vtype = 'i';
        pos->has_range = TRUE;
        pos->min = 0;
        pos->max = 2;
        pos->setting = settings_path(s, "Position");
        pos->description = g_strdup("0 AC input 1, 1 AC output, 2 AC input 2");
    }

    /* the values, from points */
    if (source) {
        for (const DefaultWire *w = type_wires[s->type]; w->path; w++) {
            Item *it = add_item(s, w->path, ITEM_WIRED);
            it->point = g_strdup_printf("%s/%s", source, w->point);
            /* "%.1f V": one decimal, in V */
            it->decimals = w->format[2] - '0';
            g_free(it->unit);
            it->unit = g_strdup(strcmp(w->format + 4, " %%") == 0 ? "%" : w->format[4] ? w->format + 5 : "");
        }
    }
    for (const char *const *key = wb_config_get_family(config, "path."); *key; key++) {
        const char *path = *key + strlen("path.");
        const char *point = wb_config_get_string(config, *key);
        Item *known = g_hash_table_lookup(s->by_path, path);
        if (!valid_path(path) || (known && known->kind != ITEM_WIRED)) {
            wb_config_set_error(config, error, *key, "expected a Venus path such as /Ac/L1/Power%s",
                                known ? " that the service does not publish itself" : "");
            svc_free(s);
            return FALSE;
        }
        Item *it = add_item(s, path, ITEM_WIRED);
        g_free(it->point);
        it->point = g_strdup(point);
    }
    for (const char *const *key = wb_config_get_family(config, "setting."); *key; key++) {
        const char *path = *key + strlen("setting.");
        const char *const *parts = wb_config_get_list(config, *key);
        double v[3];
        gboolean integer = TRUE, ok = valid_path(path) && !g_hash_table_contains(s->by_path, path) && parts[0] &&
                                      parts[1] && parts[2] && !parts[3];
        for (int k = 0; ok && k < 3; k++) {
            char *end = NULL;
            v[k] = g_ascii_strtod(parts[k], &end);
            ok = end && !*end && end != parts[k] && isfinite(v[k]);
            integer &= !strpbrk(parts[k], ".eE");
        }
        if (!ok || v[1] > v[2] || v[0] < v[1] || v[0] > v[2]) {
            wb_config_set_error(config, error, *key, "expected a new Venus path and DEFAULT; MIN; MAX with MIN <= "
                                "DEFAULT <= MAX");
            svc_free(s);
            return FALSE;
        }
        Item *it = add_item(s, path, ITEM_SETTING);
        it->writable = TRUE;
        it->vtype = integer ? 'i' : 'd';
        it->has_range = TRUE;
        it->min = v[1];
        it->max = v[2];
        it->value = g_variant_ref_sink(integer ? g_variant_new_int32((gint32)v[0]) : g_variant_new_double(v[0]));
        g_autofree char *flat = g_strdelimit(g_strdup(path + 1), "/", '_');
        it->setting = settings_path(s, flat);
    }
    g_ptr_array_sort(s->items, compare_items);
    *state = s;
    return TRUE;
}

static gboolean svc_start(gpointer state, GError **error)
{
    Svc *s = state;
    s->running = TRUE;
    s->cancel = g_cancellable_new();
    for (guint i = 0; i < s->items->len; i++) {
        Item *it = g_ptr_array_index(s->items, i);
        if (it->kind == ITEM_SETTING)
            publish_setting(s, it); /* the default, until the settings service says otherwise */
        if (it->kind != ITEM_WIRED)
            continue;
        if (!s->sub)
            s->sub = wb_subscribe(s->inst, it->point, s->max_age, on_point, on_batch_end, s);
        else
            wb_subscription_add_pattern(s->sub, it->point);
    }
    connect_bus(s);
    return TRUE;
}

static void svc_stop(gpointer state)
{
    Svc *s = state;
    s->running = FALSE;
    wb_subscription_free(s->sub);
    s->sub = NULL;
    g_cancellable_cancel(s->cancel);
    g_clear_object(&s->cancel);
    if (s->reconnect_timer)
        g_source_remove(s->reconnect_timer);
    s->reconnect_timer = 0;
    drop_connection(s); /* closing the connection releases the name */
}

static void svc_destroy(gpointer state)
{
    svc_free(state);
}

static const WbPluginOps ops = {
    .struct_size = sizeof(WbPluginOps),
    .create = svc_create,
    .start = svc_start,
    .stop = svc_stop,
    .destroy = svc_destroy,
};

WB_PLUGIN_DEFINE("victron-dbus", WB_VERSION,
                 "Publishes a device as a Victron Venus OS D-Bus service (grid, pvinverter, acload, dcload, dcsystem, "
                 "battery)",
                 "GPL-3.0-or-later", WB_ROLE_SINK, options, &ops)
