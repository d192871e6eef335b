/* The daemon: reads conf.d, loads plugins, runs the instances' lifecycles,
 * and measures its own main-loop lag. */
#include "wb-instance.h"

#include <glib/gstdio.h>
#include <sys/stat.h>

#define LAG_PUBLISH_US G_USEC_PER_SEC

struct _WbDaemon {
    char **config_dirs;
    char **plugin_dirs;
    char **data_dirs;
    char *state_dir;
    guint lag_interval_ms;

    WbPointStore *points;
    GHashTable *plugins;        /* name -> WbPlugin* */
    GHashTable *plugin_errors;  /* name -> message: a plugin that failed once is not retried */
    GPtrArray *instances;       /* WbInstance*, created (and then started) in file order */
    WbConfd *confd;
    GHashTable *ports;          /* line name -> Modbus port (wb-modbus-port.c), not owned */

    WbInstance *host;           /* publishes host/main-loop-lag */
    GSource *lag_source;
    gint64 lag_window_start;
    gint64 lag_worst;
};

static char **strv_or_empty(const char *const *v)
{
    return v ? g_strdupv((char **)v) : g_new0(char *, 1);
}

WbDaemon *wb_daemon_new(const WbDaemonSettings *settings)
{
    WbDaemon *d = g_new0(WbDaemon, 1);
    d->config_dirs = strv_or_empty(settings->config_dirs);
    d->plugin_dirs = strv_or_empty(settings->plugin_dirs);
    d->data_dirs = strv_or_empty(settings->data_dirs);
    d->state_dir = g_strdup(settings->state_dir ? settings->state_dir : ".");
    d->lag_interval_ms = settings->lag_interval_ms ? settings->lag_interval_ms : 50;
    d->points = wb_point_store_new();
    d->plugins = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)wb_plugin_free);
    d->plugin_errors = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    d->instances = g_ptr_array_new();
    d->ports = g_hash_table_new(g_str_hash, g_str_equal);
    d->host = wb_instance_new_internal(d, "host");
    return d;
}

void wb_daemon_free(WbDaemon *d)
{
    if (!d)
        return;
    wb_daemon_stop(d);
    g_ptr_array_unref(d->instances);
    wb_instance_run_cleanups(d->host);
    wb_instance_unref(d->host);
    wb_point_store_free(d->points);
    g_hash_table_unref(d->plugins);
    g_hash_table_unref(d->plugin_errors);
    g_hash_table_unref(d->ports); /* empty: every device left with its instance */
    wb_confd_free(d->confd);
    g_strfreev(d->config_dirs);
    g_strfreev(d->plugin_dirs);
    g_strfreev(d->data_dirs);
    g_free(d->state_dir);
    g_free(d);
}

WbPointStore *wb_daemon_get_points(WbDaemon *d)
{
    return d->points;
}

GHashTable *wb_daemon_get_ports(WbDaemon *d)
{
    return d->ports;
}

const char *wb_daemon_get_state_dir(WbDaemon *d)
{
    return d->state_dir;
}

const char *const *wb_daemon_get_data_dirs(WbDaemon *d)
{
    return (const char *const *)d->data_dirs;
}

static WbPlugin *get_plugin(WbDaemon *d, const char *name, GError **error)
{
    WbPlugin *plugin = g_hash_table_lookup(d->plugins, name);
    if (plugin)
        return plugin;
    const char *failed = g_hash_table_lookup(d->plugin_errors, name);
    if (failed) {
        g_set_error_literal(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_FAILED, failed);
        return NULL;
    }
    g_autofree char *path = wb_plugin_find((const char *const *)d->plugin_dirs, name, error);
    if (path)
        plugin = wb_plugin_load(path, error);
    if (!plugin) {
        g_hash_table_insert(d->plugin_errors, g_strdup(name), g_strdup((*error)->message));
        return NULL;
    }
    g_hash_table_insert(d->plugins, plugin->name, plugin);
    return plugin;
}

