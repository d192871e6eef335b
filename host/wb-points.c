/* The point store: named, timestamped values published in batches, and
 * subscriptions with MQTT-style wildcards and a per-subscription max-age. */
#include "wb-private.h"

#include <math.h>

struct _WbPoint {
    char *name;
    char *unit;
    WbPointState state;  /* the publisher's: valid or invalid */
    gboolean is_string;
    double value;        /* NaN until a number was published */
    char *text;
    gint64 time;         /* measurement time, real clock */
    gint64 mono;         /* the same instant on the monotonic clock */
    GPtrArray *subs;     /* WbSubscription* matching this point */
};

struct _WbSubscription {
    WbPointStore *store;
    WbInstance *instance;
    gpointer cleanup;
    GPtrArray *patterns;  /* char* */
    gint64 max_age;
    WbPointFunc point_func;
    WbBatchEndFunc end_func;
    gpointer user_data;
    GPtrArray *points;    /* WbPoint* matched */
    GHashTable *stale;    /* WbPoint* reported stale and not refreshed since */
    GSource *stale_source;
    GSource *initial_source;
    GPtrArray *initial_points; /* WbPoint* that existed when a pattern was added */
    gboolean removed;
};

struct _WbPointStore {
    GHashTable *points;   /* full name -> WbPoint* */
    GPtrArray *subs;      /* WbSubscription* */
    guint depth;          /* nesting of dispatches in progress */
    gboolean need_sweep;  /* subscriptions were removed during a dispatch */
};

enum { ENTRY_DOUBLE, ENTRY_STRING, ENTRY_INVALID };

typedef struct {
    char *name;
    int kind;
    double value;
    char *text;
    char *unit;
} Entry;

struct _WbBatch {
    WbInstance *instance;
    gint64 time;
    GArray *entries;
};

/* ---- names ------------------------------------------------------------ */

static gboolean level_char_ok(char c)
{
    return g_ascii_isalnum(c) || c == '-' || c == '_' || c == '.';
}

gboolean wb_point_name_is_valid(const char *name, gboolean allow_wildcards)
{
    if (!name || !*name)
        return FALSE;
    const char *p = name;
    for (;;) {
        const char *end = strchr(p, '/');
        gsize len = end ? (gsize)(end - p) : strlen(p);
        if (len == 0)
            return FALSE;
        if (allow_wildcards && len == 1 && (*p == '+' || *p == '#')) {
            if (*p == '#' && end)
                return FALSE; /* '#' only as the last level */
        } else {
            for (gsize i = 0; i < len; i++)
                if (!level_char_ok(p[i]))
                    return FALSE;
        }
        if (!end)
            return TRUE;
        p = end + 1;
    }
}

gboolean wb_point_pattern_match(const char *pattern, const char *name)
{
    const char *p = pattern, *n = name;
    for (;;) {
        if (p[0] == '#' && p[1] == '\0')
            return TRUE;
        const char *pe = strchr(p, '/');
        const char *ne = strchr(n, '/');
        gsize pl = pe ? (gsize)(pe - p) : strlen(p);
        gsize nl = ne ? (gsize)(ne - n) : strlen(n);
        if (!(pl == 1 && p[0] == '+') && (pl != nl || memcmp(p, n, pl) != 0))
            return FALSE;
        if (!pe && !ne)
            return TRUE;
        if (!ne) /* "a/#" also matches "a" */
            return pe && strcmp(pe + 1, "#") == 0;
        if (!pe)
            return FALSE;
        p = pe + 1;
        n = ne + 1;
    }
}

/* ---- store ------------------------------------------------------------ */

static void point_free(gpointer data)
{
    WbPoint *p = data;
    g_free(p->name);
    g_free(p->unit);
    g_free(p->text);
    g_ptr_array_unref(p->subs);
    g_free(p);
}

static void subscription_destroy(WbSubscription *sub);

WbPointStore *wb_point_store_new(void)
{
    WbPointStore *store = g_new0(WbPointStore, 1);
    store->points = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, point_free);
    store->subs = g_ptr_array_new();
    return store;
}

