/* Instances and the host services bound to them: state and data
 * directories, cross-thread invocation, timers and fd watches.  Everything
 * an instance owns is registered as a cleanup and removed when it stops. */
#include "wb-instance.h"

#include <errno.h>
#include <glib/gstdio.h>

typedef struct {
    WbCleanupFunc func;
    gpointer data;
} Cleanup;

WbInstance *wb_instance_new(WbDaemon *daemon, WbPlugin *plugin, const char *name, WbConfig *config)
{
    WbInstance *inst = g_new0(WbInstance, 1);
    inst->ref = 1;
    inst->daemon = daemon;
    inst->plugin = plugin;
    inst->name = g_strdup(name);
    inst->config = config;
    return inst;
}

WbInstance *wb_instance_new_internal(WbDaemon *daemon, const char *name)
{
    return wb_instance_new(daemon, NULL, name, NULL);
}

WbInstance *wb_instance_ref(WbInstance *inst)
{
    g_atomic_int_inc(&inst->ref);
    return inst;
}

void wb_instance_unref(WbInstance *inst)
{
    if (!inst || !g_atomic_int_dec_and_test(&inst->ref))
        return;
    g_assert(inst->cleanups == NULL);
    g_free(inst->name);
    g_free(inst->state_dir);
    g_free(inst->fingerprint);
    wb_config_free(inst->config);
    g_free(inst);
}

const char *wb_instance_get_name(WbInstance *inst)
{
    g_return_val_if_fail(inst != NULL, NULL);
    return inst->name;
}

const WbConfig *wb_instance_get_config(WbInstance *inst)
{
    g_return_val_if_fail(inst != NULL, NULL);
    return inst->config;
}

WbPointStore *wb_instance_get_points(WbInstance *inst)
{
    return wb_daemon_get_points(inst->daemon);
}

gboolean wb_instance_is_running(WbInstance *inst)
{
    return g_atomic_int_get(&inst->running) != 0;
}

void wb_instance_set_running(WbInstance *inst, gboolean running)
{
    g_atomic_int_set(&inst->running, running ? 1 : 0);
}

gpointer wb_instance_add_cleanup(WbInstance *inst, WbCleanupFunc func, gpointer data)
{
    Cleanup *c = g_new0(Cleanup, 1);
    c->func = func;
    c->data = data;
    inst->cleanups = g_list_prepend(inst->cleanups, c);
    return c;
}

void wb_instance_remove_cleanup(WbInstance *inst, gpointer handle)
{
    if (!handle)
        return;
    inst->cleanups = g_list_remove(inst->cleanups, handle);
    g_free(handle);
}

void wb_instance_run_cleanups(WbInstance *inst)
{
    /* Newest first: a server registered after a timer goes before it. */
    while (inst->cleanups) {
        Cleanup *c = inst->cleanups->data;
        inst->cleanups = g_list_delete_link(inst->cleanups, inst->cleanups);
        WbCleanupFunc func = c->func;
        gpointer data = c->data;
        g_free(c);
        func(data);
    }
}

const char *wb_instance_state_dir(WbInstance *inst, GError **error)
{
    g_return_val_if_fail(inst != NULL, NULL);
    if (inst->state_dir)
        return inst->state_dir;
    const char *base = wb_daemon_get_state_dir(inst->daemon);
    g_autofree char *dir = g_build_filename(base, inst->name, NULL);
    if (g_mkdir_with_parents(dir, 0750) != 0) {
        int err = errno;
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_IO, "cannot create the state directory %s: %s", dir,
                    g_strerror(err));
        return NULL;
    }
    inst->state_dir = g_steal_pointer(&dir);
    return inst->state_dir;
}

char *wb_instance_find_data_file(WbInstance *inst, const char *name, GError **error)
{
    g_return_val_if_fail(inst != NULL && name != NULL, NULL);
    if (g_path_is_absolute(name)) {
        if (g_file_test(name, G_FILE_TEST_IS_REGULAR))
            return g_strdup(name);
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "%s: no such file", name);
        return NULL;
    }
    const char *const *dirs = wb_daemon_get_data_dirs(inst->daemon);
    for (guint i = 0; dirs && dirs[i]; i++) {
        char *path = g_build_filename(dirs[i], name, NULL);
        if (g_file_test(path, G_FILE_TEST_IS_REGULAR))
            return path;
        g_free(path);
    }
    g_autofree char *searched = dirs ? g_strjoinv(", ", (char **)dirs) : g_strdup("(none)");
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "no data file '%s' in %s", name, searched);
    return NULL;
}

/* ---- invoke ----------------------------------------------------------- */

typedef struct {
    WbInstance *inst;
    GSourceFunc func;
    gpointer data;
    GDestroyNotify destroy;
} Invoke;

static gboolean invoke_dispatch(gpointer user_data)
{
    Invoke *iv = user_data;
    if (wb_instance_is_running(iv->inst))
        iv->func(iv->data);
    return G_SOURCE_REMOVE;
}

static void invoke_free(gpointer user_data)
{
    Invoke *iv = user_data;
    if (iv->destroy)
        iv->destroy(iv->data);
    wb_instance_unref(iv->inst);
    g_free(iv);
}

void wb_instance_invoke(WbInstance *inst, GSourceFunc func, gpointer data, GDestroyNotify destroy)
{
    g_return_if_fail(inst != NULL && func != NULL);
    Invoke *iv = g_new0(Invoke, 1);
    iv->inst = wb_instance_ref(inst);
    iv->func = func;
    iv->data = data;
    iv->destroy = destroy;
    /* Always through an idle source, also from the main thread: the caller
     * never runs @func re-entrantly. */
    GSource *source = g_idle_source_new();
    g_source_set_priority(source, G_PRIORITY_DEFAULT);
    g_source_set_callback(source, invoke_dispatch, iv, invoke_free);
    g_source_set_name(source, "wattbridge invoke");
    g_source_attach(source, NULL);
    g_source_unref(source);
}

