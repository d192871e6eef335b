/* victron-dbus-reader: follows Victron Venus OS D-Bus paths as points
 * (source).
 *
 *   point.soc = com.victronenergy.system /Dc/Battery/Soc
 *   point.charge-current-limit = com.victronenergy.battery /Info/MaxChargeCurrent
 *
 * The service is a full bus name, or a class such as
 * com.victronenergy.battery (a trailing '*' is allowed): every service
 * whose name is that or starts with it and a dot matches, and the one with
 * the lowest /DeviceInstance is used, as Venus's systemcalc picks the
 * grid meter (ties: the first name in order).  When it goes away the next
 * one takes over; with none left the point is invalid.
 *
 * How (shared/reference/victron-dbus.md 1.1, 1.4, 7): a snapshot with the
 * root's GetItems, or GetValue per path from services older than GetItems
 * (velib before Oct 2021); then both ItemsChanged (on "/", what
 * dbus-modbus-client sends) and PropertiesChanged (per path), with one
 * match rule per service owner, not per path (Venus allows 1024 match
 * rules per connection); NameOwnerChanged on com.victronenergy.* (one more
 * rule) for services coming and going.  Any empty array is Venus's
 * invalid and becomes an invalid point.
 *
 * A Venus service only signals changes, so a value that does not change
 * would look old to a subscriber's max-age.  Every refresh-interval each
 * followed path is read again with GetValue, and the points are published
 * again only when every read answered within call-timeout: a hung service
 * lets its points go stale rather than repeat its last value as fresh. */
#include "venus-bus.h"

#include <math.h>

#define BUSITEM "com.victronenergy.BusItem"
#define VENUS_PREFIX "com.victronenergy"

typedef struct Reader Reader;
typedef struct Service Service;

/* One point: <instance>/<name> from @path of the service @spec selects. */
typedef struct {
    char *name;
    char *spec;       /* a bus name or a class: matches itself and spec.* */
    char *path;
    Service *from;    /* the service it follows now, or NULL */
    gboolean dirty;   /* publish at the next flush */
} Want;

/* One followed bus name. */
struct Service {
    Reader *r;
    char *name;
    char *owner;            /* its unique name */
    guint signal_id;        /* the one match rule for its signals */
    gboolean ready;         /* the snapshot answered */
    gboolean legacy;        /* no GetItems: GetValue per path */
    gboolean reading;       /* a snapshot or a refresh is under way */
    gboolean initial;       /* found by ListNames: counted in Reader.settling */
    int device_instance;    /* G_MAXINT: none */
    GHashTable *values;     /* path -> GVariant* (the unwrapped value), for the paths wanted */
    GPtrArray *paths;       /* the paths wanted from this service, /DeviceInstance first */
    GCancellable *cancel;   /* cancelled when the service goes */
};

struct Reader {
    WbInstance *inst;
    GPtrArray *wants;       /* Want* */
    GHashTable *services;   /* name -> Service* */
    VenusBus bus;
    GDBusConnection *conn;
    GCancellable *cancel;   /* the connection's life */
    guint owner_signal;
    guint settling;         /* services found at connect whose snapshot has not answered yet */
    guint refresh_timer, reconnect_timer;
    gint64 refresh_interval, call_timeout, reconnect_delay;
    gboolean running;
};

static const WbOptionSpec options[] = {
    {.name = "point.", .type = WB_OPTION_STRING, .flags = WB_OPTION_FAMILY,
     .help = "A point and the Venus path it follows: SERVICE PATH, e.g. point.soc = com.victronenergy.system "
             "/Dc/Battery/Soc; SERVICE may be a class (com.victronenergy.battery): the service of that class "
             "with the lowest DeviceInstance. Name a point after its quantity (soc, power, "
             "charge-current-limit) and it carries that quantity's unit"},
    VENUS_BUS_OPTIONS,
    {.name = "refresh-interval", .type = WB_OPTION_DURATION, .default_value = "2s", .min = 0.05, .max = 3600,
     .unit = "s", .help = "Read every followed path again this often and publish it as fresh when the service "
             "answers; set subscribers' max-age above it"},
    {.name = "call-timeout", .type = WB_OPTION_DURATION, .default_value = "2s", .min = 0.01, .max = 120,
     .unit = "s", .help = "How long a D-Bus call to a Venus service may take"},
    {NULL},
};