void wb_point_store_free(WbPointStore *store)
{
    if (!store)
        return;
    while (store->subs->len)
        subscription_destroy(g_ptr_array_index(store->subs, store->subs->len - 1));
    g_ptr_array_unref(store->subs);
    g_hash_table_unref(store->points);
    g_free(store);
}

const WbPoint *wb_point_store_lookup(WbPointStore *store, const char *name)
{
    return g_hash_table_lookup(store->points, name);
}

static void sweep(WbPointStore *store)
{
    store->need_sweep = FALSE;
    for (guint i = store->subs->len; i-- > 0;) {
        WbSubscription *sub = g_ptr_array_index(store->subs, i);
        if (sub->removed)
            subscription_destroy(sub);
    }
}

static void dispatch_enter(WbPointStore *store)
{
    store->depth++;
}

static void dispatch_leave(WbPointStore *store)
{
    if (--store->depth == 0 && store->need_sweep)
        sweep(store);
}

static WbPointState state_for(const WbSubscription *sub, const WbPoint *p, gint64 now)
{
    if (sub->max_age > 0 && now - p->mono > sub->max_age)
        return WB_POINT_STALE;
    return p->state;
}

/* Calls @sub for @p, keeping its record of what it has seen as stale. */
static void deliver(WbSubscription *sub, WbPoint *p, WbPointState state)
{
    if (state == WB_POINT_STALE)
        g_hash_table_add(sub->stale, p);
    else
        g_hash_table_remove(sub->stale, p);
    sub->point_func(p, state, sub->user_data);
}

static void schedule_expiry(WbSubscription *sub, gint64 expiry)
{
    gint64 ready = g_source_get_ready_time(sub->stale_source);
    if (ready < 0 || expiry < ready)
        g_source_set_ready_time(sub->stale_source, expiry);
}

static gboolean stale_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
    WbSubscription *sub = user_data;
    WbPointStore *store = sub->store;
    gint64 now = g_get_monotonic_time();
    gint64 next = G_MAXINT64;
    gboolean notified = FALSE;

    g_source_set_ready_time(source, -1);
    if (sub->removed)
        return G_SOURCE_CONTINUE;
    dispatch_enter(store);
    for (guint i = 0; i < sub->points->len && !sub->removed; i++) {
        WbPoint *p = g_ptr_array_index(sub->points, i);
        if (g_hash_table_contains(sub->stale, p))
            continue;
        gint64 expiry = p->mono + sub->max_age;
        if (expiry < now) {
            deliver(sub, p, WB_POINT_STALE);
            notified = TRUE;
        } else {
            next = MIN(next, expiry + 1);
        }
    }
    if (notified && sub->end_func && !sub->removed)
        sub->end_func(sub->user_data);
    if (next != G_MAXINT64 && !sub->removed)
        schedule_expiry(sub, next);
    dispatch_leave(store);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs stale_source_funcs = {
    .dispatch = stale_dispatch,
};

static void link_match(WbSubscription *sub, WbPoint *p)
{
    if (g_ptr_array_find(p->subs, sub, NULL))
        return; /* matched by another of its patterns */
    g_ptr_array_add(p->subs, sub);
    g_ptr_array_add(sub->points, p);
}

static gboolean sub_matches(const WbSubscription *sub, const char *name)
{
    for (guint i = 0; i < sub->patterns->len; i++)
        if (wb_point_pattern_match(g_ptr_array_index(sub->patterns, i), name))
            return TRUE;
    return FALSE;
}

static WbPoint *point_get(WbPointStore *store, const char *full_name)
{
    WbPoint *p = g_hash_table_lookup(store->points, full_name);
    if (p)
        return p;
    p = g_new0(WbPoint, 1);
    p->name = g_strdup(full_name);
    p->value = NAN;
    p->state = WB_POINT_INVALID;
    p->subs = g_ptr_array_new();
    g_hash_table_insert(store->points, p->name, p);
    for (guint i = 0; i < store->subs->len; i++) {
        WbSubscription *sub = g_ptr_array_index(store->subs, i);
        if (!sub->removed && sub_matches(sub, p->name))
            link_match(sub, p);
    }
    return p;
}

