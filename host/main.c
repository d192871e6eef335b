/* wattbridge: the daemon's entry point. */
#include "wb-private.h"

#include <glib-unix.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

static char **opt_config_dirs;
static char **opt_plugin_dirs;
static char **opt_data_dirs;
static char *opt_state_dir;
static gboolean opt_check_config;
static gboolean opt_list_plugins;
static char *opt_describe;
static gboolean opt_version;
static char **opt_check_maps;
static char *opt_import_csv;
static gboolean opt_verbose;

static const GOptionEntry entries[] = {
    {"config-dir", 'c', 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_config_dirs,
     "Read drop-in files from DIR (repeatable, lowest precedence first); replaces the default "
     "directories " WB_VENDORCONFDIR ", /run/wattbridge/conf.d and " WB_CONFDIR, "DIR"},
    {"plugin-dir", 'p', 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_plugin_dirs,
     "Look for plugins in DIR before $WATTBRIDGE_PLUGIN_PATH and " WB_PLUGINSDIR " (repeatable)", "DIR"},
    {"data-dir", 'd', 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_data_dirs,
     "Look for register maps and traces in DIR before $WATTBRIDGE_DATA_PATH and " WB_DATADIR " (repeatable)",
     "DIR"},
    {"state-dir", 's', 0, G_OPTION_ARG_FILENAME, &opt_state_dir,
     "Keep the instances' persistent state in DIR (default: $STATE_DIRECTORY, else " WB_STATEDIR ")", "DIR"},
    {"check-config", 0, 0, G_OPTION_ARG_NONE, &opt_check_config,
     "Load and validate every instance, also disabled ones, without opening any device; print what would "
     "run; exit 0 when everything is valid, 1 otherwise",
     NULL},
    {"list-plugins", 0, 0, G_OPTION_ARG_NONE, &opt_list_plugins, "List the plugins found and exit", NULL},
    {"describe", 0, 0, G_OPTION_ARG_STRING, &opt_describe, "Print PLUGIN's description and options and exit",
     "PLUGIN"},
    {"check-map", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_check_maps,
     "Validate the register map FILE (repeatable): overlaps, sizes, types, units, quantities; every error "
     "names the file and line; exit 0 when all are valid, 1 otherwise",
     "FILE"},
    {"import-csv", 0, 0, G_OPTION_ARG_FILENAME, &opt_import_csv,
     "Turn the register table in the CSV file FILE (columns named like map keys; '#!' lines give [map] keys) "
     "into a register map on standard output",
     "FILE"},
    {"version", 'V', 0, G_OPTION_ARG_NONE, &opt_version, "Print the version and the plugin ABI, then exit", NULL},
    {"verbose", 'v', 0, G_OPTION_ARG_NONE, &opt_verbose, "Log info and debug messages too", NULL},
    {NULL},
};

static void append_path_env(GPtrArray *dirs, const char *variable)
{
    const char *value = g_getenv(variable);
    if (!value)
        return;
    g_auto(GStrv) parts = g_strsplit(value, G_SEARCHPATH_SEPARATOR_S, -1);
    for (int i = 0; parts[i]; i++)
        if (*parts[i])
            g_ptr_array_add(dirs, g_strdup(parts[i]));
}

static GPtrArray *search_path(char **given, const char *variable, const char *installed)
{
    GPtrArray *dirs = g_ptr_array_new_with_free_func(g_free);
    for (int i = 0; given && given[i]; i++)
        g_ptr_array_add(dirs, g_strdup(given[i]));
    append_path_env(dirs, variable);
    g_ptr_array_add(dirs, g_strdup(installed));
    g_ptr_array_add(dirs, NULL);
    return dirs;
}