static void report_problem(GString *report, const char *message)
{
    /* Multi-line errors (one line per bad key) are logged line by line. */
    g_auto(GStrv) lines = g_strsplit(message, "\n", -1);
    for (int i = 0; lines[i]; i++) {
        wb_log(NULL, WB_LOG_ERROR, "%s", lines[i]);
        if (report)
            g_string_append_printf(report, "error: %s\n", lines[i]);
    }
}

/* stop, destroy, then whatever the plugin left: after stop() nothing is
 * dispatched to the plugin (this all runs in one main-context call), and
 * running the host's cleanups last lets destroy() free host handles it
 * still holds (a never-started instance's Modbus server) exactly once. */
static void instance_destroy(WbInstance *inst)
{
    if (inst->started) {
        wb_instance_set_running(inst, FALSE);
        inst->plugin->ops.stop(inst->state);
        inst->started = FALSE;
    }
    if (inst->created) {
        inst->plugin->ops.destroy(inst->state);
        inst->created = FALSE;
    }
    wb_instance_run_cleanups(inst);
    wb_instance_unref(inst);
}

/* What makes an instance "the same" across a reload: its file, its plugin
 * and every key and value as written. */
static char *section_fingerprint(const WbConfdSection *s)
{
    GString *f = g_string_new(s->file);
    for (guint i = 0; i < s->keys->len; i++) {
        const char *key = g_ptr_array_index(s->keys, i);
        g_autofree char *value = s->keyfile ? g_key_file_get_value(s->keyfile, s->name, key, NULL) : NULL;
        g_string_append_printf(f, "\n%s=%s", key, value ? value : "");
    }
    return g_string_free(f, FALSE);
}

/* A password in a file everyone may read is no secret: say so (the
 * packaged service reads conf.d as root or its own user). */
static void warn_exposed_secrets(const WbConfdSection *s, const WbPlugin *plugin, const WbConfig *config)
{
    for (const WbOptionSpec *spec = plugin->options; spec->name; spec++) {
        if (!(spec->flags & WB_OPTION_SECRET) || (spec->flags & WB_OPTION_FAMILY) || !wb_config_has_key(config, spec->name))
            continue;
        GStatBuf st;
        if (g_stat(s->file, &st) == 0 && (st.st_mode & S_IROTH))
            wb_log(NULL, WB_LOG_WARNING, "%s:%d: [%s] %s is a secret, but everyone may read this file; make it "
                   "readable by root and the service user only (chmod 640, group wattbridge)", s->file,
                   GPOINTER_TO_INT(g_hash_table_lookup(s->key_lines, spec->name)), s->name, spec->name);
        return;
    }
}

/* Validates @s and creates its instance (not started).  NULL when it is
 * broken (reported), or disabled (skipped unless @check_only). */
static WbInstance *create_section(WbDaemon *d, WbConfdSection *s, gboolean check_only, GString *report,
                                  guint *problems, gboolean *disabled_out)
{
    g_autoptr(GError) error = NULL;
    *disabled_out = FALSE;
    if (s->broken) {
        if (report)
            g_string_append_printf(report, "[%s] %s: not run (errors above)\n", s->name, s->file);
        return NULL;
    }
    gboolean disabled = wb_confd_section_disabled(s);
    *disabled_out = disabled;
    if (disabled && !check_only) {
        wb_log(NULL, WB_LOG_INFO, "%s:%d: [%s] skipped (enabled = false)", s->file, s->line, s->name);
        return NULL;
    }
    g_autofree char *plugin_name = NULL;
    if (g_hash_table_contains(s->key_lines, WB_KEY_PLUGIN))
        plugin_name = g_strstrip(g_key_file_get_string(s->keyfile, s->name, WB_KEY_PLUGIN, NULL));
    if (!plugin_name || !*plugin_name) {
        g_autofree char *msg = g_strdup_printf("%s:%d: [%s] missing required key 'plugin' (the plugin this "
                                               "instance uses, see wattbridge --list-plugins)",
                                               s->file, s->line, s->name);
        report_problem(report, msg);
        (*problems)++;
        return NULL;
    }
    WbPlugin *plugin = get_plugin(d, plugin_name, &error);
    if (!plugin) {
        int line = GPOINTER_TO_INT(g_hash_table_lookup(s->key_lines, WB_KEY_PLUGIN));
        g_autofree char *msg = g_strdup_printf("%s:%d: [%s] plugin: %s", s->file, line, s->name, error->message);
        report_problem(report, msg);
        (*problems)++;
        return NULL;
    }
    WbConfig *config = wb_config_new(s, plugin->options, &error);
    if (!config) {
        report_problem(report, error->message);
        (*problems)++;
        return NULL;
    }
    warn_exposed_secrets(s, plugin, config);
    WbInstance *inst = wb_instance_new(d, plugin, s->name, config);
    inst->fingerprint = section_fingerprint(s);
    if (!plugin->ops.create(inst, config, &inst->state, &error)) {
        g_autofree char *msg = g_strdup_printf("[%s] %s", s->name, error ? error->message : "create failed (no reason given)");
        report_problem(report, msg);
        (*problems)++;
        instance_destroy(inst);
        return NULL;
    }
    inst->created = TRUE;
    return inst;
}