/* ---- timers ----------------------------------------------------------- */

struct _WbTimer {
    WbInstance *inst;
    gpointer cleanup;
    WbTimerFunc func;
    gpointer data;
    GSource *source;
    gboolean repeat;
    gboolean in_dispatch;
    gboolean freed;
};

static void timer_cancel(WbTimer *timer)
{
    if (timer->source) {
        g_source_destroy(timer->source);
        g_clear_pointer(&timer->source, g_source_unref);
    }
}

static gboolean timer_dispatch(gpointer user_data)
{
    WbTimer *timer = user_data;
    GSource *fired = g_main_current_source();

    if (!timer->repeat)
        timer_cancel(timer); /* one-shot: stopped before the callback, which may restart it */
    timer->in_dispatch = TRUE;
    timer->func(timer->data);
    timer->in_dispatch = FALSE;
    if (timer->freed) {
        timer_cancel(timer);
        g_free(timer);
        return G_SOURCE_REMOVE;
    }
    /* The callback may have restarted the timer with a new source. */
    return timer->source == fired ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static void timer_cleanup(gpointer data)
{
    WbTimer *timer = data;
    timer->cleanup = NULL;
    wb_timer_free(timer);
}

WbTimer *wb_timer_new(WbInstance *inst, WbTimerFunc func, gpointer user_data)
{
    g_return_val_if_fail(inst != NULL && func != NULL, NULL);
    WbTimer *timer = g_new0(WbTimer, 1);
    timer->inst = inst;
    timer->func = func;
    timer->data = user_data;
    timer->cleanup = wb_instance_add_cleanup(inst, timer_cleanup, timer);
    return timer;
}

void wb_timer_start(WbTimer *timer, guint interval_ms, gboolean repeat)
{
    g_return_if_fail(timer != NULL && !timer->freed);
    timer_cancel(timer);
    timer->repeat = repeat;
    timer->source = g_timeout_source_new(interval_ms);
    g_source_set_callback(timer->source, timer_dispatch, timer, NULL);
    g_source_set_name(timer->source, "wattbridge timer");
    g_source_attach(timer->source, NULL);
}

void wb_timer_stop(WbTimer *timer)
{
    g_return_if_fail(timer != NULL);
    timer_cancel(timer);
}

gboolean wb_timer_is_running(WbTimer *timer)
{
    g_return_val_if_fail(timer != NULL, FALSE);
    return timer->source != NULL;
}

void wb_timer_free(WbTimer *timer)
{
    if (!timer || timer->freed)
        return;
    if (timer->cleanup) {
        wb_instance_remove_cleanup(timer->inst, timer->cleanup);
        timer->cleanup = NULL;
    }
    timer->freed = TRUE;
    if (timer->in_dispatch)
        return; /* freed when the callback returns */
    timer_cancel(timer);
    g_free(timer);
}

/* ---- fd watches ------------------------------------------------------- */

typedef struct {
    GSource source;
    WbWatch *watch;
} WatchSource;

struct _WbWatch {
    WbInstance *inst;
    gpointer cleanup;
    int fd;
    WbWatchFunc func;
    gpointer data;
    GSource *source;
    gpointer tag;
    gboolean in_dispatch;
    gboolean freed;
};

static gboolean watch_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
    WbWatch *watch = ((WatchSource *)source)->watch;
    GIOCondition cond = g_source_query_unix_fd(source, watch->tag);
    if (!cond)
        return G_SOURCE_CONTINUE;
    watch->in_dispatch = TRUE;
    watch->func(watch->fd, cond, watch->data);
    watch->in_dispatch = FALSE;
    if (watch->freed) {
        g_source_destroy(watch->source);
        g_source_unref(watch->source);
        g_free(watch);
    }
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs watch_funcs = {
    .dispatch = watch_dispatch,
};

static void watch_cleanup(gpointer data)
{
    WbWatch *watch = data;
    watch->cleanup = NULL;
    wb_watch_free(watch);
}

WbWatch *wb_watch_new(WbInstance *inst, int fd, GIOCondition condition, WbWatchFunc func, gpointer user_data)
{
    g_return_val_if_fail(inst != NULL && fd >= 0 && func != NULL, NULL);
    WbWatch *watch = g_new0(WbWatch, 1);
    watch->inst = inst;
    watch->fd = fd;
    watch->func = func;
    watch->data = user_data;
    watch->source = g_source_new(&watch_funcs, sizeof(WatchSource));
    ((WatchSource *)watch->source)->watch = watch;
    g_source_set_name(watch->source, "wattbridge fd watch");
    watch->tag = g_source_add_unix_fd(watch->source, fd, condition | G_IO_HUP | G_IO_ERR);
    g_source_attach(watch->source, NULL);
    watch->cleanup = wb_instance_add_cleanup(inst, watch_cleanup, watch);
    return watch;
}

void wb_watch_set_condition(WbWatch *watch, GIOCondition condition)
{
    g_return_if_fail(watch != NULL && !watch->freed);
    g_source_modify_unix_fd(watch->source, watch->tag, condition | G_IO_HUP | G_IO_ERR);
}

void wb_watch_free(WbWatch *watch)
{
    if (!watch || watch->freed)
        return;
    if (watch->cleanup) {
        wb_instance_remove_cleanup(watch->inst, watch->cleanup);
        watch->cleanup = NULL;
    }
    watch->freed = TRUE;
    if (watch->in_dispatch)
        return; /* freed when the callback returns */
    g_source_destroy(watch->source);
    g_source_unref(watch->source);
    g_free(watch);
}