static int compare_strings(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int list_plugins(const char *const *dirs)
{
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    int found = 0;
    for (int i = 0; dirs[i]; i++) {
        g_autoptr(GDir) dir = g_dir_open(dirs[i], 0, NULL);
        if (!dir)
            continue;
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        const char *name;
        while ((name = g_dir_read_name(dir)))
            if (g_str_has_suffix(name, ".so"))
                g_ptr_array_add(names, g_strdup(name));
        g_ptr_array_sort(names, compare_strings);
        for (guint j = 0; j < names->len; j++) {
            const char *file = g_ptr_array_index(names, j);
            if (g_hash_table_contains(seen, file))
                continue; /* shadowed by an earlier directory */
            g_hash_table_add(seen, g_strdup(file));
            g_autofree char *path = g_build_filename(dirs[i], file, NULL);
            g_autoptr(GError) error = NULL;
            WbPlugin *plugin = wb_plugin_load(path, &error);
            if (!plugin) {
                printf("%-16s (broken) %s\n", file, error->message);
                continue;
            }
            static const char *const role_names[] = {"source", "sink", "controller", "actuator"};
            g_autoptr(GString) roles = g_string_new(NULL);
            for (guint r = 0; r < G_N_ELEMENTS(role_names); r++)
                if (plugin->desc.roles & (1u << r))
                    g_string_append_printf(roles, "%s%s", roles->len ? "," : "", role_names[r]);
            printf("%-16s %-8s %-22s %s\n", plugin->name, plugin->desc.version, roles->str,
                   plugin->desc.description);
            wb_plugin_free(plugin);
            found++;
        }
    }
    if (!found) {
        g_autofree char *joined = g_strjoinv(", ", (char **)dirs);
        fprintf(stderr, "wattbridge: no plugins found in %s\n", joined);
        return 1;
    }
    return 0;
}

static int describe(const char *const *dirs, const char *name)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *path = wb_plugin_find(dirs, name, &error);
    WbPlugin *plugin = path ? wb_plugin_load(path, &error) : NULL;
    if (!plugin) {
        fprintf(stderr, "wattbridge: %s\n", error->message);
        return 1;
    }
    g_autofree char *text = wb_plugin_describe(plugin);
    fputs(text, stdout);
    wb_plugin_free(plugin);
    return 0;
}

static int check_maps(char **paths)
{
    static const char *const tables[] = {"coil", "discrete", "input", "holding"};
    int status = 0;
    for (int i = 0; paths[i]; i++) {
        g_autoptr(GError) error = NULL;
        g_autoptr(WbMap) map = wb_map_load_file(paths[i], &error);
        if (!map) {
            fprintf(stderr, "%s\n", error->message);
            status = 1;
            continue;
        }
        guint per_table[4] = {0};
        for (guint r = 0; r < wb_map_get_n_registers(map); r++)
            per_table[wb_map_register_get_table(wb_map_get_register(map, r))]++;
        g_autoptr(GString) counts = g_string_new(NULL);
        for (int t = 3; t >= 0; t--)
            if (per_table[t])
                g_string_append_printf(counts, "%s%u %s", counts->len ? ", " : "", per_table[t], tables[t]);
        printf("%s: OK: %s, %u registers (%s)\n", paths[i], wb_map_get_model(map), wb_map_get_n_registers(map),
               counts->str);
    }
    return status;
}

static int import_csv(const char *path)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *text = wb_map_import_csv(path, &error);
    if (!text) {
        fprintf(stderr, "%s\n", error->message);
        return 1;
    }
    fputs(text, stdout);
    return 0;
}

static gboolean on_quit_signal(gpointer user_data)
{
    GMainLoop *loop = user_data;
    wb_log(NULL, WB_LOG_NOTICE, "stopping on signal");
    g_main_loop_quit(loop);
    return G_SOURCE_CONTINUE;
}

/* ---- systemd: readiness, watchdog, reload and stop --------------------------- */

/* Tells the service manager @state ("READY=1", "STOPPING=1", ...) when it
 * runs us as Type=notify; nothing otherwise. */
static void notify(const char *state)
{
#ifdef HAVE_SYSTEMD
    sd_notify(0, state);
#else
    (void)state;
#endif
}

/* WatchdogSec: pinged from a main-loop timer at half the interval, so a
 * main loop that blocks (a plugin that waits on the network) stops the pings
 * and systemd restarts the daemon. */
static gboolean on_watchdog(gpointer user_data)
{
    notify("WATCHDOG=1");
    return G_SOURCE_CONTINUE;
}

static guint watchdog_start(void)
{
#ifdef HAVE_SYSTEMD
    guint64 usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        wb_log(NULL, WB_LOG_INFO, "pinging the systemd watchdog every %.3g s", (double)usec / 2e6);
        return g_timeout_add((guint)MAX(usec / 2000, 1), on_watchdog, NULL);
    }
#endif
    return 0;
}

static gboolean on_hangup(gpointer user_data)
{
    WbDaemon *daemon = user_data;
    notify("RELOADING=1");
    wb_daemon_reload(daemon);
    notify("READY=1");
    return G_SOURCE_CONTINUE;
}