/* Instances that share a Modbus port must agree on its settings: all of
 * them are refused otherwise.  Removes them from @created (destroying
 * them unless @keep_for_check, where they are only marked: @refused). */
static guint refuse_port_conflicts(WbDaemon *d, GPtrArray *created, GString *report, GHashTable *refused)
{
    guint problems = 0;
    g_autoptr(GPtrArray) conflicts = wb_modbus_ports_conflicts(d->ports);
    for (guint k = 0; k + 1 < conflicts->len; k += 2) {
        const char *name = g_ptr_array_index(conflicts, k);
        report_problem(report, g_ptr_array_index(conflicts, k + 1));
        problems++;
        if (refused) {
            g_hash_table_add(refused, g_strdup(name));
            continue;
        }
        for (guint i = 0; i < created->len; i++) {
            WbInstance *inst = g_ptr_array_index(created, i);
            if (strcmp(inst->name, name) == 0) {
                g_ptr_array_remove_index(created, i);
                instance_destroy(inst);
                break;
            }
        }
    }
    return problems;
}

static void report_confd(WbDaemon *d, WbConfd *confd, GString *report, guint *problems)
{
    for (guint i = 0; i < confd->errors->len; i++) {
        report_problem(report, g_ptr_array_index(confd->errors, i));
        (*problems)++;
    }
    for (guint i = 0; i < confd->masked->len; i++) {
        const char *path = g_ptr_array_index(confd->masked, i);
        wb_log(NULL, WB_LOG_INFO, "%s is masked (a link to /dev/null)", path);
        if (report)
            g_string_append_printf(report, "masked: %s\n", path);
    }
    if (report && confd->sections->len == 0 && confd->errors->len == 0) {
        g_autofree char *dirs = g_strjoinv(", ", d->config_dirs);
        g_string_append_printf(report, "no instances configured in %s\n", dirs);
    }
}

guint wb_daemon_load(WbDaemon *d, gboolean check_only, GString *report)
{
    guint problems = 0;
    g_return_val_if_fail(d->confd == NULL, 1);
    d->confd = wb_confd_load((const char *const *)d->config_dirs);
    report_confd(d, d->confd, report, &problems);

    /* with check_only, the created instances wait for the checks that need
     * all of them (shared Modbus ports), then go */
    g_autoptr(GPtrArray) checked = g_ptr_array_new();
    g_autoptr(GPtrArray) checked_lines = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < d->confd->sections->len; i++) {
        WbConfdSection *s = g_ptr_array_index(d->confd->sections, i);
        gboolean disabled;
        WbInstance *inst = create_section(d, s, check_only, report, &problems, &disabled);
        if (!inst)
            continue;
        if (check_only) {
            g_ptr_array_add(checked, inst);
            g_ptr_array_add(checked_lines,
                            g_strdup_printf("[%s] %s: plugin %s %s, %s\n", s->name, s->file, inst->plugin->name,
                                            inst->plugin->desc.version,
                                            disabled ? "valid but disabled (enabled = false)" : "would run"));
            continue;
        }
        g_ptr_array_add(d->instances, inst);
    }

    if (check_only) {
        g_autoptr(GHashTable) refused = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        problems += refuse_port_conflicts(d, checked, report, refused);
        for (guint i = 0; i < checked->len; i++) {
            WbInstance *inst = g_ptr_array_index(checked, i);
            if (report && !g_hash_table_contains(refused, inst->name))
                g_string_append(report, g_ptr_array_index(checked_lines, i));
            instance_destroy(inst);
        }
    } else {
        problems += refuse_port_conflicts(d, d->instances, report, NULL);
    }
    return problems;
}