/* ---- matching ------------------------------------------------------------------------------ */

static gboolean spec_matches(const char *spec, const char *name)
{
    size_t n = strlen(spec);
    return strncmp(spec, name, n) == 0 && (name[n] == '\0' || name[n] == '.');
}

static gboolean wanted(Reader *r, const char *name)
{
    for (guint i = 0; i < r->wants->len; i++)
        if (spec_matches(((Want *)g_ptr_array_index(r->wants, i))->spec, name))
            return TRUE;
    return FALSE;
}

/* Venus's wire values (ve_utils.py unwrap_dbus_value): any empty array is
 * invalid; numbers of every integer type and booleans are numbers. */
static void add_value(WbBatch *batch, const char *point, GVariant *v)
{
    if (!v || (g_variant_is_container(v) && g_variant_n_children(v) == 0)) {
        wb_batch_add_invalid(batch, point);
        return;
    }
    double x;
    switch (g_variant_classify(v)) {
    case G_VARIANT_CLASS_DOUBLE: x = g_variant_get_double(v); break;
    case G_VARIANT_CLASS_INT32: x = g_variant_get_int32(v); break;
    case G_VARIANT_CLASS_UINT32: x = g_variant_get_uint32(v); break;
    case G_VARIANT_CLASS_INT64: x = (double)g_variant_get_int64(v); break;
    case G_VARIANT_CLASS_UINT64: x = (double)g_variant_get_uint64(v); break;
    case G_VARIANT_CLASS_INT16: x = g_variant_get_int16(v); break;
    case G_VARIANT_CLASS_UINT16: x = g_variant_get_uint16(v); break;
    case G_VARIANT_CLASS_BYTE: x = g_variant_get_byte(v); break;
    case G_VARIANT_CLASS_BOOLEAN: x = g_variant_get_boolean(v) ? 1 : 0; break;
    case G_VARIANT_CLASS_STRING:
        if (g_utf8_validate(g_variant_get_string(v, NULL), -1, NULL)) {
            wb_batch_add_string(batch, point, g_variant_get_string(v, NULL));
            return;
        }
        G_GNUC_FALLTHROUGH;
    default:
        /* a list or a dictionary is no point value */
        wb_batch_add_invalid(batch, point);
        return;
    }
    wb_batch_add_double(batch, point, x, NULL);
}

/* Which service each point follows: the lowest DeviceInstance among the
 * ready services that match, then the first name. */
static void select_services(Reader *r)
{
    if (r->settling)
        return; /* not before every service there at the start has answered: no flapping */
    for (guint i = 0; i < r->wants->len; i++) {
        Want *w = g_ptr_array_index(r->wants, i);
        Service *best = NULL;
        GHashTableIter it;
        gpointer value;
        g_hash_table_iter_init(&it, r->services);
        while (g_hash_table_iter_next(&it, NULL, &value)) {
            Service *s = value;
            if (!s->ready || !spec_matches(w->spec, s->name))
                continue;
            if (!best || s->device_instance < best->device_instance ||
                (s->device_instance == best->device_instance && strcmp(s->name, best->name) < 0))
                best = s;
        }
        if (best == w->from)
            continue;
        if (best)
            wb_log(r->inst, WB_LOG_INFO, "%s follows %s %s", w->name, best->name, w->path);
        else
            wb_log(r->inst, WB_LOG_WARNING, "%s: no %s left on the bus; invalid", w->name, w->spec);
        w->from = best;
        w->dirty = TRUE;
    }
}

/* Publishes the points marked dirty, or all that follow @fresh (a
 * refresh: their values were just read again), in one batch. */
static void flush(Reader *r, Service *fresh)
{
    if (!r->running)
        return;
    WbBatch *batch = NULL;
    for (guint i = 0; i < r->wants->len; i++) {
        Want *w = g_ptr_array_index(r->wants, i);
        if (!w->dirty && !(fresh && w->from == fresh))
            continue;
        w->dirty = FALSE;
        if (!batch)
            batch = wb_batch_new(r->inst);
        add_value(batch, w->name, w->from ? g_hash_table_lookup(w->from->values, w->path) : NULL);
    }
    if (batch)
        wb_batch_commit(batch);
}