/* ---- batches ---------------------------------------------------------- */

WbBatch *wb_batch_new(WbInstance *instance)
{
    g_return_val_if_fail(instance != NULL, NULL);
    WbBatch *batch = g_new0(WbBatch, 1);
    batch->instance = instance;
    batch->time = g_get_real_time();
    batch->entries = g_array_new(FALSE, TRUE, sizeof(Entry));
    return batch;
}

void wb_batch_set_time(WbBatch *batch, gint64 real_time_us)
{
    g_return_if_fail(batch != NULL);
    batch->time = real_time_us;
}

static Entry *add_entry(WbBatch *batch, const char *name, int kind)
{
    g_return_val_if_fail(batch != NULL, NULL);
    if (!wb_point_name_is_valid(name, FALSE)) {
        g_critical("wb_batch_add: invalid point name '%s' (levels of [A-Za-z0-9_.-] separated by '/')",
                   name ? name : "(null)");
        return NULL;
    }
    /* the full name once, here: commit looks it up as it is */
    Entry e = {.name = g_strconcat(wb_instance_get_name(batch->instance), "/", name, NULL), .kind = kind, .value = NAN};
    g_array_append_val(batch->entries, e);
    return &g_array_index(batch->entries, Entry, batch->entries->len - 1);
}

void wb_batch_add_double(WbBatch *batch, const char *name, double value, const char *unit)
{
    Entry *e = add_entry(batch, name, isfinite(value) ? ENTRY_DOUBLE : ENTRY_INVALID);
    if (!e)
        return;
    e->value = value;
    e->unit = g_strdup(unit);
}

void wb_batch_add_string(WbBatch *batch, const char *name, const char *value)
{
    g_return_if_fail(value != NULL && g_utf8_validate(value, -1, NULL));
    Entry *e = add_entry(batch, name, ENTRY_STRING);
    if (e)
        e->text = g_strdup(value);
}

void wb_batch_add_invalid(WbBatch *batch, const char *name)
{
    add_entry(batch, name, ENTRY_INVALID);
}

void wb_batch_discard(WbBatch *batch)
{
    if (!batch)
        return;
    for (guint i = 0; i < batch->entries->len; i++) {
        Entry *e = &g_array_index(batch->entries, Entry, i);
        g_free(e->name);
        g_free(e->text);
        g_free(e->unit);
    }
    g_array_unref(batch->entries);
    g_free(batch);
}

static void point_update(WbPoint *p, Entry *e, gint64 time, gint64 mono)
{
    p->time = time;
    p->mono = mono;
    switch (e->kind) {
    case ENTRY_DOUBLE:
        p->state = WB_POINT_VALID;
        p->is_string = FALSE;
        p->value = e->value;
        g_clear_pointer(&p->text, g_free);
        break;
    case ENTRY_STRING:
        p->state = WB_POINT_VALID;
        p->is_string = TRUE;
        p->value = NAN;
        g_free(p->text);
        p->text = g_steal_pointer(&e->text); /* the batch is discarded after the commit */
        break;
    default:
        p->state = WB_POINT_INVALID;
        break;
    }
    const char *unit = e->unit;
    if (!unit && !p->unit) {
        const char *quantity = strrchr(p->name, '/');
        unit = wb_quantity_get_unit(quantity ? quantity + 1 : p->name);
        if (!unit)
            unit = "";
    }
    if (unit && g_strcmp0(unit, p->unit) != 0) {
        g_free(p->unit);
        p->unit = g_strdup(unit);
    }
}