static WbInstance *find_instance(GPtrArray *instances, const char *name)
{
    for (guint i = 0; i < instances->len; i++) {
        WbInstance *inst = g_ptr_array_index(instances, i);
        if (strcmp(inst->name, name) == 0)
            return inst;
    }
    return NULL;
}

static gboolean start_instance(WbInstance *inst)
{
    g_autoptr(GError) error = NULL;
    wb_instance_set_running(inst, TRUE);
    inst->started = TRUE;
    if (!inst->plugin->ops.start(inst->state, &error)) {
        wb_log(inst, WB_LOG_ERROR, "failed to start: %s; the instance is disabled",
               error ? error->message : "(no reason given)");
        return FALSE;
    }
    wb_log(inst, WB_LOG_INFO, "started (plugin %s %s)", inst->plugin->name, inst->plugin->desc.version);
    return TRUE;
}

guint wb_daemon_reload(WbDaemon *d)
{
    g_autofree char *dirs = g_strjoinv(", ", d->config_dirs);
    wb_log(NULL, WB_LOG_NOTICE, "reloading the configuration from %s", dirs);

    /* 1. the new configuration, validated on its own: every instance
     * created (nothing opened) in a daemon of its own */
    WbDaemonSettings settings = {
        .config_dirs = (const char *const *)d->config_dirs,
        .plugin_dirs = (const char *const *)d->plugin_dirs,
        .data_dirs = (const char *const *)d->data_dirs,
        .state_dir = d->state_dir,
        .lag_interval_ms = d->lag_interval_ms,
    };
    WbDaemon *check = wb_daemon_new(&settings);
    guint problems = wb_daemon_load(check, TRUE, NULL);
    /* what was validated is what gets applied: the files are read once */
    WbConfd *confd = g_steal_pointer(&check->confd);
    wb_daemon_free(check);
    if (problems) {
        wb_log(NULL, WB_LOG_ERROR, "the new configuration has %u error%s (above); still running the old one",
               problems, problems == 1 ? "" : "s");
        wb_confd_free(confd);
        return 0;
    }

    /* 2. what changed: an instance keeps running when its section is the
     * same, word for word */
    g_autoptr(GHashTable) wanted = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free); /* name -> fingerprint */
    for (guint i = 0; i < confd->sections->len; i++) {
        WbConfdSection *s = g_ptr_array_index(confd->sections, i);
        if (!s->broken && !wb_confd_section_disabled(s))
            g_hash_table_insert(wanted, s->name, section_fingerprint(s));
    }
    guint stopped = 0, kept = 0, started = 0;
    for (guint i = d->instances->len; i-- > 0;) {
        WbInstance *inst = g_ptr_array_index(d->instances, i);
        const char *fp = g_hash_table_lookup(wanted, inst->name);
        if (fp && g_strcmp0(fp, inst->fingerprint) == 0)
            continue;
        g_ptr_array_remove_index(d->instances, i);
        g_autofree char *name = g_strdup(inst->name);
        instance_destroy(inst);
        wb_log(NULL, WB_LOG_NOTICE, "[%s] stopped (%s)", name, fp ? "its configuration changed" : "removed");
        stopped++;
    }

    /* 3. the new and changed ones, in file order; the others stay as they run */
    g_autoptr(GPtrArray) ordered = g_ptr_array_new();
    g_autoptr(GPtrArray) fresh = g_ptr_array_new();
    problems = 0;
    for (guint i = 0; i < confd->sections->len; i++) {
        WbConfdSection *s = g_ptr_array_index(confd->sections, i);
        WbInstance *inst = find_instance(d->instances, s->name);
        if (inst) {
            g_ptr_array_add(ordered, inst);
            kept++;
            continue;
        }
        gboolean disabled;
        inst = create_section(d, s, FALSE, NULL, &problems, &disabled);
        if (!inst)
            continue;
        g_ptr_array_add(ordered, inst);
        g_ptr_array_add(fresh, inst);
    }
    g_ptr_array_set_size(d->instances, 0);
    g_ptr_array_extend_and_steal(d->instances, g_steal_pointer(&ordered));
    problems += refuse_port_conflicts(d, d->instances, NULL, NULL);
    for (guint i = 0; i < fresh->len; i++) {
        WbInstance *inst = g_ptr_array_index(fresh, i);
        if (!find_instance(d->instances, inst->name))
            continue; /* refused above */
        if (start_instance(inst)) {
            started++;
            continue;
        }
        g_ptr_array_remove(d->instances, inst);
        instance_destroy(inst);
        problems++;
    }
    wb_confd_free(d->confd);
    d->confd = confd;
    wb_log(NULL, problems ? WB_LOG_WARNING : WB_LOG_NOTICE, "reloaded: %u instance%s unchanged, %u stopped, %u started%s",
           kept, kept == 1 ? "" : "s", stopped, started, problems ? " (some failed, see above)" : "");
    return started;
}