/* A new value for @path of @s (floating or full reference, taken). */
static void store(Service *s, const char *path, GVariant *value)
{
    g_variant_take_ref(value);
    if (!g_ptr_array_find_with_equal_func(s->paths, path, g_str_equal, NULL)) {
        g_variant_unref(value);
        return;
    }
    GVariant *old = g_hash_table_lookup(s->values, path);
    gboolean same = old && g_variant_equal(old, value);
    g_hash_table_replace(s->values, g_strdup(path), value);
    if (same)
        return;
    if (strcmp(path, "/DeviceInstance") == 0) {
        s->device_instance = g_variant_is_of_type(value, G_VARIANT_TYPE_INT32) ? g_variant_get_int32(value)
                                                                               : G_MAXINT;
        if (s->ready)
            select_services(s->r);
    }
    for (guint i = 0; i < s->r->wants->len; i++) {
        Want *w = g_ptr_array_index(s->r->wants, i);
        if (w->from == s && strcmp(w->path, path) == 0)
            w->dirty = TRUE;
    }
}

/* ---- one service ------------------------------------------------------------------------------ */

static void service_free(gpointer data)
{
    Service *s = data;
    g_cancellable_cancel(s->cancel);
    g_object_unref(s->cancel);
    if (s->signal_id && s->r->conn)
        g_dbus_connection_signal_unsubscribe(s->r->conn, s->signal_id);
    g_hash_table_unref(s->values);
    g_ptr_array_unref(s->paths);
    g_free(s->name);
    g_free(s->owner);
    g_free(s);
}

static void on_signal(GDBusConnection *conn, const char *sender, const char *path, const char *iface,
                      const char *signal, GVariant *params, gpointer user_data)
{
    Service *s = user_data;
    if (strcmp(signal, "ItemsChanged") == 0 && g_variant_is_of_type(params, G_VARIANT_TYPE("(a{sa{sv}})"))) {
        /* dbus-modbus-client's batch: full paths -> {Value, Text} */
        g_autoptr(GVariant) items = g_variant_get_child_value(params, 0);
        GVariantIter it;
        const char *item_path;
        GVariant *props;
        g_variant_iter_init(&it, items);
        while (g_variant_iter_loop(&it, "{&s@a{sv}}", &item_path, &props)) {
            GVariant *value = g_variant_lookup_value(props, "Value", NULL);
            if (value)
                store(s, item_path, value);
        }
    } else if (strcmp(signal, "PropertiesChanged") == 0 && g_variant_is_of_type(params, G_VARIANT_TYPE("(a{sv})"))) {
        g_autoptr(GVariant) props = g_variant_get_child_value(params, 0);
        GVariant *value = g_variant_lookup_value(props, "Value", NULL);
        if (value)
            store(s, path, value);
    } else {
        return;
    }
    if (s->ready)
        flush(s->r, NULL);
}


/* ---- reading: a snapshot with GetItems, GetValue per path otherwise ------------------------- */

/* One of the services there at the start has answered (or failed, or
 * gone): with the last, choose and publish. */
static void settle_one(Reader *r)
{
    if (r->settling && --r->settling == 0) {
        select_services(r);
        flush(r, NULL);
    }
}

/* A path the service does not have (yet): invalid, and said once. */
static void missing(Service *s, const char *path)
{
    g_autofree char *key = g_strdup_printf("missing:%s%s", s->name, path);
    wb_log_ratelimited(s->r->inst, WB_LOG_NOTICE, key, "%s has no %s (yet): invalid", s->name, path);
    store(s, path, g_variant_new_array(G_VARIANT_TYPE_INT32, NULL, 0));
}

/* A read answered (@ok) or failed: a refresh publishes its points again
 * only when every path answered. */
static void finish_read(Service *s, gboolean ok)
{
    s->reading = FALSE;
    gboolean initial = s->initial;
    s->initial = FALSE;
    /* failed: the points age; the next refresh tries again */
    if (ok && !s->ready) {
        s->ready = TRUE;
        wb_log(s->r->inst, WB_LOG_INFO, "following %s (%s, DeviceInstance %d)%s", s->name, s->owner,
               s->device_instance == G_MAXINT ? -1 : s->device_instance,
               s->legacy ? ", a service without GetItems" : "");
        select_services(s->r);
    }
    if (ok)
        flush(s->r, s);
    if (initial)
        settle_one(s->r);
}

/* One round of GetValue calls, freed by its last answer.  Once the
 * service is gone its calls are cancelled and @s is not touched. */