void wb_batch_commit(WbBatch *batch)
{
    g_return_if_fail(batch != NULL);
    WbPointStore *store = wb_instance_get_points(batch->instance);
    gint64 now = g_get_monotonic_time();
    gint64 real_now = g_get_real_time();
    gint64 time = batch->time;
    gint64 mono = now - MAX(real_now - time, 0);
    /* the subscriptions this batch reached, each once (a callback may
     * commit a batch of its own meanwhile) */
    g_autoptr(GPtrArray) touched = g_ptr_array_new();

    dispatch_enter(store);
    for (guint i = 0; i < batch->entries->len; i++) {
        Entry *e = &g_array_index(batch->entries, Entry, i);
        WbPoint *p = point_get(store, e->name);
        point_update(p, e, time, mono);
        guint n = p->subs->len; /* subscriptions added by callbacks get their own delivery */
        for (guint j = 0; j < n; j++) {
            WbSubscription *sub = g_ptr_array_index(p->subs, j);
            if (sub->removed)
                continue;
            deliver(sub, p, state_for(sub, p, now));
            if (sub->max_age > 0)
                schedule_expiry(sub, p->mono + sub->max_age + 1);
            if (!g_ptr_array_find(touched, sub, NULL))
                g_ptr_array_add(touched, sub);
        }
    }
    for (guint i = 0; i < touched->len; i++) {
        WbSubscription *sub = g_ptr_array_index(touched, i);
        if (!sub->removed && sub->end_func)
            sub->end_func(sub->user_data);
    }
    dispatch_leave(store);
    wb_batch_discard(batch);
}

/* ---- subscriptions ---------------------------------------------------- */

static gboolean initial_delivery(gpointer user_data)
{
    WbSubscription *sub = user_data;
    WbPointStore *store = sub->store;
    gint64 now = g_get_monotonic_time();

    g_clear_pointer(&sub->initial_source, g_source_unref);
    g_autoptr(GPtrArray) pending = g_steal_pointer(&sub->initial_points);
    if (sub->removed || !pending)
        return G_SOURCE_REMOVE;
    dispatch_enter(store);
    for (guint i = 0; i < pending->len && !sub->removed; i++) {
        WbPoint *p = g_ptr_array_index(pending, i);
        deliver(sub, p, state_for(sub, p, now));
        if (sub->max_age > 0)
            schedule_expiry(sub, p->mono + sub->max_age + 1);
    }
    if (sub->end_func && !sub->removed)
        sub->end_func(sub->user_data);
    dispatch_leave(store);
    return G_SOURCE_REMOVE;
}

static void subscription_cleanup(gpointer data)
{
    WbSubscription *sub = data;
    sub->cleanup = NULL; /* the instance is dropping its registration */
    wb_subscription_free(sub);
}

static gboolean check_pattern(const char *func, const char *pattern)
{
    if (wb_point_name_is_valid(pattern, TRUE))
        return TRUE;
    g_critical("%s: invalid pattern '%s'", func, pattern ? pattern : "(null)");
    return FALSE;
}

/* Links the existing points @pattern matches and schedules their delivery. */
static void add_pattern(WbSubscription *sub, const char *pattern)
{
    g_ptr_array_add(sub->patterns, g_strdup(pattern));
    GHashTableIter iter;
    gpointer value;
    g_hash_table_iter_init(&iter, sub->store->points);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        WbPoint *p = value;
        if (!wb_point_pattern_match(pattern, p->name) || g_ptr_array_find(p->subs, sub, NULL))
            continue;
        link_match(sub, p);
        if (!sub->initial_points)
            sub->initial_points = g_ptr_array_new();
        g_ptr_array_add(sub->initial_points, p);
    }
    if (sub->initial_points && !sub->initial_source) {
        sub->initial_source = g_idle_source_new();
        g_source_set_callback(sub->initial_source, initial_delivery, sub, NULL);
        g_source_attach(sub->initial_source, NULL);
    }
}