static gboolean lag_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
    WbDaemon *d = user_data;
    gint64 now = g_get_monotonic_time();
    gint64 expected = g_source_get_ready_time(source);
    gint64 lag = now - expected;

    if (lag > d->lag_worst)
        d->lag_worst = lag;
    if (now - d->lag_window_start >= LAG_PUBLISH_US) {
        WbBatch *batch = wb_batch_new(d->host);
        wb_batch_add_double(batch, "main-loop-lag", (double)d->lag_worst / 1e6, NULL);
        wb_batch_commit(batch);
        d->lag_worst = 0;
        d->lag_window_start = now;
    }
    g_source_set_ready_time(source, now + (gint64)d->lag_interval_ms * 1000);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs lag_funcs = {
    .dispatch = lag_dispatch,
};

static void lag_cleanup(gpointer data)
{
    WbDaemon *d = data;
    g_source_destroy(d->lag_source);
    g_clear_pointer(&d->lag_source, g_source_unref);
}

guint wb_daemon_start(WbDaemon *d)
{
    if (!d->lag_source) {
        d->lag_source = g_source_new(&lag_funcs, sizeof(GSource));
        g_source_set_callback(d->lag_source, NULL, d, NULL);
        g_source_set_name(d->lag_source, "wattbridge main-loop lag");
        /* Above the default priority so the measurement is not delayed by
         * our own idle work, only by callbacks that overrun. */
        g_source_set_priority(d->lag_source, G_PRIORITY_HIGH);
        d->lag_window_start = g_get_monotonic_time();
        g_source_set_ready_time(d->lag_source, d->lag_window_start + (gint64)d->lag_interval_ms * 1000);
        g_source_attach(d->lag_source, NULL);
        wb_instance_add_cleanup(d->host, lag_cleanup, d);
    }

    guint running = 0;
    for (guint i = 0; i < d->instances->len;) {
        WbInstance *inst = g_ptr_array_index(d->instances, i);
        if (!start_instance(inst)) {
            g_ptr_array_remove_index(d->instances, i);
            instance_destroy(inst);
            continue;
        }
        running++;
        i++;
    }
    return running;
}

void wb_daemon_stop(WbDaemon *d)
{
    while (d->instances->len) {
        WbInstance *inst = g_ptr_array_index(d->instances, d->instances->len - 1);
        g_ptr_array_remove_index(d->instances, d->instances->len - 1);
        gboolean started = inst->started;
        char *name = g_strdup(inst->name);
        instance_destroy(inst);
        if (started)
            wb_log(NULL, WB_LOG_INFO, "[%s] stopped", name);
        g_free(name);
    }
}