typedef struct {
    Service *s;
    guint pending;
    gboolean failed;
} Round;

typedef struct {
    Round *round;
    char *path;
} PathCall;

/* The service did not answer (as opposed to: the path is not there). */
static gboolean no_answer(const GError *error)
{
    return g_error_matches(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT) ||
           g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CLOSED) ||
           g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN) ||
           g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_NAME_HAS_NO_OWNER) ||
           g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_NO_REPLY) ||
           g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_TIMEOUT) ||
           g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_TIMED_OUT) ||
           g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_DISCONNECTED);
}

static void on_get_value(GObject *source, GAsyncResult *res, gpointer user_data)
{
    PathCall *call = user_data;
    Round *round = call->round;
    g_autofree char *path = call->path;
    g_free(call);
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &error);
    gboolean cancelled = g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    if (!cancelled) {
        Service *s = round->s;
        if (reply) {
            GVariant *value = NULL;
            g_variant_get(reply, "(v)", &value);
            store(s, path, value);
        } else if (no_answer(error)) {
            if (!round->failed)
                wb_log_ratelimited(s->r->inst, WB_LOG_WARNING, s->name, "%s %s: %s", s->name, path, error->message);
            round->failed = TRUE;
        } else {
            /* UnknownObject and the like: velib's DbusMonitor takes any
             * other error as "no such path (yet)" */
            missing(s, path);
        }
    }
    if (--round->pending > 0)
        return;
    if (!cancelled)
        finish_read(round->s, !round->failed);
    g_free(round);
}

static void read_paths(Service *s)
{
    Round *round = g_new0(Round, 1);
    round->s = s;
    round->pending = s->paths->len;
    for (guint i = 0; i < s->paths->len; i++) {
        PathCall *call = g_new0(PathCall, 1);
        call->round = round;
        call->path = g_strdup(g_ptr_array_index(s->paths, i));
        g_dbus_connection_call(s->r->conn, s->owner, call->path, BUSITEM, "GetValue", NULL, G_VARIANT_TYPE("(v)"),
                               G_DBUS_CALL_FLAGS_NO_AUTO_START, (int)(s->r->call_timeout / 1000), s->cancel,
                               on_get_value, call);
    }
}

static void on_get_items(GObject *source, GAsyncResult *res, gpointer user_data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &error);
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
    Service *s = user_data;
    if (!reply && no_answer(error)) {
        wb_log_ratelimited(s->r->inst, WB_LOG_WARNING, s->name, "%s GetItems: %s", s->name, error->message);
        finish_read(s, FALSE);
        return;
    }
    if (!reply) {
        /* velib before Oct 2021 has no GetItems (UnknownMethod) */
        s->legacy = TRUE;
        read_paths(s);
        return;
    }
    g_autoptr(GVariant) items = g_variant_get_child_value(reply, 0);
    for (guint i = 0; i < s->paths->len; i++) {
        const char *path = g_ptr_array_index(s->paths, i);
        g_autoptr(GVariant) props = g_variant_lookup_value(items, path, G_VARIANT_TYPE_VARDICT);
        GVariant *value = props ? g_variant_lookup_value(props, "Value", NULL) : NULL;
        if (value)
            store(s, path, value);
        else if (strcmp(path, "/DeviceInstance") == 0)
            store(s, path, g_variant_new_array(G_VARIANT_TYPE_INT32, NULL, 0)); /* com.victronenergy.settings */
        else
            missing(s, path);
    }
    finish_read(s, TRUE);
}

/* The first read is one GetItems; refreshes read the wanted paths only. */
static void read_service(Service *s)
{
    if (s->reading)
        return;
    s->reading = TRUE;
    if (s->ready || s->legacy)
        read_paths(s);
    else
        g_dbus_connection_call(s->r->conn, s->owner, "/", BUSITEM, "GetItems", NULL,
                               G_VARIANT_TYPE("(a{sa{sv}})"), G_DBUS_CALL_FLAGS_NO_AUTO_START,
                               (int)(s->r->call_timeout / 1000), s->cancel, on_get_items, s);
}

/* ---- services coming and going ------------------------------------------------------------ */

static void add_path(GPtrArray *paths, const char *path)
{
    if (!g_ptr_array_find_with_equal_func(paths, path, g_str_equal, NULL))
        g_ptr_array_add(paths, g_strdup(path));
}