WbSubscription *wb_subscribe(WbInstance *instance, const char *pattern, gint64 max_age_us,
                             WbPointFunc point_func, WbBatchEndFunc batch_end_func,
                             gpointer user_data)
{
    g_return_val_if_fail(instance != NULL, NULL);
    g_return_val_if_fail(point_func != NULL, NULL);
    g_return_val_if_fail(max_age_us >= 0, NULL);
    if (!check_pattern("wb_subscribe", pattern))
        return NULL;
    WbPointStore *store = wb_instance_get_points(instance);
    WbSubscription *sub = g_new0(WbSubscription, 1);
    sub->store = store;
    sub->instance = instance;
    sub->patterns = g_ptr_array_new_with_free_func(g_free);
    sub->max_age = max_age_us;
    sub->point_func = point_func;
    sub->end_func = batch_end_func;
    sub->user_data = user_data;
    sub->points = g_ptr_array_new();
    sub->stale = g_hash_table_new(NULL, NULL);
    sub->stale_source = g_source_new(&stale_source_funcs, sizeof(GSource));
    g_source_set_callback(sub->stale_source, NULL, sub, NULL);
    g_source_set_name(sub->stale_source, "wattbridge point staleness");
    g_source_attach(sub->stale_source, NULL);
    g_ptr_array_add(store->subs, sub);
    add_pattern(sub, pattern);
    sub->cleanup = wb_instance_add_cleanup(instance, subscription_cleanup, sub);
    return sub;
}

void wb_subscription_add_pattern(WbSubscription *sub, const char *pattern)
{
    g_return_if_fail(sub != NULL && !sub->removed);
    if (check_pattern("wb_subscription_add_pattern", pattern))
        add_pattern(sub, pattern);
}

static void subscription_destroy(WbSubscription *sub)
{
    WbPointStore *store = sub->store;
    for (guint i = 0; i < sub->points->len; i++)
        g_ptr_array_remove_fast(((WbPoint *)g_ptr_array_index(sub->points, i))->subs, sub);
    g_ptr_array_remove(store->subs, sub);
    if (sub->initial_source) {
        g_source_destroy(sub->initial_source);
        g_source_unref(sub->initial_source);
    }
    g_source_destroy(sub->stale_source);
    g_source_unref(sub->stale_source);
    g_ptr_array_unref(sub->points);
    if (sub->initial_points)
        g_ptr_array_unref(sub->initial_points);
    g_hash_table_unref(sub->stale);
    g_ptr_array_unref(sub->patterns);
    g_free(sub);
}

void wb_subscription_free(WbSubscription *sub)
{
    if (!sub || sub->removed)
        return;
    if (sub->cleanup) {
        wb_instance_remove_cleanup(sub->instance, sub->cleanup);
        sub->cleanup = NULL;
    }
    sub->removed = TRUE;
    if (sub->store->depth > 0)
        sub->store->need_sweep = TRUE; /* freed when the dispatch unwinds */
    else
        subscription_destroy(sub);
}

/* ---- point accessors -------------------------------------------------- */

const char *wb_point_get_name(const WbPoint *point)
{
    g_return_val_if_fail(point != NULL, NULL);
    return point->name;
}

WbPointState wb_point_get_state(const WbPoint *point)
{
    g_return_val_if_fail(point != NULL, WB_POINT_INVALID);
    return point->state;
}

gboolean wb_point_is_string(const WbPoint *point)
{
    g_return_val_if_fail(point != NULL, FALSE);
    return point->is_string;
}

double wb_point_get_double(const WbPoint *point)
{
    g_return_val_if_fail(point != NULL, NAN);
    return point->value;
}

const char *wb_point_get_string(const WbPoint *point)
{
    g_return_val_if_fail(point != NULL, NULL);
    return point->text;
}

const char *wb_point_get_unit(const WbPoint *point)
{
    g_return_val_if_fail(point != NULL, "");
    return point->unit ? point->unit : "";
}

gint64 wb_point_get_time(const WbPoint *point)
{
    g_return_val_if_fail(point != NULL, 0);
    return point->time;
}

gint64 wb_point_get_age(const WbPoint *point)
{
    g_return_val_if_fail(point != NULL, 0);
    return g_get_monotonic_time() - point->mono;
}