static int run_daemon(const WbDaemonSettings *settings, const char *const *config_dirs)
{
    WbDaemon *daemon = wb_daemon_new(settings);
    int status = 0;

    if (opt_check_config) {
        g_autoptr(GString) report = g_string_new(NULL);
        guint problems = wb_daemon_load(daemon, TRUE, report);
        fputs(report->str, stdout);
        printf("%s\n", problems ? "configuration has errors" : "configuration OK");
        wb_daemon_free(daemon);
        return problems ? 1 : 0;
    }

    g_autoptr(GMainLoop) loop = g_main_loop_new(NULL, FALSE);
    guint sources[] = {
        g_unix_signal_add(SIGTERM, on_quit_signal, loop),
        g_unix_signal_add(SIGINT, on_quit_signal, loop),
        g_unix_signal_add(SIGHUP, on_hangup, daemon),
    };
    signal(SIGPIPE, SIG_IGN);

    guint problems = wb_daemon_load(daemon, FALSE, NULL);
    guint running = wb_daemon_start(daemon);
    if (running == 0) {
        g_autofree char *dirs = g_strjoinv(", ", (char **)config_dirs);
        wb_log(NULL, WB_LOG_ERROR, "no instance is running (configuration read from %s); nothing to do", dirs);
        status = 1;
    } else {
        wb_log(NULL, WB_LOG_NOTICE, "wattbridge %s running %u instance%s%s", WB_VERSION, running,
               running == 1 ? "" : "s", problems ? " (some were disabled by errors, see above)" : "");
        g_autofree char *ready = g_strdup_printf("READY=1\nSTATUS=running %u instance%s", running,
                                                 running == 1 ? "" : "s");
        notify(ready);
        guint watchdog = watchdog_start();
        g_main_loop_run(loop);
        notify("STOPPING=1");
        if (watchdog)
            g_source_remove(watchdog);
    }
    wb_daemon_free(daemon);
    for (gsize i = 0; i < G_N_ELEMENTS(sources); i++)
        g_source_remove(sources[i]);
    /* Drain sources freed during shutdown (idle invokes and their data). */
    while (g_main_context_iteration(NULL, FALSE))
        ;
    return status;
}

int main(int argc, char **argv)
{
    setlocale(LC_ALL, "");
    g_autoptr(GOptionContext) context = g_option_context_new("- bridge meters, inverters and batteries");
    g_autoptr(GError) error = NULL;

    g_option_context_set_summary(context,
                                 "Reads meters, inverters and batteries and presents their data to other "
                                 "equipment, as configured by drop-in files in conf.d.");
    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        fprintf(stderr, "wattbridge: %s (try --help)\n", error->message);
        return 2;
    }
    if (argc > 1) {
        fprintf(stderr, "wattbridge: unexpected argument '%s' (try --help)\n", argv[1]);
        return 2;
    }
    if (opt_version) {
        printf("wattbridge %s (plugin ABI %d.%d)\n", WB_VERSION, WB_ABI_MAJOR, WB_ABI_MINOR);
        return 0;
    }
    wb_log_setup(opt_verbose);

    g_autoptr(GPtrArray) plugin_dirs = search_path(opt_plugin_dirs, "WATTBRIDGE_PLUGIN_PATH", WB_PLUGINSDIR);
    g_autoptr(GPtrArray) data_dirs = search_path(opt_data_dirs, "WATTBRIDGE_DATA_PATH", WB_DATADIR);
    g_autoptr(GPtrArray) config_dirs = g_ptr_array_new_with_free_func(g_free);
    if (opt_config_dirs) {
        for (int i = 0; opt_config_dirs[i]; i++)
            g_ptr_array_add(config_dirs, g_strdup(opt_config_dirs[i]));
    } else {
        g_ptr_array_add(config_dirs, g_strdup(WB_VENDORCONFDIR));
        g_ptr_array_add(config_dirs, g_strdup("/run/wattbridge/conf.d"));
        g_ptr_array_add(config_dirs, g_strdup(WB_CONFDIR));
    }
    g_ptr_array_add(config_dirs, NULL);

    int status;
    if (opt_check_maps) {
        status = check_maps(opt_check_maps);
    } else if (opt_import_csv) {
        status = import_csv(opt_import_csv);
    } else if (opt_list_plugins) {
        status = list_plugins((const char *const *)plugin_dirs->pdata);
    } else if (opt_describe) {
        status = describe((const char *const *)plugin_dirs->pdata, opt_describe);
    } else {
        const char *state_dir = opt_state_dir ? opt_state_dir : g_getenv("STATE_DIRECTORY");
        WbDaemonSettings settings = {
            .config_dirs = (const char *const *)config_dirs->pdata,
            .plugin_dirs = (const char *const *)plugin_dirs->pdata,
            .data_dirs = (const char *const *)data_dirs->pdata,
            .state_dir = state_dir && *state_dir ? state_dir : WB_STATEDIR,
        };
        status = run_daemon(&settings, (const char *const *)config_dirs->pdata);
    }
    g_strfreev(opt_config_dirs);
    g_strfreev(opt_plugin_dirs);
    g_strfreev(opt_data_dirs);
    g_free(opt_state_dir);
    g_free(opt_describe);
    g_strfreev(opt_check_maps);
    g_free(opt_import_csv);
    return status;
}