static void service_remove(Reader *r, const char *name, const char *why)
{
    Service *s = g_hash_table_lookup(r->services, name);
    if (!s)
        return;
    if (why)
        wb_log(r->inst, WB_LOG_NOTICE, "%s %s", name, why);
    gboolean initial = s->initial;
    for (guint i = 0; i < r->wants->len; i++) {
        Want *w = g_ptr_array_index(r->wants, i);
        if (w->from == s) {
            w->from = NULL;
            w->dirty = TRUE;
        }
    }
    g_hash_table_remove(r->services, name);
    if (initial)
        settle_one(r);
}

/* @name is owned by @owner now: follow it, with one match rule for all
 * its signals (sender = the unique name, interface BusItem). */
static Service *service_add(Reader *r, const char *name, const char *owner)
{
    Service *old = g_hash_table_lookup(r->services, name);
    if (old && strcmp(old->owner, owner) == 0)
        return old;
    service_remove(r, name, old ? "restarted" : NULL);
    Service *s = g_new0(Service, 1);
    s->r = r;
    s->name = g_strdup(name);
    s->owner = g_strdup(owner);
    s->device_instance = G_MAXINT;
    s->cancel = g_cancellable_new();
    s->values = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_variant_unref);
    s->paths = g_ptr_array_new_with_free_func(g_free);
    add_path(s->paths, "/DeviceInstance");
    for (guint i = 0; i < r->wants->len; i++) {
        Want *w = g_ptr_array_index(r->wants, i);
        if (spec_matches(w->spec, name))
            add_path(s->paths, w->path);
    }
    g_hash_table_insert(r->services, s->name, s);
    s->signal_id = g_dbus_connection_signal_subscribe(r->conn, owner, BUSITEM, NULL, NULL, NULL,
                                                      G_DBUS_SIGNAL_FLAGS_NONE, on_signal, s, NULL);
    read_service(s);
    return s;
}

static void on_name_owner_changed(GDBusConnection *conn, const char *sender, const char *path, const char *iface,
                                  const char *signal, GVariant *params, gpointer user_data)
{
    Reader *r = user_data;
    const char *name, *old_owner, *new_owner;
    g_variant_get(params, "(&s&s&s)", &name, &old_owner, &new_owner);
    if (!wanted(r, name))
        return;
    if (*new_owner) {
        service_add(r, name, new_owner);
    } else {
        service_remove(r, name, "left the bus");
        select_services(r);
        flush(r, NULL);
    }
}

static void on_name_owner(GObject *source, GAsyncResult *res, gpointer user_data)
{
    g_autofree char *name = user_data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &error);
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
    Reader *r = g_object_get_data(source, "wb-reader");
    if (G_DBUS_CONNECTION(source) != r->conn)
        return; /* a reply from a connection closed since */
    if (!reply) {
        settle_one(r); /* gone again: NameOwnerChanged said so */
        return;
    }
    const char *owner;
    g_variant_get(reply, "(&s)", &owner);
    Service *s = service_add(r, name, owner);
    if (s->reading && !s->ready)
        s->initial = TRUE; /* its snapshot settles it */
    else
        settle_one(r);
}

static void on_list_names(GObject *source, GAsyncResult *res, gpointer user_data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &error);
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
    Reader *r = user_data;
    if (G_DBUS_CONNECTION(source) != r->conn)
        return;
    if (!reply) {
        wb_log(r->inst, WB_LOG_ERROR, "ListNames failed: %s; reading what NameOwnerChanged brings", error->message);
        return;
    }
    g_autofree const char **names = NULL;
    g_variant_get(reply, "(^a&s)", &names);
    for (const char **n = names; *n; n++)
        r->settling += wanted(r, *n);
    for (const char **n = names; *n; n++)
        if (wanted(r, *n))
            g_dbus_connection_call(r->conn, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                   "GetNameOwner", g_variant_new("(s)", *n), G_VARIANT_TYPE("(s)"),
                                   G_DBUS_CALL_FLAGS_NONE, (int)(r->call_timeout / 1000), r->cancel, on_name_owner,
                                   g_strdup(*n));
    /* a point whose service is not there: invalid until it comes */
    for (guint i = 0; i < r->wants->len; i++) {
        Want *w = g_ptr_array_index(r->wants, i);
        gboolean found = FALSE;
        for (const char **n = names; *n && !found; n++)
            found = spec_matches(w->spec, *n);
        if (!found) {
            wb_log(r->inst, WB_LOG_NOTICE, "%s: waiting for %s", w->name, w->spec);
            w->dirty = TRUE;
        }
    }
    flush(r, NULL);
}

static gboolean on_refresh(gpointer user_data)
{
    Reader *r = user_data;
    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, r->services);
    while (g_hash_table_iter_next(&it, NULL, &value))
        read_service(value);
    return G_SOURCE_CONTINUE;
}

/* ---- the bus connection ------------------------------------------------------------------------ */

static void connect_bus(Reader *r);

static gboolean on_reconnect(gpointer user_data)
{
    Reader *r = user_data;
    r->reconnect_timer = 0;
    connect_bus(r);
    return G_SOURCE_REMOVE;
}

static void drop_connection(Reader *r)
{
    r->settling = 0;
    g_hash_table_remove_all(r->services); /* their calls are cancelled */
    for (guint i = 0; i < r->wants->len; i++)
        ((Want *)g_ptr_array_index(r->wants, i))->from = NULL;
    if (r->refresh_timer)
        g_source_remove(r->refresh_timer);
    r->refresh_timer = 0;
    if (r->conn) {
        if (r->owner_signal)
            g_dbus_connection_signal_unsubscribe(r->conn, r->owner_signal);
        r->owner_signal = 0;
        g_signal_handlers_disconnect_by_data(r->conn, r);
        g_dbus_connection_close(r->conn, NULL, NULL, NULL);
        g_clear_object(&r->conn);
        venus_bus_renew_cancellable(&r->cancel);
    }
}

static void on_closed(GDBusConnection *conn, gboolean remote_peer_vanished, GError *error, gpointer user_data)
{
    Reader *r = user_data;
    wb_log(r->inst, WB_LOG_WARNING, "the %s connection closed%s%s; every point is invalid; connecting again in "
           "%.3g s", r->bus.label, error ? ": " : "", error ? error->message : "",
           (double)r->reconnect_delay / G_USEC_PER_SEC);
    drop_connection(r);
    for (guint i = 0; i < r->wants->len; i++)
        ((Want *)g_ptr_array_index(r->wants, i))->dirty = TRUE;
    flush(r, NULL);
    if (r->running && !r->reconnect_timer)
        r->reconnect_timer = g_timeout_add((guint)(r->reconnect_delay / 1000), on_reconnect, r);
}

static void on_connected(GObject *source, GAsyncResult *res, gpointer user_data)
{
    g_autoptr(GError) error = NULL;
    GDBusConnection *conn = g_dbus_connection_new_for_address_finish(res, &error);
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
    Reader *r = user_data;
    if (!conn) {
        wb_log_ratelimited(r->inst, WB_LOG_ERROR, "connect", "cannot connect to the %s: %s; trying again every "
                           "%.3g s", r->bus.label, error->message, (double)r->reconnect_delay / G_USEC_PER_SEC);
        r->reconnect_timer = g_timeout_add((guint)(r->reconnect_delay / 1000), on_reconnect, r);
        return;
    }
    r->conn = conn;
    g_dbus_connection_set_exit_on_close(conn, FALSE);
    g_signal_connect(conn, "closed", G_CALLBACK(on_closed), r);
    g_object_set_data(G_OBJECT(conn), "wb-reader", r);
    /* subscribe before listing, so that no service slips between the two */
    r->owner_signal = g_dbus_connection_signal_subscribe(
        conn, "org.freedesktop.DBus", "org.freedesktop.DBus", "NameOwnerChanged", "/org/freedesktop/DBus",
        VENUS_PREFIX, G_DBUS_SIGNAL_FLAGS_MATCH_ARG0_NAMESPACE, on_name_owner_changed, r, NULL);
    g_dbus_connection_call(conn, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                           "ListNames", NULL, G_VARIANT_TYPE("(as)"), G_DBUS_CALL_FLAGS_NONE,
                           (int)(r->call_timeout / 1000), r->cancel, on_list_names, r);
    r->refresh_timer = g_timeout_add((guint)(r->refresh_interval / 1000), on_refresh, r);
    wb_log(r->inst, WB_LOG_INFO, "on the %s", r->bus.label);
}

static void connect_bus(Reader *r)
{
    g_autoptr(GError) error = NULL;
    if (!venus_bus_connect(&r->bus, r->cancel, on_connected, r, &error)) {
        wb_log_ratelimited(r->inst, WB_LOG_ERROR, "address", "no %s address: %s", r->bus.label, error->message);
        r->reconnect_timer = g_timeout_add((guint)(r->reconnect_delay / 1000), on_reconnect, r);
    }
}

/* ---- lifecycle ---------------------------------------------------------------------------------- */

static void want_free(gpointer data)
{
    Want *w = data;
    g_free(w->name);
    g_free(w->spec);
    g_free(w->path);
    g_free(w);
}

static void reader_free(Reader *r)
{
    if (r->services)
        g_hash_table_unref(r->services);
    g_ptr_array_unref(r->wants);
    venus_bus_clear(&r->bus);
    g_free(r);
}

static gboolean reader_create(WbInstance *instance, const WbConfig *config, gpointer *state, GError **error)
{
    Reader *r = g_new0(Reader, 1);
    r->inst = instance;
    r->wants = g_ptr_array_new_with_free_func(want_free);
    r->refresh_interval = wb_config_get_duration(config, "refresh-interval");
    r->call_timeout = wb_config_get_duration(config, "call-timeout");
    r->reconnect_delay = wb_config_get_duration(config, "reconnect-delay");
    venus_bus_init(&r->bus, config);
    for (const char *const *key = wb_config_get_family(config, "point."); *key; key++) {
        const char *name = *key + strlen("point.");
        g_auto(GStrv) parts = g_strsplit_set(wb_config_get_string(config, *key), " \t", -1);
        const char *words[3] = {NULL};
        int n = 0;
        for (char **p = parts; *p; p++)
            if (**p && n < 3)
                words[n++] = *p;
        g_autofree char *spec = g_strdup(words[0]);
        if (spec) {
            size_t len = strlen(spec);
            while (len && (spec[len - 1] == '*' || spec[len - 1] == '.'))
                spec[--len] = '\0';
        }
        if (!wb_point_name_is_valid(name, FALSE)) {
            wb_config_set_error(config, error, *key, "\"%s\" is not a point name: levels of [A-Za-z0-9_.-] "
                                "separated by '/'", name);
            reader_free(r);
            return FALSE;
        }
        if (n != 2 || !spec_matches(VENUS_PREFIX, spec) || strcmp(spec, VENUS_PREFIX) == 0 ||
            !g_dbus_is_name(spec) || !g_variant_is_object_path(words[1]) || strcmp(words[1], "/") == 0) {
            wb_config_set_error(config, error, *key, "expected SERVICE PATH, e.g. com.victronenergy.system "
                                "/Dc/Battery/Soc or com.victronenergy.battery /Info/MaxChargeCurrent");
            reader_free(r);
            return FALSE;
        }
        Want *w = g_new0(Want, 1);
        w->name = g_strdup(name);
        w->spec = g_steal_pointer(&spec);
        w->path = g_strdup(words[1]);
        g_ptr_array_add(r->wants, w);
    }
    if (!r->wants->len) {
        wb_config_set_error(config, error, NULL, "no point.<name> = SERVICE PATH: nothing to read");
        reader_free(r);
        return FALSE;
    }
    r->services = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, service_free);
    *state = r;
    return TRUE;
}

static gboolean reader_start(gpointer state, GError **error)
{
    Reader *r = state;
    r->running = TRUE;
    r->cancel = g_cancellable_new();
    connect_bus(r);
    return TRUE;
}

static void reader_stop(gpointer state)
{
    Reader *r = state;
    r->running = FALSE;
    g_cancellable_cancel(r->cancel);
    g_clear_object(&r->cancel);
    if (r->reconnect_timer)
        g_source_remove(r->reconnect_timer);
    r->reconnect_timer = 0;
    drop_connection(r);
}

static void reader_destroy(gpointer state)
{
    reader_free(state);
}

static const WbPluginOps ops = {
    .struct_size = sizeof(WbPluginOps),
    .create = reader_create,
    .start = reader_start,
    .stop = reader_stop,
    .destroy = reader_destroy,
};

WB_PLUGIN_DEFINE("victron-dbus-reader", WB_VERSION,
                 "Follows Victron Venus OS D-Bus paths (battery state of charge, CCL/DCL, grid power, ...) as points",
                 "GPL-3.0-or-later", WB_ROLE_SOURCE, options, &ops)
